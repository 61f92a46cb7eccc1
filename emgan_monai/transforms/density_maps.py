"""Density maps -> the D-domain shape maps the cryo-ET generator takes, as MONAI dictionary transforms.

The cryo-ET bundle's ``inference.json`` reads a map with ``LoadImaged`` (:class:`~emgan_monai.io.MRCReader` for MRC
maps, :class:`~emgan_monai.io.AtomicModelReader` for PDB / mmCIF models), puts the beam axis first
(``Transposed``: MONAI's ``(X, Y, Z)`` -> the generator's ``(Z, Y, X)``), then applies

- :class:`ResampleMapd`: to the bundle's voxel size, anti-aliased (:func:`~emgan_monai.physics.volume_geometry.resample_map`);
- :class:`ShapeMapd`: density -> shape map in ``[0, 1]`` (:func:`~emgan_monai.data.cryoet_domains.shape_map`);
- :class:`FitToBoxd`: centred in the generator's box, never cropped in silence
  (:func:`fit_to_box`);
- :class:`SampleIndexd`: item ``j`` of the ``n_samples`` draws of one map -> output names ``<map>_<postfix>_<jj>``;
- :class:`OutputNamed`: the item's unique name (``x_mrc`` / ``x_pdb`` when ``x.mrc`` and ``x.pdb`` share a folder)
  as the savers' output name (with ``"output_name_formatter": "$emgan_monai.io.output_name_formatter"``).

Images are channel-first ``(1, D, H, W)`` tensors (``MetaTensor`` s keep their metadata); the numerical steps are the
numpy functions named above, so a map gives the same array as :func:`~emgan_monai.data.cryoet_density_inputs.density_input`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ImageMetaKey
from scipy import ndimage

from emgan_monai.errors import DataError
from emgan_monai.physics.volume_geometry import pad_or_crop

__all__ = ["FitToBoxd", "OutputNamed", "ResampleMapd", "SampleIndexd", "ShapeMapd", "fit_to_box", "shape_map"]


def shape_map(volume: np.ndarray, iso: float = 0.3, sigma: float = 1.0) -> np.ndarray:
    """Noise-free shape map in ``[0, 1]``: binarise at ``iso * max`` and smooth with a Gaussian.

    The same rule turns a binary object label (``iso`` anywhere in ``(0, 1)``) and a density map from
    :func:`~emgan_monai.physics.atomic_models.density_from_pdb` or an MRC template (its molecular envelope at
    ``iso`` of its maximum) into the D-domain maps the generators were trained on.

    Parameters
    ----------
    volume
        ``(D, H, W)`` non-negative density or binary mask.
    iso
        Threshold as a fraction of the maximum, in ``(0, 1)``.
    sigma
        Standard deviation of the Gaussian smoothing in voxels (0 = none).

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 in ``[0, 1]`` (all zeros for an empty input).
    """
    if not 0.0 < iso < 1.0:
        raise ValueError(f"iso must be in (0, 1), got {iso}")
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"shape_map expects a (D, H, W) volume, got shape {volume.shape}")
    vmax = float(volume.max())
    if vmax <= 0:
        return np.zeros_like(volume)
    mask = (volume >= iso * vmax).astype(np.float32)
    if sigma > 0:
        mask = ndimage.gaussian_filter(mask, sigma, mode="constant")
    return np.clip(mask / max(float(mask.max()), 1e-12), 0.0, 1.0).astype(np.float32)


def fit_to_box(
    m: np.ndarray,
    box: int,
    allow_larger: bool = False,
    name: str = "",
    voxel_size: float | None = None,
    multiple: int = 4,
) -> np.ndarray:
    """Fit a ``(D, H, W)`` shape map to the generator's box without cutting the molecule.

    The molecule is the region where ``m >= 0.5``. If it fits in ``box`` the output is the ``(box,)*3`` window
    centred on it (padding with zeros where the map is smaller); only empty margin is dropped. Otherwise, with
    ``allow_larger``, the whole map zero-padded to at least ``box`` and to a multiple of ``multiple`` per axis (for
    a sliding-window inferer); without it a :class:`~emgan_monai.errors.DataError` explains the options.
    """
    m = np.asarray(m, dtype=np.float32)
    support = np.argwhere(m >= 0.5)
    if support.size == 0:
        return pad_or_crop(m, box)
    lo, hi = support.min(0), support.max(0) + 1
    extent = hi - lo
    if np.all(extent <= box):
        centre = (lo + hi) // 2
        start = centre - box // 2
        out = np.zeros((box,) * 3, dtype=np.float32)
        src_lo = np.maximum(start, 0)
        src_hi = np.minimum(start + box, m.shape)
        dst_lo = src_lo - start
        dst_hi = dst_lo + (src_hi - src_lo)
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = m[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
        return out
    if not allow_larger:
        vs = f" at {voxel_size} A/voxel" if voxel_size else ""
        raise DataError(
            name,
            f"the molecule spans {tuple(int(e) for e in extent)} voxels{vs}, more than the generator's box "
            f"{box}: it would be cut. Generate it whole through the sliding window (--tile_large_maps true, the "
            "default of inference.json; inference_uncertainty.json also needs --fix_noise false)",
        )
    shape = [max(box, int(np.ceil(n / multiple)) * multiple) for n in m.shape]
    return pad_or_crop(m, shape)


def _name(img: Any, key: Hashable) -> str:
    meta = img.meta if isinstance(img, MetaTensor) else {}
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, key))


def _single_volume(img: Any, key: Hashable) -> np.ndarray:
    """``(1, D, H, W)`` image -> ``(D, H, W)`` float32 numpy array (a copy where needed)."""
    array = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if array.ndim != 4 or array.shape[0] != 1:
        raise DataError(
            _name(img, key), f"expected a single-channel 3D map, got shape {tuple(array.shape)} (channel first)"
        )
    return np.asarray(array[0], dtype=np.float32)


def _with_meta(array: np.ndarray, like: Any, affine: np.ndarray | None = None) -> torch.Tensor:
    """``(D, H, W)`` array -> ``(1, D, H, W)`` tensor carrying ``like``'s metadata (and ``affine`` if given)."""
    out = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]
    if not isinstance(like, MetaTensor):
        return out
    out = MetaTensor(out, meta=dict(like.meta))
    if affine is not None:
        out.affine = torch.as_tensor(affine, dtype=torch.float64)
    return out


