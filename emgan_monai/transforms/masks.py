"""Binary masks -> one-hot class masks (mitochondria / membrane / background) and back to RGB.

The one-hot encoding itself is MONAI's ``AsDiscrete(to_onehot=...)``; this module only decides which
class each pixel belongs to (thresholds and priority) and how classes are coloured for display.
For a generic label map -> one-hot, use ``monai.transforms.AsDiscreted(keys, to_onehot=n)`` directly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import AsDiscrete, MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_tensor, ensure_tuple
from monai.utils.enums import TransformBackends

from emgan_monai.errors import DataError

__all__ = [
    "ColorMaskToOneHot",
    "ColorMaskToOneHotd",
    "MaskToOneHot",
    "MaskToOneHotd",
    "OneHotToRGB",
    "OneHotToRGBd",
    "DEFAULT_COLORS",
]

#: Class colours of the Drosophila masks: mitochondria red, membrane green, background blue.
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255))


class MaskToOneHot(Transform):
    """Combine N binary masks, in priority order, into an (N + 1)-channel one-hot mask (last = background).

    Default use (the Drosophila VNC data): ``MaskToOneHot()(mito, membrane)`` gives
    ``(3, H, W)`` float32 with channel 0 mitochondria, 1 membrane, 2 background. Where several masks
    are set, the EARLIER mask wins (mitochondria over membrane); pixels in no mask are background.
    Exactly one channel is 1 at every pixel.

    Parameters
    ----------
    thresholds
        One per mask: a pixel belongs to mask ``i`` when ``mask_i > thresholds[i]``. ``None`` (the default, for all
        masks or per mask) chooses by the mask's range (the rule :func:`emgan_monai.data.drosophila.build_mask`
        calls this transform for): ``> 127`` for 0/255 masks (the Drosophila mitochondria PNGs,
        with a few anti-aliased values) and ``> 0.5`` for bool or 0/1 masks (the membrane PNGs). Both hold after
        ``LoadImage``, which casts to float32 without rescaling. (A fixed ``127`` would turn a 0/1 mask into
        background.)
    dtype
        Output dtype (float32).

    Notes
    -----
    Inputs: masks of shape ``(1, H, W[, D])`` (channel-first, as from ``LoadImage(ensure_channel_first=True)``)
    or ``(H, W[, D])``, all the same spatial shape. Output: ``(N + 1, H, W[, D])``, with the meta of the
    first mask when it is a MetaTensor.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, thresholds: Sequence[float | None] | None = (None, None), dtype: torch.dtype = torch.float32
    ) -> None:
        if thresholds is None:
            thresholds = (None, None)
        self.thresholds = tuple(None if t is None else float(t) for t in ensure_tuple(thresholds))
        if len(self.thresholds) == 0:
            raise ValueError("MaskToOneHot needs at least one threshold (one per mask).")
        self.dtype = dtype

    @staticmethod
    def auto_threshold(mask: torch.Tensor) -> float:
        """``127`` for masks with values above 1 (0/255), else ``0.5`` (bool, 0/1)."""
        return 127.0 if mask.numel() and float(mask.max()) > 1 else 0.5

    @classmethod
    def binarise(cls, mask: torch.Tensor, threshold: float | None) -> torch.Tensor:
        """``mask > threshold`` (``None``: :meth:`auto_threshold`); a bool mask is taken as it is."""
        if mask.dtype == torch.bool:
            return mask
        mask = mask if mask.is_floating_point() else mask.float()
        return mask > (cls.auto_threshold(mask) if threshold is None else threshold)

    def __call__(self, *masks: NdarrayOrTensor) -> torch.Tensor:
        """One-hot mask ``(N + 1, H, W[, D])`` from N masks ``(1, H, W[, D])`` given in priority order."""
        if len(masks) != len(self.thresholds):
            raise ValueError(f"MaskToOneHot: got {len(masks)} masks for {len(self.thresholds)} thresholds.")
        ref = convert_to_tensor(masks[0], track_meta=get_track_meta())
        binary: list[torch.Tensor] = []
        for i, (m, t) in enumerate(zip(masks, self.thresholds)):
            m_t = convert_to_tensor(m, track_meta=False)
            if m_t.ndim >= 2 and m_t.shape[0] == 1:
                m_t = m_t[0]
            if binary and m_t.shape != binary[0].shape:
                raise ValueError(
                    f"MaskToOneHot: mask {i} has spatial shape {tuple(m_t.shape)}, mask 0 {tuple(binary[0].shape)}; "
                    "masks must be single-channel (1, H, W[, D]) or (H, W[, D]) of one shape."
                )
            binary.append(self.binarise(m_t, t))
        n = len(binary)
        label = torch.full(binary[0].shape, n, dtype=torch.long)  # background = last class
        for i in reversed(range(n)):  # lower index written last -> wins on overlap
            label[binary[i]] = i
        onehot = AsDiscrete(to_onehot=n + 1, dtype=self.dtype)(label[None])
        onehot = convert_to_tensor(onehot, track_meta=False)
        if ref.ndim == onehot.ndim:  # channel-first reference: carry its meta (affine, filename, ...)
            return convert_to_dst_type(onehot, dst=ref, dtype=self.dtype)[0]
        return onehot


