"""Physical pixel size of 2D images: resample an input to the pixel size a network was trained at, and back.

- :func:`pixel_size_nm`: the pixel size ``(x, y)`` in nanometres that a loaded image's metadata state (TIFF: ImageJ,
  OME or resolution tags, read by :class:`~emgan_monai.io.TiffReader`), or ``None`` for an uncalibrated file (PNG,
  plain TIFF);
- :class:`ToPixelSized`: a channel-first 2D image ``(C, X, Y)`` -> the network's pixel size (class masks: area or
  bilinear resampling of the one-hot channels, then arg-max back to one-hot, as the training masks were made),
  refusing factors beyond ``max_factor`` and results beyond ``max_pixels`` before allocating them, with the sizes and
  the key that overrides them in the message;
- :class:`FromPixelSized`: a network output ``(C, X', Y')`` back onto the input's grid ``(C, X, Y)``, tagged with the
  input's pixel size (the TIFF writers store it).

The image's metadata keep describing the input's grid (``affine`` with its pixel size and ``unit``; for an
uncalibrated file the size assumed or given, in nm), so that writers and :class:`FromPixelSized` restore it;
:class:`ToPixelSized` records the input's spatial shape under ``"input_spatial_shape"``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from emgan_monai.errors import DataError
from emgan_monai.io.base import normalise_unit, unit_scale

__all__ = ["FromPixelSized", "ToPixelSized", "pixel_size_nm"]

logger = logging.getLogger(__name__)

#: meta key of the input's spatial shape, written by :class:`ToPixelSized`, read by :class:`FromPixelSized`
INPUT_SHAPE_KEY = "input_spatial_shape"


def _meta(img: Any) -> dict:
    return dict(img.meta) if isinstance(img, MetaTensor) else {}


def _name(img: Any, key: Hashable) -> str:
    return str(_meta(img).get("filename_or_obj", key))


def _spacing(meta: Mapping, r: int) -> list[float]:
    affine = meta.get("affine")
    if affine is None:
        return [1.0] * r
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    if a.ndim == 3:  # a batch of one affine
        a = a[0]
    return [float(np.linalg.norm(a[:r, i])) for i in range(r)]


def pixel_size_nm(img: Any, spatial_dims: int = 2) -> tuple[float, ...] | None:
    """Pixel size per spatial axis ``(x, y[, z])`` in nm from ``img.meta`` (``affine`` + ``unit``), or ``None``.

    ``None`` when the file states no physical unit (``unit`` missing or ``"pixel"``: PNG, plain TIFF, ImageJ
    ``pixel``) or one that is not a length (inch-based DPI is never read as a size by the TIFF reader).
    """
    meta = _meta(img)
    unit = normalise_unit(meta.get("unit"))
    scale = unit_scale(unit, "nm") if unit is not None else None
    if scale is None:
        return None
    return tuple(s * scale for s in _spacing(meta, spatial_dims))


def _fmt(size: tuple[float, ...] | list[float]) -> str:
    return (
        " x ".join(f"{s:.4g}" for s in size) + " nm/px"
        if len({round(s, 6) for s in size}) > 1
        else f"{size[0]:.4g} nm/px"
    )


def _resize(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """``(C, *spatial)`` float -> ``(C, *size)``: area averaging where every axis shrinks, else bilinear."""
    shrink = all(s <= n for s, n in zip(size, x.shape[1:]))
    mode = "area" if shrink else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x[None].float(), size=tuple(size), mode=mode, **kwargs)[0]


class ToPixelSized(MapTransform):
    """Resample channel-first 2D images ``(C, X, Y)`` to the pixel size a network was trained at.

    Parameters
    ----------
    keys
        Keys to resample.
    pixel_size
        The network's pixel size in nm (``model_pixel_size`` of the config).
    input_pixel_size
        The inputs' pixel size in nm, overriding what the files state (``pixel_size`` of the config); ``None``: the
        file's calibration, or ``pixel_size`` (no resampling) for an uncalibrated file, said in the log.
    onehot
        The images are one-hot class masks: resampled per channel, then arg-max back to one-hot (area averaging +
        arg-max is how the training masks were downsampled).
    max_factor
        Refuse inputs whose pixel size differs from ``pixel_size`` by more than this factor either way.
    max_pixels
        Refuse inputs that would exceed this many pixels at the network's pixel size (checked before resampling).
    override_key
        Name of the setting that overrides the input's pixel size, quoted in the messages.

    Raises
    ------
    DataError
        Naming the file, its pixel size and the network's, and the key to override, when the factor or the resampled
        size is beyond the limits, or when the image is not 2D.
    """

    def __init__(
        self,
        keys: KeysCollection,
        pixel_size: float,
        input_pixel_size: float | None = None,
        onehot: bool = True,
        max_factor: float = 8.0,
        max_pixels: int = 2**27,
        override_key: str = "pixel_size",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not pixel_size or pixel_size <= 0:
            raise DataError("--model_pixel_size", f"the network's pixel size must be positive, got {pixel_size}")
        if input_pixel_size is not None and not float(input_pixel_size) > 0:
            raise DataError(f"--{override_key}", f"must be a positive size in nm or null, got {input_pixel_size}")
        self.pixel_size = float(pixel_size)
        self.input_pixel_size = None if input_pixel_size is None else float(input_pixel_size)
        self.onehot = bool(onehot)
        self.max_factor = float(max_factor)
        self.max_pixels = int(max_pixels)
        self.override_key = override_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._one(d[key], key)
        return d

    def _one(self, img: Any, key: Hashable) -> MetaTensor:
        name = _name(img, key)
        meta = _meta(img)
        x = torch.as_tensor(img.as_tensor() if isinstance(img, MetaTensor) else img)
        spatial = [int(s) for s in x.shape[1:]]
        if len(spatial) != 2:
            raise DataError(name, f"expected a 2D image (C, X, Y), got shape {tuple(x.shape)}")
        model = (self.pixel_size,) * 2
        size: tuple[float, ...]
        unit: str | None
        if self.input_pixel_size is not None:
            size, unit = (self.input_pixel_size,) * 2, "nm"
            logger.info("%s: pixel size %s (set by %s)", name, _fmt(size), self.override_key)
        else:
            stated = pixel_size_nm(img)
            if stated is None:
                size, unit = model, "nm"
                logger.warning(
                    "%s: the file states no pixel size; assuming the model's %s (set --%s <nm> if it is not)",
                    name,
                    _fmt(model),
                    self.override_key,
                )
            else:
                size, unit = stated, None  # keep the file's own unit and affine
        factors = [s / m for s, m in zip(size, model)]
        if any(f > self.max_factor or f < 1.0 / self.max_factor for f in factors):
            raise DataError(
                name,
                f"pixel size {_fmt(size)} differs from the model's {_fmt(model)} by more than "
                f"{self.max_factor:g}x; resample the mask to about {self.pixel_size:g} nm/px, or "
                f"set --{self.override_key} <nm> if the file's calibration is wrong",
            )
        target = [max(1, round(n * f)) for n, f in zip(spatial, factors)]
        n_pixels = math.prod(target)
        if n_pixels > self.max_pixels:
            raise DataError(
                name,
                f"at the model's {_fmt(model)} this {spatial[0]} x {spatial[1]} px image of "
                f"{_fmt(size)} would be {target[0]} x {target[1]} px, more than the limit of "
                f"{self.max_pixels:,} px; crop it or check --{self.override_key}",
            )
        out = x.float()
        if target != spatial:
            out = _resize(out, target)
            if self.onehot:
                out = F.one_hot(out.argmax(0), out.shape[0]).movedim(-1, 0).float()
        meta[INPUT_SHAPE_KEY] = np.asarray(spatial, dtype=np.int64)
        if unit is not None:  # uncalibrated or overridden: the input's grid in nm
            affine = np.eye(3, dtype=np.float64)
            affine[0, 0], affine[1, 1] = size
            meta["affine"] = torch.as_tensor(affine)
            meta["unit"] = unit
        return MetaTensor(out, meta=meta)


class FromPixelSized(MapTransform):
    """Resample network outputs ``(C, X', Y')`` back to the input's grid ``(C, X, Y)`` recorded by
    :class:`ToPixelSized` (``meta["input_spatial_shape"]``): area averaging where the output shrinks, else bilinear.

    The output keeps the metadata of the input (``affine`` with the input's pixel size, ``unit``), which the TIFF
    writers store. ``ref_key``: take the shape from this key's metadata instead of the output's own.
    """

    def __init__(self, keys: KeysCollection, ref_key: Hashable | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            meta = _meta(d[self.ref_key]) if self.ref_key is not None else _meta(img)
            shape = meta.get(INPUT_SHAPE_KEY)
            x = torch.as_tensor(img.as_tensor() if isinstance(img, MetaTensor) else img)
            if shape is None:
                continue
            shape = [int(s) for s in np.ravel(np.asarray(shape.cpu() if isinstance(shape, torch.Tensor) else shape))]
            if list(x.shape[1:]) != shape:
                x = _resize(x, shape).to(x.dtype)
            out_meta = {**_meta(img), **{k: v for k, v in meta.items() if k in ("affine", "unit")}}
            d[key] = MetaTensor(x, meta=out_meta)
        return d
