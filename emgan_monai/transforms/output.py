"""Output transforms of image-to-image inference: back to the input file's dtype, and PNG previews."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from ..io import write_image
from ..visualize import montage, to_uint8
from .intensity import PERCENTILE_KEY, InvertPercentile

__all__ = ["InvertToInputDtyped", "PreviewPNGd"]


class InvertToInputDtyped(MapTransform):
    """Undo the percentile scaling of a prediction and cast it to the dtype of the input *file*.

    :class:`~emgan_monai.transforms.InvertPercentile` restores the dtype that :class:`ScalePercentile` saw, but MONAI's
    ``LoadImage`` widens uint16 to int32 before any transform runs; :class:`~emgan_monai.io.TiffReader` records the
    file's dtype in ``meta["original_dtype"]``, which this transform uses (falling back to the recorded dtype).
    Integer outputs are rounded and clipped to the dtype's range.

    Parameters
    ----------
    keys : KeysCollection
        Predictions to invert, e.g. ``"pred"`` ``(C, H, W[, D])``.
    source_key : str
        The normalised input whose ``meta`` holds ``"percentile_scale"`` and ``"original_dtype"``.
    """

    def __init__(self, keys: KeysCollection, source_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = d.get(self.source_key)
        if not isinstance(source, MetaTensor) or PERCENTILE_KEY not in source.meta:
            raise ValueError(
                f"InvertToInputDtyped: d[{self.source_key!r}] carries no '{PERCENTILE_KEY}' metadata "
                "(normalise it with ScalePercentiled and keep meta tracking on)."
            )
        params = source.meta[PERCENTILE_KEY]
        original = source.meta.get("original_dtype")
        dtype = np.dtype(str(original)) if isinstance(original, str) else None
        inverter = InvertPercentile(dtype=dtype)
        for key in self.key_iterator(d):
            d[key] = inverter(d[key], params=params)
        return d


def _display_plane(img: np.ndarray) -> np.ndarray:
    """(C, X, Y[, Z]) reader layout -> (Y, X) middle plane of channel 0."""
    arr = np.asarray(img, dtype=np.float32)[0]
    if arr.ndim == 3:
        arr = arr[..., arr.shape[-1] // 2]
    return arr.T


def _percentile_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, (1.0, 99.8))
    return to_uint8(arr, float(lo), float(hi) if hi > lo else float(lo) + 1.0)


class PreviewPNGd(MapTransform):
    """Write ``<stem>_preview.png``: the middle plane of each key side by side (``input | output``).

    Each panel is scaled to its own 1st-99.8th percentiles. Expects un-batched items ``(C, X, Y[, Z])`` as produced by
    ``LoadImaged`` + ``EnsureChannelFirstd`` with :class:`~emgan_monai.io.TiffReader`; the file stem comes from
    ``meta["filename_or_obj"]`` of the first key.

    Parameters
    ----------
    keys : KeysCollection
        Images shown left to right, e.g. ``["image", "pred"]``.
    output_dir : str
        Folder of the PNGs (created).
    output_postfix : str
        Appended to the stem.
    overwrite : bool
        Replace existing PNGs; otherwise ``FileExistsError``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        output_postfix: str = "preview",
        overwrite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.output_postfix = output_postfix
        self.overwrite = overwrite

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = d[keys[0]]
        meta = first.meta if isinstance(first, MetaTensor) else d.get(f"{keys[0]}_meta_dict", {})
        stem = Path(str(meta.get("filename_or_obj", "image"))).name
        for ext in (".tiff", ".tif"):
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
        tiles = []
        for key in keys:
            value = d[key]
            arr = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            tiles.append(_percentile_uint8(_display_plane(arr)))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_image(
            self.output_dir / f"{stem}_{self.output_postfix}.png",
            montage(tiles, ncols=len(tiles)),
            overwrite=self.overwrite,
        )
        return d
