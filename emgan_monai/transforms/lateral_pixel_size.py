"""Lateral pixel size of 2D images and 3D stacks: resample to the pixel size a 2D network was trained at, and back.

:class:`LateralPixelSized` is a MONAI invertible transform for channel-first ``(1, X, Y[, Z])`` images as loaded by
:class:`~emgan_monai.io.TiffReader` (whose metadata carry the file's pixel size: ``affine`` and ``unit``):

- it decides the input's lateral pixel size: ``pixel_size`` when given, else the file's calibration (ImageJ, OME or
  resolution tags), else (an uncalibrated file) the model's own size, which it logs;
- it refuses, naming the file, both sizes and the key that overrides them, a size more than ``max_rescale`` times off
  the model's, a plane that would be smaller than the tiling needs, and an input whose processing would need more
  than ``max_memory_gb`` (estimated before anything is allocated);
- it resamples X and Y (plane by plane; Z is never resampled) to the model's pixel size with MONAI's
  :class:`~monai.transforms.Resize` (area averaging where the image shrinks, bilinear where it grows); sizes within
  ``tolerance`` of the model's are not resampled at all;
- its inverse (``monai.transforms.Invertd`` with the preprocessing, in the postprocessing) resamples a prediction back
  onto the input's grid and gives it the input's physical size: the file's calibration, or ``pixel_size`` in um when
  given; an uncalibrated input stays uncalibrated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Resize
from monai.utils import TraceKeys

from emgan_monai.errors import DataError
from emgan_monai.io.base import normalise_unit, unit_scale

__all__ = ["LateralPixelSized", "estimate_memory_bytes"]

logger = logging.getLogger(__name__)

#: bytes per voxel of the input grid (the loaded image, its normalised float copy, the prediction mapped back and
#: cast to the input's dtype) and of the model grid (the resampled image, the tiled prediction and its blending
#: weights), and a fixed allowance (Python, torch, the network and its windows): measured peaks of the confocal
#: bundle's inference on CPU were 0.57 GB for a 128 x 128 image, +0.19 GB for 2000 x 2000 px, +0.12 GB for
#: 1000 x 1000 px at twice the model's pixel size (2000 x 2000 on the model's grid), +0.41 GB for a 10 x 1000 x 1000
#: stack, i.e. about 24 bytes per voxel of each grid.
_BYTES_PER_INPUT_VOXEL = 24
_BYTES_PER_MODEL_VOXEL = 24
_FIXED_BYTES = 1 << 30


def estimate_memory_bytes(input_voxels: int, model_voxels: int) -> int:
    """Peak memory of enhancing an image of ``input_voxels`` voxels that is ``model_voxels`` at the model's pixel
    size (equal when nothing is resampled), in bytes: ``24 * input + 24 * model + 1 GiB`` (a slight overestimate of
    the peaks measured on CPU)."""
    return int(_BYTES_PER_INPUT_VOXEL * input_voxels + _BYTES_PER_MODEL_VOXEL * model_voxels + _FIXED_BYTES)


def _um(value: float) -> str:
    return f"{value:.4g} um"


def _size_text(size: Sequence[float]) -> str:
    """``0.26 um`` or ``0.26 x 0.3 um`` (X x Y)."""
    return _um(size[0]) if math.isclose(size[0], size[1], rel_tol=1e-6) else f"{size[0]:.4g} x {size[1]:.4g} um"


def _shape_text(spatial: Sequence[int]) -> str:
    """``(X, Y[, Z])`` -> ``"Y x X px"`` or ``"Z x Y x X px"`` (file order)."""
    return " x ".join(str(int(s)) for s in reversed(spatial)) + " px"


def _affine(meta: Mapping, r: int) -> np.ndarray:
    affine = meta.get("affine")
    if affine is None:
        return np.eye(r + 1)
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    return a[0] if a.ndim == 3 else a


class LateralPixelSized(MapTransform, InvertibleTransform):
    """Resample the lateral axes of ``(1, X, Y[, Z])`` images to a model's pixel size (invertible).

    Parameters
    ----------
    keys
        Keys to resample.
    model_pixel_size
        The lateral pixel size the network was trained at, in um.
    pixel_size
        The inputs' lateral pixel size in um, overriding the files' calibration; ``None``: each file's calibration,
        and the model's size (nothing resampled, logged) for a file that states none.
    max_rescale
        Refuse inputs whose pixel size differs from the model's by more than this factor either way.
    min_size
        Smallest X and Y size (px) at the model's pixel size (the tiled inferer's limit).
    max_memory_gb
        Refuse inputs whose processing is estimated (:func:`estimate_memory_bytes`) to need more, in GiB.
    tolerance
        Relative difference from ``model_pixel_size`` below which nothing is resampled.

    Notes
    -----
    The messages name the settings as the bundle's command-line keys (``--pixel_size``, ``--max_rescale``,
    ``--max_memory_gb``).

    Raises
    ------
    DataError
        One line naming the file and, for a scale problem, its pixel size, the model's and the key to set.
    """

    def __init__(
        self,
        keys: KeysCollection,
        model_pixel_size: float,
        pixel_size: float | None = None,
        max_rescale: float = 4.0,
        min_size: int = 1,
        max_memory_gb: float = 16.0,
        tolerance: float = 0.01,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        for what, value in (
            ("model_pixel_size", model_pixel_size),
            ("pixel_size", pixel_size),
            ("max_memory_gb", max_memory_gb),
        ):
            if (value is not None or what != "pixel_size") and (
                isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0)
            ):
                raise DataError(
                    "",
                    f"--{what} must be a positive number{' (um) or null' if what == 'pixel_size' else ''}"
                    f", got {value!r}",
                )
        if not (isinstance(max_rescale, (int, float)) and max_rescale >= 1):
            raise DataError("", f"--max_rescale must be a number of at least 1, got {max_rescale!r}")
        self.model_pixel_size = float(model_pixel_size)
        self.pixel_size = None if pixel_size is None else float(pixel_size)
        self.max_rescale = float(max_rescale)
        self.min_size = int(min_size)
        self.max_memory_gb = float(max_memory_gb)
        self.tolerance = float(tolerance)

    # -- forward -----------------------------------------------------------------------------------------------------

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._forward(d[key], key)
        return d

    def input_pixel_size(self, meta: Mapping, r: int, name: str) -> tuple[tuple[float, float] | None, str]:
        """``((x, y) in um or None when uncalibrated, where it comes from)`` for an image's metadata."""
        if self.pixel_size is not None:
            return (self.pixel_size, self.pixel_size), "set by --pixel_size"
        unit = normalise_unit(meta.get("unit"))
        if unit is None:
            return None, "uncalibrated"
        scale = unit_scale(unit, "um")
        if scale is None:
            raise DataError(
                name,
                f"the file states its pixel size in an unknown unit '{unit}'; set --pixel_size "
                "<um> (the lateral pixel size in micrometres)",
            )
        a = _affine(meta, r)
        x, y = (float(np.linalg.norm(a[:r, i])) * scale for i in range(2))
        return (x, y), "from the file"

    def _forward(self, img: Any, key: Hashable) -> MetaTensor:
        if not isinstance(img, MetaTensor):
            img = MetaTensor(torch.as_tensor(img))
        meta = img.meta
        name = str(meta.get("filename_or_obj", key))
        spatial = [int(s) for s in img.shape[1:]]
        r = len(spatial)
        model = (self.model_pixel_size, self.model_pixel_size)
        size, source = self.input_pixel_size(meta, r, name)
        if size is None:
            logger.warning(
                "%s: the file states no pixel size; assuming the model's %s (nothing resampled; set "
                "--pixel_size <um> if it is not)",
                name,
                _um(self.model_pixel_size),
            )
            size_used = model
        else:
            size_used = size
        factors = [s / m for s, m in zip(size_used, model)]
        factors = [1.0 if abs(f - 1.0) <= self.tolerance else f for f in factors]
        worst = max(max(factors), 1.0 / min(factors))
        if worst > self.max_rescale:
            raise DataError(
                name,
                f"pixel size {_size_text(size_used)} ({source}) is {worst:.3g}x "
                f"{'larger' if max(factors) > 1 else 'smaller'} than the model's "
                f"{_um(self.model_pixel_size)}, beyond --max_rescale {self.max_rescale:g}; set "
                "--pixel_size <um> if the calibration is wrong, or resample the image to about "
                f"{_um(self.model_pixel_size)} first",
            )
        target = [max(1, round(n * f)) for n, f in zip(spatial[:2], factors)] + spatial[2:]
        resample = target != spatial
        at_model = f" at the model's {_um(self.model_pixel_size)}" if resample else ""
        if min(target[:2]) < self.min_size:
            planes = (
                f"planes of {_shape_text(spatial[:2])} ({_size_text(size_used)}) are {_shape_text(target[:2])}"
                f"{at_model}"
                if resample
                else f"planes of {_shape_text(spatial[:2])} are"
            )
            raise DataError(
                name, f"{planes} below the minimum {self.min_size} x {self.min_size} px of the tiled inference"
            )
        n_in, n_model = math.prod(spatial), math.prod(target)
        need = estimate_memory_bytes(n_in, n_model)
        if need > self.max_memory_gb * 2**30:
            where = f" ({_size_text(size_used)}) is {_shape_text(target)}{at_model} and" if resample else ""
            raise DataError(
                name,
                f"{_shape_text(spatial)}{where} would need about {need / 2**30:.1f} GiB to "
                f"process, more than --max_memory_gb {self.max_memory_gb:g}; crop or bin it first, "
                "raise --max_memory_gb, or check --pixel_size",
            )
        # what the output will carry: the file's grid, or the given lateral size in um (a Z step converted to um)
        out_affine, out_unit = _affine(meta, r), meta.get("unit")
        if self.pixel_size is not None:
            z_scale = unit_scale(normalise_unit(out_unit), "um") if normalise_unit(out_unit) else None
            z = [float(np.linalg.norm(out_affine[:r, 2])) * (z_scale or 1.0)] if r == 3 else []
            out_affine, out_unit = np.diag([*size_used, *z, 1.0]), "um"
        x = img.as_tensor()
        if resample:
            x = self._resize(x, target[:2])
            model_affine = out_affine.copy()
            for i, (n, t) in enumerate(zip(spatial[:2], target[:2])):
                model_affine[:r, i] = out_affine[:r, i] * n / t
            meta = dict(meta)
            meta["affine"] = torch.as_tensor(model_affine)
            meta["unit"] = out_unit
        out = MetaTensor(x, meta=dict(meta), applied_operations=list(img.applied_operations))
        self.push_transform(
            out,
            orig_size=spatial,
            extra_info={
                "resampled": resample,
                "affine": out_affine.tolist(),
                "unit": out_unit,
                "changed_meta": resample or self.pixel_size is not None,
            },
        )
        return out

    @staticmethod
    def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``(1, X, Y[, Z])`` -> ``(1, X', Y'[, Z])``, each plane resized alone (Z kept): area averaging where both
        lateral axes shrink (anti-aliased, and light on memory), bilinear where they grow, bilinear with MONAI's
        Gaussian anti-aliasing otherwise."""
        grow = [int(s) >= n for s, n in zip(size, x.shape[1:3])]
        if not any(grow):
            resize = Resize(spatial_size=tuple(int(s) for s in size), mode="area")
        else:
            resize = Resize(spatial_size=tuple(int(s) for s in size), mode="bilinear", anti_aliasing=not all(grow))
        xf = x.float()
        if xf.ndim == 3:
            return torch.as_tensor(resize(xf))
        planes = xf[0].permute(2, 0, 1)  # (Z, X, Y): planes as channels, resampled independently
        return torch.as_tensor(resize(planes)).permute(1, 2, 0)[None].contiguous()

    # -- inverse -----------------------------------------------------------------------------------------------------

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Resample each key back onto the input's grid and give it the input's physical size."""
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            record = self.pop_transform(img)
            info = record[TraceKeys.EXTRA_INFO]
            orig = [int(s) for s in record[TraceKeys.ORIG_SIZE]]
            x = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
            if info["resampled"]:
                x = self._resize(x, orig[:2])
            meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
            if info["changed_meta"]:
                meta["affine"] = torch.as_tensor(np.asarray(info["affine"], dtype=np.float64))
                meta["unit"] = info["unit"]
            ops = list(img.applied_operations) if isinstance(img, MetaTensor) else []
            d[key] = MetaTensor(x, meta=meta, applied_operations=ops)
        return d