class MaskToOneHotd(MapTransform):
    """Dictionary version of :class:`MaskToOneHot`: ``d[output_key] = one-hot of d[keys[0]], d[keys[1]], ...``.

    Parameters
    ----------
    keys
        Mask keys in priority order, e.g. ``("mito", "membrane")``: mitochondria win over membranes.
    output_key
        Key written with the ``(len(keys) + 1, H, W[, D])`` float32 one-hot mask (default ``"label"``).
    thresholds
        One per key, see :class:`MaskToOneHot`.
    delete_keys
        Remove the source mask keys afterwards.
    allow_missing_keys
        A missing mask is treated as empty (all zeros); if all masks are missing, ``d`` is returned
        unchanged. Without it a missing key raises ``KeyError``.
    """

    backend = MaskToOneHot.backend

    def __init__(
        self,
        keys: KeysCollection = ("mito", "membrane"),
        output_key: Hashable = "label",
        thresholds: Sequence[float | None] | None = None,
        delete_keys: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if thresholds is None:
            thresholds = (None,) * len(self.keys)
        if len(ensure_tuple(thresholds)) != len(self.keys):
            raise ValueError(f"MaskToOneHotd: {len(self.keys)} keys but {len(ensure_tuple(thresholds))} thresholds.")
        self.output_key = output_key
        self.delete_keys = delete_keys
        self.converter = MaskToOneHot(thresholds)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            return d
        first = d[present[0]]
        masks = [d[k] if k in d else torch.zeros_like(convert_to_tensor(first, track_meta=False)) for k in self.keys]
        d[self.output_key] = self.converter(*masks)
        if self.delete_keys:
            for k in present:
                if k != self.output_key:
                    del d[k]
        return d


class OneHotToRGB(Transform):
    """Colour a class mask ``(N, H, W[, D])`` as an RGB image ``(3, H, W[, D])`` uint8 for display.

    By default each pixel takes the colour of its most likely class (argmax), so one-hot masks and
    generator probabilities both give crisp colours. With ``argmax=False`` the colours are mixed by the
    channel values (clipped to [0, 1]), which shows the uncertainty of soft outputs.

    Parameters
    ----------
    colors
        One RGB triple per channel; default :data:`DEFAULT_COLORS` (mitochondria red, membrane green,
        background blue).
    argmax
        Colour by the argmax class (default) or blend by channel values.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, colors: Sequence[Sequence[int]] = DEFAULT_COLORS, argmax: bool = True) -> None:
        palette = np.asarray(colors, dtype=np.float64)
        if palette.ndim != 2 or palette.shape[1] != 3 or palette.min() < 0 or palette.max() > 255:
            raise ValueError(f"colors must be RGB triples in [0, 255], got {colors}.")
        self.palette = torch.as_tensor(palette)
        self.argmax = argmax

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """RGB uint8 ``(3, H, W[, D])`` of the class mask ``img`` ``(N, H, W[, D])``; same container type."""
        x = convert_to_tensor(img, track_meta=False)
        if x.ndim < 2 or x.shape[0] != self.palette.shape[0]:
            raise ValueError(
                f"OneHotToRGB: input of shape {tuple(x.shape)} needs {self.palette.shape[0]} channels "
                "(one per colour), channel first."
            )
        x = x.to(torch.float64)
        if self.argmax:
            x = AsDiscrete(argmax=True, to_onehot=self.palette.shape[0], dtype=torch.float64)(x)
            x = convert_to_tensor(x, track_meta=False)
        else:
            x = x.clamp(0.0, 1.0)
        rgb = torch.einsum("nc,n...->c...", self.palette, x)
        rgb = rgb.round().clamp(0, 255).to(torch.uint8)
        return convert_to_dst_type(rgb, dst=img, dtype=rgb.dtype)[0]


class OneHotToRGBd(MapTransform):
    """Dictionary version of :class:`OneHotToRGB`; writes ``d[key]``, or ``d[f"{key}_{output_postfix}"]`` if given."""

    backend = OneHotToRGB.backend

    def __init__(
        self,
        keys: KeysCollection,
        colors: Sequence[Sequence[int]] = DEFAULT_COLORS,
        argmax: bool = True,
        output_postfix: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = OneHotToRGB(colors, argmax)
        self.output_postfix = output_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            out_key = key if self.output_postfix is None else f"{key}_{self.output_postfix}"
            d[out_key] = self.converter(d[key])
        return d


class ColorMaskToOneHot(Transform):
    """A user's mask image -> one-hot ``(3, H, W[, D])`` float32 (mitochondria, membrane, background).

    Accepts what people draw or what the ``drosophila_skip_patch`` bundle's ``inference.json`` writes:

    - ``(3, ...)`` or ``(4, ...)`` RGB(A) colour masks (0..255, or 0..1 floats; a one-hot stack is the 0..1 case):
      each pixel goes to the closest of ``colors`` (default mitochondria red, membrane green, background blue) or
      of the ``aliases`` (default black = background);
    - ``(1, ...)`` label maps with values ``labels`` (default 0 mitochondria, 1 membrane, 2 background).

    A colour mask must be one: when more than ``max_off_fraction`` of its pixels are further than ``tolerance``
    (Euclidean, 0..255 units) from every listed colour -- a photograph, a noise image, other colours, a stack of
    grey planes stored as RGB -- it is refused rather than snapped to the nearest colours.

    Raises ``ValueError`` for other channel counts, label values outside ``labels`` or off-palette colour masks.
    """

    def __init__(
        self,
        colors=DEFAULT_COLORS,
        labels: tuple[int, ...] = (0, 1, 2),
        aliases: Sequence[tuple[Sequence[int], int]] = (((0, 0, 0), 2),),
        tolerance: float = 100.0,
        max_off_fraction: float = 0.05,
    ) -> None:
        self.colors = np.asarray(colors, dtype=np.float32)
        self.labels = tuple(int(v) for v in labels)
        self.aliases = [(np.asarray(c, dtype=np.float32)[:3], int(i)) for c, i in aliases]
        self.tolerance = float(tolerance)
        self.max_off_fraction = float(max_off_fraction)

    def __call__(self, img):
        arr = torch.as_tensor(np.asarray(img) if not isinstance(img, torch.Tensor) else img).float()
        n = len(self.labels)
        if arr.shape[0] in (3, 4):
            rgb = arr[:3]
            if rgb.max() <= 1.0:
                rgb = rgb * 255.0
            palette = [c[:3] for c in self.colors] + [c for c, _ in self.aliases]
            classes = torch.as_tensor(list(range(n)) + [i for _, i in self.aliases])
            colors = torch.as_tensor(np.stack(palette), dtype=rgb.dtype).reshape(
                len(palette), 3, *([1] * (rgb.ndim - 1))
            )
            dist = ((rgb.unsqueeze(0) - colors) ** 2).sum(1)
            nearest = dist.argmin(0)
            off = float((dist.amin(0) > self.tolerance**2).float().mean())
            if off > self.max_off_fraction:
                names = ", ".join(str(tuple(int(v) for v in c)) for c in palette)
                raise ValueError(
                    f"not a colour mask: {100 * off:.1f} % of the pixels are more than {self.tolerance:g} away from "
                    f"every mask colour ({names}); give an RGB mask in these colours or a label map "
                    f"{self.labels}"
                )
            label = classes[nearest]
        elif arr.shape[0] == 1:
            lab = arr[0].round().long()
            label = torch.full_like(lab, -1)
            for i, v in enumerate(self.labels):
                label[lab == v] = i
            if (label < 0).any():
                bad = sorted(set(torch.unique(lab[label < 0]).tolist()))[:5]
                raise ValueError(f"mask label values {bad} are not among the expected labels {self.labels}")
        else:
            raise ValueError(
                f"a mask must be RGB(A) (3 or 4 channels) or a 1-channel label map, got {arr.shape[0]} channels"
            )
        onehot = torch.nn.functional.one_hot(label, n).movedim(-1, 0).float()
        if isinstance(img, MetaTensor):
            return MetaTensor(onehot, meta=img.meta)
        return onehot


class ColorMaskToOneHotd(MapTransform):
    """Dictionary version of :class:`ColorMaskToOneHot`."""

    def __init__(
        self,
        keys,
        colors=DEFAULT_COLORS,
        labels: tuple[int, ...] = (0, 1, 2),
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ColorMaskToOneHot(colors, labels, **kwargs)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.converter(d[key])
            except ValueError as e:
                src = getattr(d[key], "meta", {}).get("filename_or_obj", key)
                raise DataError(str(src), str(e)) from e
        return d
