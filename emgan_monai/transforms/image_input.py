"""The input contract of a single-channel intensity image (a fluorescence image or stack), checked before any work.

:class:`CheckImageInputd` refuses, naming the file and the problem in one line, what a network trained on one channel
of intensities would turn into a wrong result or a late, unreadable error:

- a colour (RGB / RGBA) image or any other number of channels than one;
- a number of spatial dimensions other than the accepted ones (2D image ``(Y, X)``, 3D stack ``(Z, Y, X)``);
- a data type that is not a number of intensity (``bool``, complex);
- NaN or infinite values;
- a constant image (every pixel the same value: an empty field has nothing to enhance, and percentile scaling of it is
  undefined).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from emgan_monai.errors import DataError

__all__ = ["CheckImageInputd"]


def _file_dtype(x: torch.Tensor, meta: Mapping) -> str:
    """The dtype of the file (``meta["original_dtype"]``: ``LoadImage`` widens uint16 to int32), else the tensor's."""
    original = meta.get("original_dtype")
    return str(original) if isinstance(original, str) else str(x.dtype).replace("torch.", "")


class CheckImageInputd(MapTransform):
    """Refuse images ``(C, *spatial)`` (channel-first, as loaded) that break the single-channel intensity contract.

    Parameters
    ----------
    keys
        Keys to check.
    spatial_dims
        Accepted numbers of spatial dimensions (``(2, 3)``: 2D images and 3D stacks).
    accepts
        Plain-language statement of the contract, appended to every refusal.
    allow_missing_keys
        Skip absent keys.

    Raises
    ------
    DataError
        ``"<file>: <problem>; this bundle accepts <accepts>"`` (one line).
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: Sequence[int] = (2, 3),
        accepts: str = "",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = tuple(int(d) for d in spatial_dims)
        self.accepts = accepts

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            meta = dict(img.meta) if isinstance(img, MetaTensor) else {}
            x = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
            problem = self.problem(x, meta)
            if problem:
                name = str(meta.get("filename_or_obj", key))
                raise DataError(name, problem + (f"; this bundle accepts {self.accepts}" if self.accepts else ""))
        return d

    def problem(self, x: torch.Tensor, meta: Mapping | None = None) -> str | None:
        """What is wrong with ``x`` ``(C, X, Y[, Z])``, or ``None``."""
        meta = meta or {}
        shape = tuple(int(s) for s in x.shape)
        axes = meta.get("tiff_axes")
        axes_text = f", TIFF axes {axes}" if isinstance(axes, str) else ""
        c, spatial = shape[0], shape[1:]
        if c != 1:
            if isinstance(axes, str) and "S" in axes and c in (3, 4):
                return (
                    f"an {'RGB' if c == 3 else 'RGBA'} colour image ({c} samples per pixel{axes_text}); save the "
                    "fluorescence channel alone as a grey-scale image"
                )
            dims = " x ".join(str(n) for n in (c, *spatial[::-1]))
            return f"{c} channels ({dims}{axes_text}); split the channels and enhance each one as its own file"
        if len(spatial) not in self.spatial_dims:
            n = len(spatial)
            return f"{n} spatial dimension{'s' if n != 1 else ''} (shape {spatial[::-1]} in file order{axes_text})"
        dtype = _file_dtype(x, meta)
        try:
            kind: str = np.dtype(dtype).kind
        except TypeError:
            kind = ""
        if x.dtype == torch.bool or kind == "b":
            return "a binary (bool) image, not intensities"
        if x.is_complex() or kind == "c":
            return f"complex values ({dtype}), not intensities"
        if x.is_floating_point():
            finite = torch.isfinite(x)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                return f"{bad} NaN or infinite value(s) out of {x.numel()}; replace or mask them first"
        lo, hi = x.min(), x.max()
        if bool(lo == hi):
            return f"a constant image (all {x.numel()} pixels are {float(lo):g}): nothing to enhance"
        return None
