"""The cryo-ET inference configs' input contract: what a density map must be, checked before anything large is
allocated.

The cryo-ET bundle's ``inference.json`` and ``inference_uncertainty.json`` accept

- density maps (``.mrc`` / ``.map``): one 3D volume (no image stacks, no channels), real-valued (MRC modes 0, 1, 2, 6
  or 12), finite, not constant, with the molecule as positive density, and an isotropic voxel size in the header
  (or given with ``input_voxel_size``);
- atomic models (``.pdb`` / ``.ent``, mmCIF ``.cif`` / ``.mmcif`` / ``.cif.gz``), which
  :class:`~emgan_monai.io.AtomicModelReader` turns into such a map at the model's voxel size.

:class:`DensityMapInputd` checks a loaded map against that contract right after ``LoadImaged`` /
``EnsureChannelFirstd``, decides its voxel size, and estimates (:func:`estimate_memory_bytes`) the memory of
resampling it to the model's voxel size and running the generator on it: a map that would need more than
``max_memory_gb`` (a 400 A-voxel header, say, which would resample a 32^3 map to 640^3) is refused with the sizes
and the keys to change, before the resampling allocates anything. Every refusal is a
:class:`~emgan_monai.errors.DataError` naming the file, the problem in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ImageMetaKey

from emgan_monai.errors import DataError

__all__ = ["DensityMapInputd", "estimate_memory_bytes", "resampled_shape"]

logger = logging.getLogger(__name__)

#: What the configs accept, quoted in refusals.
ACCEPTS = (
    "3D density maps (.mrc/.map: one volume, real-valued, finite, not constant, molecule positive, voxel size in "
    "the header or --input_voxel_size) or atomic models (.pdb/.ent/.cif/.mmcif/.cif.gz)"
)

#: Suffixes of atomic models: their maps are built at the model's voxel size, so no header voxel size applies.
_MODEL_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".cif.gz", ".mmcif.gz")


def resampled_shape(shape: tuple[int, ...], voxel_size_in: float, voxel_size_out: float) -> tuple[int, ...]:
    """Shape of a map of ``shape`` voxels of ``voxel_size_in`` A resampled to ``voxel_size_out`` A, as
    :func:`~emgan_monai.physics.volume_geometry.resample_map` (``scipy.ndimage.zoom``) computes it."""
    if np.isclose(voxel_size_in, voxel_size_out):
        return tuple(int(s) for s in shape)
    factor = voxel_size_in / voxel_size_out
    return tuple(round(s * factor) for s in shape)


def estimate_memory_bytes(input_voxels: int, output_voxels: int, copies: float = 12.0) -> int:
    """Peak memory of a cryo-ET inference run on one map, in bytes.

    Parameters
    ----------
    input_voxels
        Voxels of the map as read (held as float32 twice: the loaded map and its anti-aliasing-filtered copy).
    output_voxels
        Voxels of the map at the model's voxel size (at least the generator's box).
    copies
        float32 copies of that resampled map held at once at the run's peak (resampling, shape map, the sliding
        window's output and weight maps, the scaled and transposed prediction, the saved copies). Peak resident
        memory measured on CPU for a map resampled to 300^3: 10 copies for ``inference.json`` with tiling, 4 when the
        molecule is refused for not fitting the box (the resampling and shape map only), and ``5 + 2 K`` for
        ``inference_uncertainty.json`` tiling with ``K`` MC passes (every pass is kept until mean and std are taken);
        the configs pass 12, 5 and ``6 + 2 K``.

    Returns
    -------
    int
        ``4 * (2 * input_voxels + copies * output_voxels)``.
    """
    return int(4 * (2 * int(input_voxels) + float(copies) * int(output_voxels)))


def _name(img: Any, key: Hashable) -> str:
    meta = img.meta if isinstance(img, MetaTensor) else {}
    return str(meta.get(ImageMetaKey.FILENAME_OR_OBJ, key))


class DensityMapInputd(MapTransform):
    """Check channel-first ``(1, X, Y, Z)`` density maps against the inference configs' contract (module docstring)
    and refuse, before any large allocation, the ones whose resampling and inference would need too much memory.

    The map's voxel size is ``input_voxel_size`` when given (written into the map's affine, so that
    :class:`~emgan_monai.transforms.ResampleMapd` uses it), else the MRC header's. A header without a voxel size (cell
    size 0) is refused, naming ``input_voxel_size``; a header voxel size of exactly 1 A, what many programs write when
    they do not know it, is used but logged with the extent it implies. Atomic models (their maps are built at the
    model's voxel size) keep theirs.

    Parameters
    ----------
    keys
        Keys of ``(1, X, Y, Z)`` maps as ``LoadImaged`` + ``EnsureChannelFirstd`` give them.
    voxel_size
        The model's voxel size in A (what the maps are resampled to).
    input_voxel_size
        Voxel size of the input maps in A, overriding their headers (``None``: the headers').
    max_memory_gb
        Refuse a map whose run is estimated (:func:`estimate_memory_bytes`) to need more, in GiB.
    copies
        Passed to :func:`estimate_memory_bytes`.
    box
        The generator's box: a map is never processed smaller than ``box^3`` voxels (memory estimate only).
    allow_missing_keys
        Skip absent keys.

    Raises
    ------
    DataError
        ``"<file>: <problem>"``: not a single 3D volume, complex or non-numeric data, NaN/Inf voxels, a constant map,
        no positive density, no / anisotropic voxel size, fewer than 2 voxels at the model's voxel size, or an
        estimated memory above ``max_memory_gb`` (the message states the voxel size, both shapes, the estimate and the
        keys to change).
    """

    def __init__(
        self,
        keys: KeysCollection,
        voxel_size: float,
        input_voxel_size: float | None = None,
        max_memory_gb: float = 4.0,
        copies: float = 12.0,
        box: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        # option values a user sets: refused as one line (a DataError without a file) naming the key
        for label, value in (("voxel_size", voxel_size), ("max_memory_gb", max_memory_gb), ("copies", copies)):
            if not isinstance(value, (int, float)) or not value > 0:
                raise DataError("", f"--{label} must be a positive number, got {value!r}")
        if input_voxel_size is not None and (
            not isinstance(input_voxel_size, (int, float)) or not input_voxel_size > 0
        ):
            raise DataError("", f"--input_voxel_size must be a positive number (A) or null, got {input_voxel_size!r}")
        self.voxel_size = float(voxel_size)
        self.input_voxel_size = None if input_voxel_size is None else float(input_voxel_size)
        self.max_memory_gb = float(max_memory_gb)
        self.copies = float(copies)
        self.box = int(box)

    def _voxel_size(self, img: MetaTensor, name: str, is_model: bool) -> tuple[float, str]:
        """The map's isotropic voxel size in A and where it comes from."""
        if self.input_voxel_size is not None and not is_model:
            return self.input_voxel_size, "--input_voxel_size"
        affine = np.asarray(img.affine, dtype=np.float64)
        spacing = np.sqrt((affine[:3, :3] ** 2).sum(0))
        cell = np.asarray(img.meta.get("mrc_cella", (1.0, 1.0, 1.0)), dtype=np.float64)
        if not is_model and (np.any(cell <= 0) or np.any(spacing <= 0) or not np.all(np.isfinite(spacing))):
            raise DataError(
                name,
                f"the MRC header has no voxel size (cell size {tuple(float(c) for c in cell)}); "
                "set --input_voxel_size to the map's voxel size in A",
            )
        if not np.allclose(spacing, spacing[0], rtol=1e-3):
            raise DataError(
                name,
                f"anisotropic voxel size {tuple(float(s) for s in spacing)} A is not supported; "
                "resample the map to cubic voxels, or set --input_voxel_size if the header is wrong",
            )
        source = "the atomic model's map" if is_model else "the MRC header"
        return float(spacing[0]), source

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            name = _name(img, key)
            shape = tuple(int(s) for s in img.shape)
            if len(shape) != 4 or shape[0] != 1:
                what = (
                    f"a 2D image of {shape[1:]} pixels" if len(shape) == 3 else f"data of shape {shape} (channel first)"
                )
                raise DataError(name, f"{what}; this bundle accepts {ACCEPTS}")
            values = torch.as_tensor(img).detach()
            if values.is_complex() or values.dtype == torch.bool:
                raise DataError(name, f"{values.dtype} data; this bundle accepts {ACCEPTS}")
            bad = int((~torch.isfinite(values)).sum()) if values.is_floating_point() else 0
            if bad:
                raise DataError(name, f"the map holds {bad} NaN/Inf voxel(s)")
            vmin, vmax = float(values.min()), float(values.max())
            if vmin == vmax:
                raise DataError(name, f"the map is constant (every voxel {vmin:g}): there is no molecule to draw")
            if vmax <= 0:
                raise DataError(
                    name,
                    f"the map has no positive density (maximum {vmax:g}); the molecule must be "
                    "positive (invert a map stored with negative contrast)",
                )
            lower = name.lower()
            is_model = lower.endswith(_MODEL_SUFFIXES)
            if not isinstance(img, MetaTensor):
                raise DataError(name, "no voxel size: load the map with LoadImaged (MRCReader / AtomicModelReader)")
            vs_in, source = self._voxel_size(img, name, is_model)
            out_shape = resampled_shape(shape[1:], vs_in, self.voxel_size)
            if source == "the MRC header" and np.isclose(vs_in, 1.0):
                logger.warning(
                    "%s: the MRC header says 1 A/voxel, what many programs write when the voxel size is "
                    "unknown; using it (the map spans %s A, %s voxels at %g A). Set --input_voxel_size if "
                    "it is not 1 A",
                    name,
                    tuple(shape[1:]),
                    out_shape,
                    self.voxel_size,
                )
            if min(out_shape) < 2:
                raise DataError(
                    name,
                    f"at {vs_in:g} A/voxel ({source}) the map spans {tuple(shape[1:])} voxels, "
                    f"{out_shape} at the model's {self.voxel_size:g} A: too small to draw; check the voxel "
                    "size (--input_voxel_size)",
                )
            n_out = max(int(np.prod(out_shape, dtype=np.int64)), self.box**3)
            need = estimate_memory_bytes(int(np.prod(shape[1:], dtype=np.int64)), n_out, self.copies)
            if need > self.max_memory_gb * 2**30:
                raise DataError(
                    name,
                    f"at {vs_in:g} A/voxel ({source}), resampling its {tuple(shape[1:])} voxels to "
                    f"the model's {self.voxel_size:g} A gives {out_shape} voxels, estimated to need "
                    f"{need / 2**30:.1f} GiB, more than --max_memory_gb {self.max_memory_gb:g}; check the "
                    "voxel size (--input_voxel_size), crop or bin the map, or raise --max_memory_gb",
                )
            if source == "--input_voxel_size":
                affine = img.affine.clone()
                affine[:3, :3] = torch.eye(3, dtype=affine.dtype) * vs_in
                img = img.clone()
                img.affine = affine
                d[key] = img
        return d
