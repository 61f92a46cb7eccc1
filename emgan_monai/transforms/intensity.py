"""CARE-style percentile normalisation that remembers how to go back to the original intensities.

:class:`ScalePercentile` maps the ``lower``/``upper`` percentiles (1 / 99.8 by default, as in CARE and
CAREamics) to ``b_min``/``b_max`` and records the percentile values and the input dtype in the item's
metadata; :class:`InvertPercentile` maps network outputs back to the original intensity range AND dtype
(e.g. a uint16 micrograph comes back as uint16, rounded and clipped to the dtype's range).

Why not :class:`monai.transforms.ScaleIntensityRangePercentiles`: it computes the same mapping but
discards the percentile values, which inversion needs. The forward mapping here re-uses MONAI's own
pieces, :func:`monai.transforms.utils_pytorch_numpy_unification.percentile` and
:class:`monai.transforms.ScaleIntensityRange`, so the numbers are identical to
``ScaleIntensityRangePercentiles(lower, upper, b_min, b_max, clip, channel_wise=...)`` whenever the
percentile range is not degenerate.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, ScaleIntensityRange, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import convert_to_dst_type, convert_to_tensor, ensure_tuple_rep, get_equivalent_dtype
from monai.utils.enums import TransformBackends

__all__ = [
    "PERCENTILE_KEY",
    "InvertPercentile",
    "InvertPercentiled",
    "ScalePercentile",
    "ScalePercentiled",
]

#: Metadata key under which :class:`ScalePercentile` records its parameters.
PERCENTILE_KEY = "percentile_scale"


def _numpy_dtype(dtype: Any) -> np.dtype:
    """numpy dtype of a numpy or torch dtype."""
    return np.dtype(get_equivalent_dtype(dtype, np.ndarray))


def _check_finite(img: torch.Tensor, who: str) -> None:
    if img.is_floating_point() and not bool(torch.isfinite(img).all()):
        bad = int((~torch.isfinite(img)).sum())
        raise ValueError(
            f"{who}: input contains {bad} NaN/Inf value(s) out of {img.numel()}; "
            "percentile scaling needs finite intensities (mask or replace them first, e.g. with "
            "monai.transforms.NormalizeIntensity's nonzero option or torch.nan_to_num)."
        )


class ScalePercentile(Transform):
    """Percentile normalisation ``(x - p_low) / (p_high - p_low)`` mapped to ``[b_min, b_max]``, recorded.

    Parameters
    ----------
    lower, upper
        Percentiles (0-100) mapped to ``b_min`` and ``b_max``; CARE uses 1 and 99.8.
    b_min, b_max
        Output values of the two percentiles, e.g. ``-1, 1`` for a ``tanh`` generator.
    clip
        Clip the output to ``[b_min, b_max]``. CARE does not clip (the default), so intensities above
        the upper percentile survive and inversion is exact.
    channel_wise
        Compute the percentiles per channel instead of over the whole image.
    eps
        Smallest denominator: a constant (or nearly constant) image, where ``p_high - p_low < eps``, is
        divided by ``eps`` instead, so the output is finite (``b_min`` everywhere for a constant image)
        and the inversion stays exact.
    dtype
        Output dtype (float32 by default).

    Notes
    -----
    The recorded parameters (a dict) go to ``img.meta["percentile_scale"]`` of the output
    :class:`~monai.data.MetaTensor` and to :attr:`last_params`::

        {"lower": 1.0, "upper": 99.8, "low_value": 103.0, "high_value": 6120.5, "b_min": 0.0, "b_max": 1.0,
         "eps": 1e-06, "channel_wise": False, "dtype": "uint16"}

    With ``channel_wise=True`` ``low_value``/``high_value`` are lists with one value per channel.
    ``dtype`` is the dtype of the array handed to this transform: load 16-bit images without casting
    them to float (e.g. ``LoadImaged(..., dtype=None)`` with a reader that keeps uint16) if the inversion
    is to give uint16 back, or pass ``dtype=`` to :class:`InvertPercentile`.

    Input: array or tensor ``(C, H, W[, D])``. Output: tensor ``(C, H, W[, D])`` of ``dtype``.
    NaN or Inf in the input raise ``ValueError``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        lower: float = 1.0,
        upper: float = 99.8,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        channel_wise: bool = False,
        eps: float = 1e-6,
        dtype: DtypeLike = np.float32,
    ) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}.")
        if b_min == b_max:
            raise ValueError(f"b_min and b_max must differ, got {b_min}.")
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}.")
        self.lower = float(lower)
        self.upper = float(upper)
        self.b_min = float(b_min)
        self.b_max = float(b_max)
        self.clip = clip
        self.channel_wise = channel_wise
        self.eps = float(eps)
        self.dtype = dtype
        self.last_params: dict[str, Any] | None = None

    def compute_params(self, img: NdarrayOrTensor) -> dict[str, Any]:
        """Percentile values of ``img`` ``(C, H, W[, D])`` and everything :class:`InvertPercentile` needs."""
        src_dtype = _numpy_dtype(img.dtype)
        img_t = convert_to_tensor(img, track_meta=False)
        _check_finite(img_t, type(self).__name__)
        if img_t.ndim < 2:
            raise ValueError(f"ScalePercentile expects a channel-first (C, H[, W, D]) input, got {tuple(img_t.shape)}.")
        flat = img_t.float().reshape(img_t.shape[0], -1) if self.channel_wise else img_t.float().reshape(-1)
        q = percentile(flat, [self.lower, self.upper], dim=1 if self.channel_wise else None)
        q = torch.as_tensor(q, dtype=torch.float64)
        low, high = (q[0].tolist(), q[1].tolist())  # floats, or lists of C floats when channel-wise
        return {
            "lower": self.lower,
            "upper": self.upper,
            "low_value": low,
            "high_value": high,
            "b_min": self.b_min,
            "b_max": self.b_max,
            "eps": self.eps,
            "channel_wise": self.channel_wise,
            "dtype": src_dtype.name,
        }

    def _scale(self, img: torch.Tensor, low: float, high: float) -> torch.Tensor:
        scaler = ScaleIntensityRange(
            a_min=low,
            a_max=low + max(high - low, self.eps),
            b_min=self.b_min,
            b_max=self.b_max,
            clip=self.clip,
            dtype=self.dtype,
        )
        return convert_to_tensor(scaler(img), track_meta=False)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """Scale ``img`` ``(C, H, W[, D])``; the output carries the parameters in ``meta["percentile_scale"]``."""
        params = self.compute_params(img)
        img_m = convert_to_tensor(img, track_meta=get_track_meta())
        img_t = convert_to_tensor(img_m, track_meta=False).to(torch.float64)
        if self.channel_wise:
            bounds = zip(img_t, params["low_value"], params["high_value"])
            out = torch.stack([self._scale(c, lo, hi) for c, lo, hi in bounds])
        else:
            out = self._scale(img_t, params["low_value"], params["high_value"])
        out_m = convert_to_dst_type(out, dst=img_m, dtype=get_equivalent_dtype(self.dtype, torch.Tensor))[0]
        if isinstance(out_m, MetaTensor):
            out_m.meta[PERCENTILE_KEY] = params
        self.last_params = params
        return out_m


