"""Physical pixel size: resample an image to the pixel size a network was trained at, and back.

:class:`PixelSized` is a MONAI invertible dictionary transform for channel-first images ``(C, X, Y[, Z])`` as loaded
by :class:`~emgan_monai.io.TiffReader` (whose metadata carry the file's pixel size: ``affine`` and ``unit``):

- it decides the input's pixel size (in ``unit``, ``"nm"`` or ``"um"``): ``pixel_size`` when given, else the file's
  calibration (ImageJ, OME or resolution tags, :func:`stated_pixel_size`), else (an uncalibrated file) the model's
  own size, which it logs;
- it refuses, in one line naming the file, both sizes and the key that overrides them, a size more than
  ``max_rescale`` times off the model's, a plane that would be smaller than the tiling needs (``min_size``), and an
  input whose processing would need more than ``max_memory_gb`` (:func:`estimate_memory_bytes`, before anything is
  allocated);
- it resamples the lateral axes X and Y (``spatial_axes="lateral"``: plane by plane, Z never resampled) or every
  spatial axis (``"all"``) to the model's pixel size with MONAI's :class:`~monai.transforms.Resize`: area averaging
  where the image shrinks, (bi/tri)linear where it grows; sizes within ``tolerance`` of the model's are not resampled;
  ``mode="onehot"`` (one-hot class masks) then takes the arg-max back to one-hot, as the training masks were made;
- its inverse (``monai.transforms.Invertd`` with the preprocessing, in the postprocessing) resamples a prediction back
  onto the input's grid and gives it the input's physical size: the file's calibration, or ``pixel_size`` when given;
  an uncalibrated input stays uncalibrated, or carries the model's size with ``tag_uncalibrated``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, Resize
from monai.utils import TraceKeys

from emgan_monai.errors import DataError
from emgan_monai.io.base import normalise_unit, unit_scale

__all__ = ["PixelSized", "estimate_memory_bytes", "stated_pixel_size"]

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

_UNITS = ("nm", "um")
_AXES = ("lateral", "all")
_MODES = ("intensity", "onehot")


def estimate_memory_bytes(input_voxels: int, model_voxels: int) -> int:
    """Peak memory of processing an image of ``input_voxels`` voxels that is ``model_voxels`` at the model's pixel
    size (equal when nothing is resampled), in bytes: ``24 * input + 24 * model + 1 GiB`` (a slight overestimate of
    the peaks measured on CPU)."""
    return int(_BYTES_PER_INPUT_VOXEL * input_voxels + _BYTES_PER_MODEL_VOXEL * model_voxels + _FIXED_BYTES)


def _affine(meta: Mapping, r: int) -> np.ndarray:
    affine = meta.get("affine")
    if affine is None:
        return np.eye(r + 1)
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    return a[0] if a.ndim == 3 else a


def stated_pixel_size(img: Any, unit: str = "nm", spatial_dims: int | None = None) -> tuple[float, ...] | None:
    """Pixel size per spatial axis ``(x, y[, z])`` in ``unit`` from ``img.meta`` (``affine`` + ``unit``), or ``None``.

    ``None`` when the file states no physical unit (``unit`` missing or ``"pixel"``: PNG, plain TIFF, ImageJ
    ``pixel``) or one that is not a length (inch-based DPI is never read as a size by the TIFF reader).
    ``spatial_dims``: default the image's own (its dimensions less the channel).
    """
    meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
    stated = normalise_unit(meta.get("unit"))
    scale = unit_scale(stated, unit) if stated is not None else None
    if scale is None:
        return None
    r = int(spatial_dims) if spatial_dims is not None else max(1, len(getattr(img, "shape", ())) - 1)
    a = _affine(meta, r)
    return tuple(float(np.linalg.norm(a[:r, i])) * scale for i in range(r))


class PixelSized(MapTransform, InvertibleTransform):
    """Resample channel-first images ``(C, X, Y[, Z])`` to a model's pixel size (invertible by ``Invertd``).

    Parameters
    ----------
    keys
        Keys to resample.
    model_pixel_size
        The pixel size the network was trained at, in ``unit``.
    pixel_size
        The inputs' pixel size in ``unit``, overriding the files' calibration; ``None``: each file's calibration, and
        the model's size (nothing resampled, logged) for a file that states none.
    unit
        ``"nm"`` or ``"um"``: the unit of both sizes and of the messages.
    spatial_axes
        ``"lateral"``: resample X and Y only (each Z plane alone); ``"all"``: every spatial axis.
    mode
        ``"intensity"``: images; ``"onehot"``: one-hot class masks, resampled per channel (area averaging where they
        shrink, linear where they grow) then arg-max back to one-hot, as the training masks were made.
    max_rescale
        Refuse inputs whose pixel size differs from the model's by more than this factor either way.
    min_size
        Smallest X and Y size (px) at the model's pixel size (the tiled inferer's limit).
    max_memory_gb
        Refuse inputs whose processing is estimated (:func:`estimate_memory_bytes`) to need more, in GiB.
    tolerance
        Relative difference from ``model_pixel_size`` below which nothing is resampled.
    tag_uncalibrated
        Give the outputs of an uncalibrated input the size assumed (the model's, in ``unit``); ``False``: they stay
        uncalibrated.

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
        unit: str = "um",
        spatial_axes: str = "lateral",
        mode: str = "intensity",
        max_rescale: float = 4.0,
        min_size: int = 1,
        max_memory_gb: float = 16.0,
        tolerance: float = 0.01,
        tag_uncalibrated: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        for name, choice, allowed in (
            ("unit", unit, _UNITS),
            ("spatial_axes", spatial_axes, _AXES),
            ("mode", mode, _MODES),
        ):
            if choice not in allowed:
                raise DataError("", f"--{name} must be one of {', '.join(allowed)}, got {choice!r}")
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
                    f"--{what} must be a positive number{f' ({unit}) or null' if what == 'pixel_size' else ''}"
                    f", got {value!r}",
                )
        if not (isinstance(max_rescale, (int, float)) and max_rescale >= 1):
            raise DataError("", f"--max_rescale must be a number of at least 1, got {max_rescale!r}")
        self.model_pixel_size = float(model_pixel_size)
        self.pixel_size = None if pixel_size is None else float(pixel_size)
        self.unit = unit
        self.spatial_axes = spatial_axes
        self.mode = mode
        self.max_rescale = float(max_rescale)
        self.min_size = int(min_size)
        self.max_memory_gb = float(max_memory_gb)
        self.tolerance = float(tolerance)
        self.tag_uncalibrated = bool(tag_uncalibrated)

    # -- text ----------------------------------------------------------------------------------------------------------

    def _size_text(self, size: Sequence[float]) -> str:
        """``18.4 nm/px`` or ``0.26 x 0.3 um/px`` (X x Y[ x Z])."""
        if all(math.isclose(s, size[0], rel_tol=1e-6) for s in size):
            return f"{size[0]:.4g} {self.unit}/px"
        return " x ".join(f"{s:.4g}" for s in size) + f" {self.unit}/px"

    @staticmethod
    def _shape_text(spatial: Sequence[int]) -> str:
        """``(X, Y[, Z])`` -> ``"Y x X px"`` or ``"Z x Y x X px"`` (file order)."""
        return " x ".join(str(int(s)) for s in reversed(spatial)) + " px"

    # -- forward -----------------------------------------------------------------------------------------------------

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._forward(d[key], key)
        return d

    def input_pixel_size(self, meta: Mapping, r: int, name: str) -> tuple[tuple[float, ...] | None, str]:
        """``(size per resampled axis in unit, or None when uncalibrated; where it comes from)`` for an image's
        metadata (``r`` spatial dimensions)."""
        n = 2 if self.spatial_axes == "lateral" else r
        if self.pixel_size is not None:
            return (self.pixel_size,) * n, "set by --pixel_size"
        unit = normalise_unit(meta.get("unit"))
        if unit is None:
            return None, "uncalibrated"
        scale = unit_scale(unit, self.unit)
        if scale is None:
            raise DataError(
                name,
                f"the file states its pixel size in an unknown unit '{unit}'; set --pixel_size <{self.unit}> (the "
                f"{'lateral ' if self.spatial_axes == 'lateral' else ''}pixel size in {self.unit})",
            )
        a = _affine(meta, r)
        return tuple(float(np.linalg.norm(a[:r, i])) * scale for i in range(n)), "from the file"

    def _forward(self, img: Any, key: Hashable) -> MetaTensor:
        if not isinstance(img, MetaTensor):
            img = MetaTensor(torch.as_tensor(img))
        meta = img.meta
        name = str(meta.get("filename_or_obj", key))
        spatial = [int(s) for s in img.shape[1:]]
        r = len(spatial)
        n = 2 if self.spatial_axes == "lateral" else r
        model = (self.model_pixel_size,) * n
        size, source = self.input_pixel_size(meta, r, name)
        if size is None:
            logger.warning(
                "%s: the file states no pixel size; assuming the model's %s (nothing resampled; set "
                "--pixel_size <%s> if it is not)",
                name,
                self._size_text(model[:1]),
                self.unit,
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
                f"pixel size {self._size_text(size_used)} ({source}) is {worst:.3g}x "
                f"{'larger' if max(factors) > 1 else 'smaller'} than the model's "
                f"{self._size_text(model[:1])}, beyond --max_rescale {self.max_rescale:g}; set "
                f"--pixel_size <{self.unit}> if the calibration is wrong, or resample the image to about "
                f"{self._size_text(model[:1])} first",
            )
        target = [max(1, round(s * f)) for s, f in zip(spatial[:n], factors)] + spatial[n:]
        resample = target != spatial
        at_model = f" at the model's {self._size_text(model[:1])}" if resample else ""
        if min(target[:2]) < self.min_size:
            planes = (
                f"planes of {self._shape_text(spatial[:2])} ({self._size_text(size_used)}) are "
                f"{self._shape_text(target[:2])}{at_model}"
                if resample
                else f"planes of {self._shape_text(spatial[:2])} are"
            )
            raise DataError(
                name, f"{planes} below the minimum {self.min_size} x {self.min_size} px of the tiled inference"
            )
        need = estimate_memory_bytes(math.prod(spatial), math.prod(target))
        if need > self.max_memory_gb * 2**30:
            where = f" ({self._size_text(size_used)}) is {self._shape_text(target)}{at_model} and" if resample else ""
            raise DataError(
                name,
                f"{self._shape_text(spatial)}{where} would need about {need / 2**30:.1f} GiB to "
                f"process, more than --max_memory_gb {self.max_memory_gb:g}; crop or bin it first, "
                "raise --max_memory_gb, or check --pixel_size",
            )
        # what the output will carry: the file's grid, or the size given (or assumed) in unit (other axes converted)
        out_affine, out_unit = _affine(meta, r), meta.get("unit")
        retag = self.pixel_size is not None or (size is None and self.tag_uncalibrated)
        if retag:
            rest_scale = unit_scale(normalise_unit(out_unit), self.unit) if normalise_unit(out_unit) else None
            rest = [float(np.linalg.norm(out_affine[:r, i])) * (rest_scale or 1.0) for i in range(n, r)]
            out_affine, out_unit = np.diag([*size_used, *rest, 1.0]), self.unit
        x = img.as_tensor()
        if resample:
            x = self._resize(x, target)
            if self.mode == "onehot":
                x = F.one_hot(x.argmax(0), x.shape[0]).movedim(-1, 0).float()
            model_affine = out_affine.copy()
            for i, (s, t) in enumerate(zip(spatial[:n], target[:n])):
                model_affine[:r, i] = out_affine[:r, i] * s / t
            meta = dict(meta)
            meta["affine"] = torch.as_tensor(model_affine)
            meta["unit"] = out_unit
        elif self.mode == "onehot":
            x = x.float()
        out = MetaTensor(x, meta=dict(meta), applied_operations=list(img.applied_operations))
        self.push_transform(
            out,
            orig_size=spatial,
            extra_info={
                "resampled": resample,
                "affine": out_affine.tolist(),
                "unit": out_unit,
                "changed_meta": resample or retag,
            },
        )
        return out

    def _resize(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """``(C, X, Y[, Z])`` -> ``(C, *size)`` as float: area averaging where no resampled axis grows (anti-aliased,
        and light on memory), linear where none shrinks, linear with MONAI's Gaussian anti-aliasing otherwise; with ``spatial_axes="lateral"`` each Z plane of a stack alone."""
        lateral = self.spatial_axes == "lateral" and x.ndim == 4
        axes = 2 if lateral else x.ndim - 1
        new = [int(s) for s in size[:axes]]
        grow = [s > n for s, n in zip(new, x.shape[1 : 1 + axes])]
        shrink = [s < n for s, n in zip(new, x.shape[1 : 1 + axes])]
        linear = "bilinear" if axes == 2 else ("trilinear" if axes == 3 else "linear")
        if not any(grow):
            resize = Resize(spatial_size=tuple(new), mode="area")
        else:
            resize = Resize(spatial_size=tuple(new), mode=linear, anti_aliasing=any(shrink))
        xf = x.float()
        if not lateral:
            return torch.as_tensor(resize(xf))
        c = xf.shape[0]
        planes = xf.permute(0, 3, 1, 2).reshape(-1, *xf.shape[1:3])  # (C * Z, X, Y): planes resampled independently
        out = torch.as_tensor(resize(planes))
        return out.reshape(c, -1, *out.shape[1:]).permute(0, 2, 3, 1).contiguous()

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
                x = self._resize(x, orig)
            meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
            if info["changed_meta"]:
                meta["affine"] = torch.as_tensor(np.asarray(info["affine"], dtype=np.float64))
                meta["unit"] = info["unit"]
            ops = list(img.applied_operations) if isinstance(img, MetaTensor) else []
            d[key] = MetaTensor(x, meta=meta, applied_operations=ops)
        return d
