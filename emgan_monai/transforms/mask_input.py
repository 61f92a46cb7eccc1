"""The input contract of a user's mask image, checked before it is decoded (:class:`CheckMaskInputd`).

:class:`~emgan_monai.transforms.ColorMaskToOneHotd` decides each pixel's class; this step refuses, naming the file and
the problem, what would decode into a wrong mask without an error:

- a stack of planes (a 3D image; a single-plane stack is 2D and accepted);
- an indexed-colour (palette) PNG, whose values are palette indices rather than colours;
- NaN or infinite values;
- a label map (one channel) with values that are not whole numbers, outside the labels, or with no background
  label at all (a binary 0/1 mask would read as mitochondria everywhere);
- a 3- or 4-channel image with values outside 0..255; with only 0/1 values that is not one-hot (one plane set per
  pixel: three binary planes of a stack are not a one-hot mask); or whose brightest value is below 128 (darker than
  every mask colour: three planes of label values 0/1/2 would otherwise read as all black = background);
- any other number of channels.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from emgan_monai.errors import DataError

__all__ = ["CheckMaskInputd"]


class CheckMaskInputd(MapTransform):
    """Refuse mask images ``(C, *spatial)`` (channel-first, as loaded) that break the mask contract.

    Parameters
    ----------
    keys
        Keys to check.
    labels
        Label values of a one-channel label map, in class order; the last is the background.
    accepts
        Plain-language statement of the contract, appended to every refusal.

    Raises
    ------
    DataError
        ``"<file>: <problem>; accepted: <accepts>"``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        labels: Sequence[int] = (0, 1, 2),
        accepts: str = "",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.labels = tuple(int(v) for v in labels)
        self.accepts = accepts

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            problem = self.problem(
                torch.as_tensor(img.as_tensor() if isinstance(img, MetaTensor) else img), getattr(img, "meta", {})
            )
            if problem:
                name = getattr(img, "meta", {}).get("filename_or_obj", key)
                raise DataError(str(name), problem + (f"; accepted: {self.accepts}" if self.accepts else ""))
        return d

    def problem(self, x: torch.Tensor, meta: Mapping | None = None) -> str | None:
        """What is wrong with ``x`` ``(C, *spatial)``, or ``None``."""
        meta = meta or {}
        shape = tuple(int(s) for s in x.shape)
        if x.ndim == 4:
            axes = meta.get("tiff_axes")
            return (
                f"a stack of {shape[-1]} planes of {shape[2]} x {shape[1]} px"
                + (f" (TIFF axes {axes})" if isinstance(axes, str) else "")
                + ": save each plane as its own file"
            )
        if x.ndim != 3:
            return f"an image of shape {shape} (channel-first); a mask is one 2D image"
        if x.numel() == 0:
            return "an empty image"
        if str(meta.get("mode", "")) in ("P", "PA"):
            return "an indexed-colour (palette) PNG: its values are palette indices, not colours; save it as RGB"
        xf = x.double()
        if not torch.isfinite(xf).all():
            return "NaN or infinite values"
        c = shape[0]
        if c == 1:
            return self._label_problem(xf[0])
        if c in (3, 4):
            return self._colour_problem(xf[:3])
        return f"{c} channels; a mask is RGB(A) (3 or 4 channels) or a one-channel label map"

    def _label_problem(self, lab: torch.Tensor) -> str | None:
        if not torch.equal(lab, lab.round()):
            return f"label values that are not whole numbers (e.g. {float(lab[lab != lab.round()][0]):g})"
        values = sorted(int(v) for v in torch.unique(lab).tolist())
        unknown = [v for v in values if v not in self.labels]
        if unknown:
            more = " ..." if len(unknown) > 5 else ""
            return f"label values {unknown[:5]}{more} outside the labels {self.labels}"
        if self.labels[-1] not in values and len(values) > 1:
            return (
                f"a label map without background (values {values}, no {self.labels[-1]}): a binary mask? "
                f"Labels are {', '.join(map(str, self.labels))} in class order, {self.labels[-1]} = background"
            )
        return None

    def _colour_problem(self, rgb: torch.Tensor) -> str | None:
        lo, hi = float(rgb.min()), float(rgb.max())
        if lo < 0 or hi > 255:
            return f"colour values outside 0..255 (min {lo:g}, max {hi:g}); save the mask as 8-bit RGB"
        if hi == 0:
            return None  # all black: all background
        values = torch.unique(rgb)
        if bool(((values == 0) | (values == 1)).all()):  # a one-hot stack (or an all-black image)
            set_planes = rgb.sum(0)
            bad = float((set_planes != 1).double().mean())
            if bad > 0:
                return (
                    f"three 0/1 planes that are not one-hot ({100 * bad:.1f} % of the pixels have none or several "
                    "planes set): a stack of binary planes?"
                )
            return None
        if 1 < hi < 128:
            return (
                f"no bright colour (values 0..{hi:g}): darker than every mask colour; three planes of label "
                "values? Give a one-channel label map instead"
            )
        return None