class ResampleMapd(MapTransform):
    """Resample a density map to ``voxel_size`` (A), anti-aliased, from the voxel size in its metadata.

    The input voxel size is read from the image's affine (as ``LoadImaged`` set it from the MRC header, or as
    :class:`~emgan_monai.io.AtomicModelReader` built the map); it must be isotropic. A map already at ``voxel_size``
    is returned unchanged. The output affine is ``diag(voxel_size)`` with the origin at 0.

    Parameters
    ----------
    keys
        Keys of ``(1, D, H, W)`` maps.
    voxel_size
        Wanted voxel size in A.

    Raises
    ------
    DataError
        The map is not 3D, holds NaN/Inf, has no voxel size, or an anisotropic one (the message names the file).
    """

    def __init__(self, keys: KeysCollection, voxel_size: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        self.voxel_size = float(voxel_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from emgan_monai.physics.volume_geometry import resample_map

        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            name = _name(img, key)
            volume = _single_volume(img, key)
            if not np.all(np.isfinite(volume)):
                raise DataError(name, f"the map holds {int(np.sum(~np.isfinite(volume)))} NaN/Inf voxels")
            affine = np.asarray(img.affine if isinstance(img, MetaTensor) else np.eye(4), dtype=np.float64)
            spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
            if np.any(spacing <= 0) or not np.all(np.isfinite(spacing)) or not isinstance(img, MetaTensor):
                raise DataError(name, f"no voxel size in the header; cannot resample to {self.voxel_size} A")
            if not np.allclose(spacing, spacing[0]):
                raise DataError(name, f"anisotropic voxel size {tuple(spacing)} is not supported")
            # the voxel size of the axis MRC files store slowest (z), as the density loaders have always used
            resampled = resample_map(volume, float(spacing[-1]), self.voxel_size)
            d[key] = _with_meta(resampled, img, np.diag([self.voxel_size] * 3 + [1.0]))
        return d


class ShapeMapd(MapTransform):
    """Density map -> shape map in ``[0, 1]``: ``(density >= iso * max)`` smoothed by a Gaussian of ``sigma`` voxels
    (:func:`~emgan_monai.data.cryoet_domains.shape_map`, the D domain the generator was trained on).

    Parameters
    ----------
    keys
        Keys of ``(1, D, H, W)`` maps.
    iso
        Threshold as a fraction of the map's maximum.
    sigma
        Smoothing in voxels (0: binary).
    """

    def __init__(
        self, keys: KeysCollection, iso: float = 0.3, sigma: float = 1.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.iso, self.sigma = float(iso), float(sigma)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _with_meta(shape_map(_single_volume(d[key], key), iso=self.iso, sigma=self.sigma), d[key])
        return d


class FitToBoxd(MapTransform):
    """Fit a shape map to the generator's ``box`` without cutting the molecule
    (:func:`fit_to_box`).

    A molecule (voxels ``>= 0.5``) that fits is centred in a ``(1, box, box, box)`` volume; a larger one is refused
    with a :class:`~emgan_monai.errors.DataError` naming the file, or, with ``allow_larger``, kept whole and
    zero-padded to a multiple of 4 per axis, for a sliding-window inferer.

    Parameters
    ----------
    keys
        Keys of ``(1, D, H, W)`` shape maps.
    box
        The generator's cube edge.
    allow_larger
        Keep maps larger than the box (tiled inference) instead of refusing them.
    voxel_size
        Only quoted in the error message.
    """

    def __init__(
        self,
        keys: KeysCollection,
        box: int,
        allow_larger: bool = False,
        voxel_size: float | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.box, self.allow_larger, self.voxel_size = int(box), bool(allow_larger), voxel_size

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            fitted = fit_to_box(
                _single_volume(d[key], key),
                self.box,
                allow_larger=self.allow_larger,
                name=_name(d[key], key),
                voxel_size=self.voxel_size,
            )
            d[key] = _with_meta(fitted, d[key])
        return d


class SampleIndexd(MapTransform):
    """Mark an item as draw ``j`` of several of the same input (one datalist item per draw).

    Sets the image's ``patch_index`` metadata to ``j`` written with ``width`` digits, so that ``SaveImage`` names the
    outputs ``<input>_<postfix>_<jj>``; removes ``first_only_keys`` from every draw but the first (e.g. a copy of the
    input that is to be saved once per map).

    Parameters
    ----------
    keys
        Image keys whose metadata get the index (outputs computed from them inherit it).
    index_key
        Item key holding ``j`` (an int).
    first_only_keys
        Keys kept only when ``j == 0``.
    width
        Digits of the index in file names.
    """

    def __init__(
        self,
        keys: KeysCollection,
        index_key: str = "sample",
        first_only_keys: Sequence[str] = (),
        width: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index_key, self.first_only_keys, self.width = index_key, tuple(first_only_keys), int(width)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        j = int(d[self.index_key])
        for key in self.key_iterator(d):
            if isinstance(d[key], MetaTensor):
                d[key].meta[ImageMetaKey.PATCH_INDEX] = f"{j:0{self.width}d}"
        if j != 0:
            for key in self.first_only_keys:
                d.pop(key, None)
        return d


class OutputNamed(MapTransform):
    """Give images the output name ``data[name_key]`` (metadata key :data:`~emgan_monai.io.save.OUTPUT_NAME_KEY`),
    read by :func:`~emgan_monai.io.output_name_formatter` in the savers instead of the input file's stem.

    Images computed from them (the network's prediction, ``CopyItemsd`` copies) inherit the name, so every output of
    an input is named after its datalist item: unique names there (e.g.
    :func:`~emgan_monai.data.cryoet.density_draws_datalist`) give unique output files.

    Parameters
    ----------
    keys
        Keys of images (``MetaTensor``) to name.
    name_key
        Item key holding the name (a string without folder or extension).
    """

    def __init__(self, keys: KeysCollection, name_key: str = "name", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.name_key = name_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from emgan_monai.io.save import OUTPUT_NAME_KEY

        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], MetaTensor):
                d[key].meta[OUTPUT_NAME_KEY] = str(d[self.name_key])
        return d
