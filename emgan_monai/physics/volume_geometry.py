"""Volume geometry: resampling to another voxel size, centre padding / cropping, and rigid rotations of 3D maps.

One concept: moving and reshaping a map on its voxel grid, without changing what it depicts.

Conventions
-----------
* Volumes are ``numpy`` arrays indexed ``[z, y, x]`` (ZYX, as read by ``mrcfile``); voxel sizes are in angstrom (A).
* Rotations act on index coordinates ``(z, y, x)`` about the array centre ``(n - 1) / 2``; centre padding and
  cropping keep the voxel ``n // 2`` at ``box // 2`` (the ``np.fft.fftshift`` rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

__all__ = ["box_shape", "pad_or_crop", "random_rotation_matrix", "resample_map", "rotate_volume"]


def box_shape(box: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """``box`` as a shape of ``ndim`` positive ints: an int is a cube (square) edge, a sequence the full shape."""
    shape = tuple(int(b) for b in box) if isinstance(box, Iterable) else (int(box),) * ndim
    if len(shape) != ndim or min(shape) <= 0:
        raise ValueError(f"box must be a positive int or a sequence of {ndim} positive ints, got {box}")
    return shape


def resample_map(volume: np.ndarray, voxel_size_in: float, voxel_size_out: float, order: int = 1) -> np.ndarray:
    """Resample a map to another voxel size with :func:`scipy.ndimage.zoom`, anti-aliased when downsampling.

    Downsampling by ``d = voxel_size_out / voxel_size_in > 1`` first applies a Gaussian of standard deviation
    ``(d - 1) / 2`` input voxels (the rule of :func:`skimage.transform.rescale`), so that detail finer than the new
    voxel does not alias into the map.

    Parameters
    ----------
    volume
        ``(D, H, W)`` (or 2D) array.
    voxel_size_in, voxel_size_out
        Input and output voxel sizes in A; the zoom factor is ``voxel_size_in / voxel_size_out``.
    order
        Spline order (1 = trilinear, which does not create negative ringing around densities).

    Returns
    -------
    np.ndarray
        float32 array of shape ``round(shape * voxel_size_in / voxel_size_out)``.
    """
    if voxel_size_in <= 0 or voxel_size_out <= 0:
        raise ValueError(f"voxel sizes must be positive, got {voxel_size_in} and {voxel_size_out}")
    if np.isclose(voxel_size_in, voxel_size_out):
        return np.asarray(volume, dtype=np.float32)
    factor = voxel_size_in / voxel_size_out
    volume = np.asarray(volume, dtype=np.float32)
    if factor < 1.0:
        volume = ndimage.gaussian_filter(volume, sigma=(1.0 / factor - 1.0) / 2.0, mode="constant")
    return ndimage.zoom(volume, factor, order=order, mode="grid-constant", grid_mode=True)


def pad_or_crop(volume: np.ndarray, box: int | Sequence[int], pad_value: float = 0.0) -> np.ndarray:
    """Centre-pad and/or centre-crop a volume to ``box``.

    The array centre ``n // 2`` of every axis maps onto ``box // 2``, so that the centre voxel of an
    even or odd box is kept for both even and odd inputs (same rule as ``np.fft.fftshift``).

    Parameters
    ----------
    volume
        ``(D, H, W)`` or ``(H, W)`` array.
    box
        Target edge (int) or full target shape.
    pad_value
        Constant used for padding.

    Returns
    -------
    np.ndarray
        Array of shape ``box`` and the input dtype.
    """
    volume = np.asarray(volume)
    shape = box_shape(box, volume.ndim)
    out = np.full(shape, pad_value, dtype=volume.dtype)
    src, dst = [], []
    for n_in, n_out in zip(volume.shape, shape):
        offset = n_out // 2 - n_in // 2  # position of input index 0 in the output
        lo_in, lo_out = max(0, -offset), max(0, offset)
        length = min(n_in - lo_in, n_out - lo_out)
        src.append(slice(lo_in, lo_in + length))
        dst.append(slice(lo_out, lo_out + length))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def random_rotation_matrix(rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Rotation matrix drawn uniformly from SO(3) (Haar measure).

    Parameters
    ----------
    rng
        ``numpy`` generator or seed.

    Returns
    -------
    np.ndarray
        ``(3, 3)`` float64 orthonormal matrix with determinant +1.
    """
    return Rotation.random(random_state=np.random.default_rng(rng)).as_matrix()


def rotate_volume(
    volume: np.ndarray,
    matrix: np.ndarray,
    shift: Sequence[float] = (0.0, 0.0, 0.0),
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Rotate a volume about its centre ``(n - 1) / 2``, then translate it.

    The output satisfies ``out[c + R (p - c) + shift] = volume[p]``: ``matrix`` acts on index
    coordinates ``(z, y, x)`` and ``shift`` is in voxels along ``(z, y, x)``. Rotating by ``R`` and
    then by ``R.T`` restores the volume up to interpolation error.

    Parameters
    ----------
    volume
        ``(D, H, W)`` array.
    matrix
        ``(3, 3)`` rotation matrix.
    shift
        Translation in voxels applied after the rotation.
    order
        Spline interpolation order of :func:`scipy.ndimage.affine_transform`.
    cval
        Value outside the input.

    Returns
    -------
    np.ndarray
        float32 ``(D, H, W)`` rotated volume.
    """
    volume = np.asarray(volume, dtype=np.float32)
    matrix = np.asarray(matrix, dtype=np.float64)
    if volume.ndim != 3 or matrix.shape != (3, 3):
        raise ValueError(f"expected a 3D volume and a (3, 3) matrix, got {volume.shape} and {matrix.shape}")
    centre = (np.asarray(volume.shape, dtype=np.float64) - 1.0) / 2.0
    inv = matrix.T  # inverse of a rotation; affine_transform maps output -> input coordinates
    offset = centre - inv @ (centre + np.asarray(shift, dtype=np.float64))
    return ndimage.affine_transform(volume, inv, offset=offset, order=order, mode="constant", cval=cval)
