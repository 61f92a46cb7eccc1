"""Single-axis electron tomography: tilt series of a volume and weighted back-projection (WBP) reconstruction.

One concept: projecting a volume at a set of tilt angles about the y axis, and reconstructing it from them.

Conventions
-----------
* Volumes are ``numpy`` arrays indexed ``[z, y, x]``; the beam is along axis 0 (``z``) at zero tilt and the tilt
  axis is axis 1 (``y``), the geometry of
  :func:`~emgan_monai.physics.subtomogram_simulator.missing_wedge_mask` with ``tilt_axis="y"``.
* Angles are in degrees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["tilt_series", "weighted_back_projection"]


def tilt_series(volume: np.ndarray, angles_deg: Sequence[float]) -> np.ndarray:
    """Parallel-beam projections of a volume tilted about the y axis (axis 1).

    Each ``(z, x)`` slice is projected with :func:`skimage.transform.radon`; the beam is along z at
    zero tilt. The volume's ``(z, x)`` slices must be square and the object must lie inside their
    inscribed circle (a centred particle in a subtomogram box); the detector is ``W`` pixels wide.

    Parameters
    ----------
    volume
        ``(D, H, W)`` array with ``D == W``.
    angles_deg
        Tilt angles in degrees.

    Returns
    -------
    np.ndarray
        ``(n_tilts, H, W)`` float32 projection images.
    """
    from skimage.transform import radon

    volume = np.asarray(volume, dtype=np.float64)
    if volume.ndim != 3 or volume.shape[0] != volume.shape[2]:
        raise ValueError(f"tilt_series needs a (D, H, W) volume with D == W, got {volume.shape}")
    theta = np.asarray(angles_deg, dtype=np.float64)
    # radon at theta=0 sums over image rows (axis 0 = z): beam along z at zero tilt
    sino = np.stack([radon(volume[:, j, :], theta=theta, circle=True) for j in range(volume.shape[1])])  # (H, W, T)
    return np.transpose(sino, (2, 0, 1)).astype(np.float32)


def weighted_back_projection(
    projections: np.ndarray, angles_deg: Sequence[float], filter_name: str = "ramp"
) -> np.ndarray:
    """Weighted (ramp-filtered) back-projection of a y-axis tilt series.

    Uses :func:`skimage.transform.iradon` per ``(z, x)`` slice.

    Parameters
    ----------
    projections
        ``(n_tilts, H, W)`` projections as returned by :func:`tilt_series`.
    angles_deg
        The tilt angles in degrees.
    filter_name
        ``iradon`` filter (``"ramp"`` = classic WBP).

    Returns
    -------
    np.ndarray
        ``(W, H, W)`` float32 reconstruction indexed ``[z, y, x]``.
    """
    from skimage.transform import iradon

    projections = np.asarray(projections, dtype=np.float64)
    if projections.ndim != 3 or projections.shape[0] != len(angles_deg):
        raise ValueError(f"projections must be (n_tilts={len(angles_deg)}, H, W), got {projections.shape}")
    theta = np.asarray(angles_deg, dtype=np.float64)
    width = projections.shape[2]
    slices = [
        iradon(projections[:, j, :].T, theta=theta, output_size=width, filter_name=filter_name, circle=True)
        for j in range(projections.shape[1])
    ]
    return np.stack(slices, axis=1).astype(np.float32)