class InvertPercentile(Transform):
    """Map percentile-normalised data back to the original intensity range and dtype.

    ``x = (y - b_min) / (b_max - b_min) * max(high_value - low_value, eps) + low_value``, then, for an
    integer target dtype, rounding and clipping to the dtype's range (no wrap-around); the result is cast
    to the target dtype (tensors stay tensors, e.g. ``torch.uint16``; numpy arrays stay numpy).

    Parameters are looked up in this order: the ``params`` argument of :meth:`__call__`,
    ``img.meta["percentile_scale"]``, the ``params`` given to the constructor.

    Parameters
    ----------
    params
        Default parameters as recorded by :class:`ScalePercentile` (its ``last_params``).
    dtype
        Target dtype overriding the recorded one (e.g. ``np.uint16`` when the image was loaded as float).

    Notes
    -----
    Works per item ``(C, H, W[, D])``; decollate a batch first (``monai.data.decollate_batch``).
    torch supports few operations on ``torch.uint16/uint32/uint64`` tensors (casting and ``.numpy()``
    work; ``max()`` does not): convert with ``.numpy()`` for arithmetic, writers accept them as they are.
    NaN or Inf in the input raise ``ValueError``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, params: Mapping[str, Any] | None = None, dtype: DtypeLike | torch.dtype | None = None) -> None:
        self.params = params
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor, params: Mapping[str, Any] | None = None) -> NdarrayOrTensor:
        """Invert the scaling of ``img`` ``(C, H, W[, D])``; returns the same container type, target dtype."""
        if params is None and isinstance(img, MetaTensor):
            params = img.meta.get(PERCENTILE_KEY)
        params = params if params is not None else self.params
        if params is None:
            raise ValueError(
                f"InvertPercentile: no '{PERCENTILE_KEY}' parameters: pass params=, or give a MetaTensor "
                "produced by ScalePercentile (or one whose meta was copied from it)."
            )
        img_t = convert_to_tensor(img, track_meta=False)
        _check_finite(img_t, type(self).__name__)
        low = torch.as_tensor(params["low_value"], dtype=torch.float64)
        high = torch.as_tensor(params["high_value"], dtype=torch.float64)
        if low.ndim == 1:  # channel-wise: one value per channel
            if img_t.ndim < 1 or img_t.shape[0] != low.numel():
                raise ValueError(
                    f"InvertPercentile: {low.numel()} channel-wise percentile values for an input of shape "
                    f"{tuple(img_t.shape)}."
                )
            low = low.reshape(-1, *([1] * (img_t.ndim - 1)))
            high = high.reshape(-1, *([1] * (img_t.ndim - 1)))
        scale = torch.clamp(high - low, min=float(params["eps"]))
        b_min, b_max = float(params["b_min"]), float(params["b_max"])
        x = (img_t.to(torch.float64) - b_min) / (b_max - b_min) * scale + low

        target = _numpy_dtype(self.dtype if self.dtype is not None else params["dtype"])
        if np.issubdtype(target, np.integer):
            info = np.iinfo(target)
            x = torch.clamp(torch.round(x), float(info.min), float(info.max))
        if isinstance(img, np.ndarray):
            return x.numpy().astype(target)
        out = x.to(get_equivalent_dtype(target, torch.Tensor))
        if isinstance(img, MetaTensor):
            out = MetaTensor(out, meta={k: v for k, v in img.meta.items() if k != PERCENTILE_KEY})
            out.applied_operations = list(img.applied_operations)
        return out


def _percentile_params(d: Mapping[Hashable, Any], key: Hashable, source_key: Hashable) -> Mapping[str, Any]:
    """Find recorded parameters for ``key`` in ``d[key].meta``, ``d[source_key].meta`` or ``d[f"{source_key}_..."]``."""
    for k in (key, source_key):
        v = d.get(k)
        if isinstance(v, MetaTensor) and PERCENTILE_KEY in v.meta:
            return v.meta[PERCENTILE_KEY]
    side = f"{source_key}_{PERCENTILE_KEY}"
    if side in d:
        return d[side]
    raise ValueError(
        f"InvertPercentiled: no '{PERCENTILE_KEY}' parameters for key '{key}' (looked in d['{key}'].meta, "
        f"d['{source_key}'].meta and d['{side}'])."
    )


class ScalePercentiled(MapTransform):
    """Dictionary version of :class:`ScalePercentile`.

    The parameters are recorded in ``d[key].meta["percentile_scale"]``; when meta tracking is off
    (``monai.data.set_track_meta(False)``) they go to ``d[f"{key}_percentile_scale"]`` instead.
    Other arguments: see :class:`ScalePercentile`.
    """

    backend = ScalePercentile.backend

    def __init__(
        self,
        keys: KeysCollection,
        lower: float = 1.0,
        upper: float = 99.8,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        channel_wise: bool = False,
        eps: float = 1e-6,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = ScalePercentile(lower, upper, b_min, b_max, clip, channel_wise, eps, dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        d: dict[Hashable, Any] = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
            if not isinstance(d[key], MetaTensor):
                d[f"{key}_{PERCENTILE_KEY}"] = self.scaler.last_params
        return d


class InvertPercentiled(MapTransform):
    """Dictionary version of :class:`InvertPercentile`.

    Parameters
    ----------
    keys
        Keys to invert (e.g. the network output ``"pred"``).
    source_keys
        Where the parameters were recorded, one per key (default: the key itself). E.g.
        ``InvertPercentiled("pred", source_keys="image")`` maps a prediction back to the intensity range
        of the input image. Looked up in ``d[key].meta``, ``d[source_key].meta``, then
        ``d[f"{source_key}_percentile_scale"]``.
    dtype
        Target dtype overriding the recorded one.
    allow_missing_keys
        Skip keys absent from the dictionary.
    """

    backend = InvertPercentile.backend

    def __init__(
        self,
        keys: KeysCollection,
        source_keys: KeysCollection | None = None,
        dtype: DtypeLike | torch.dtype | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_keys: Sequence[Hashable] = (
            self.keys if source_keys is None else ensure_tuple_rep(source_keys, len(self.keys))
        )
        self.inverter = InvertPercentile(dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, source_key in self.key_iterator(d, self.source_keys):
            d[key] = self.inverter(d[key], params=_percentile_params(d, key, source_key))
        return d
