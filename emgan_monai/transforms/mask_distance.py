"""Class masks <-> smooth signed-distance maps: the representation the stage-1 mask generator learns.

A one-hot mask of 1-2 px membranes is a hard thing for a GAN to draw: arg-max or straight-through outputs give the
generator almost no gradient about where a thin line should continue, and the discriminator can win on value
saturation. A signed distance map is smooth, carries the same information and is the same kind of value for real
and generated masks; a decoder turns it back into classes and, optionally, closes the membrane network by a
watershed of the membrane map (the cell outlines of neural tissue are closed curves, which a local generator draws
with gaps).

- :class:`OneHotToDistanceMap` / :class:`OneHotToDistanceMapd`: one-hot ``(N + 1, H, W[, D])`` (last channel
  background) -> ``(N, H, W[, D])`` maps ``tanh(sd_k / scale)`` with ``sd_k`` the signed Euclidean distance to the
  boundary of class ``k`` (positive inside, at least 1 px; negative outside, at most -1 px), from
  :class:`monai.transforms.DistanceTransformEDT`.
- :class:`DistanceMapToOneHot`: the inverse, ``(B, N, ...)`` or ``(N, ...)`` maps -> one-hot with the earlier
  class winning where several are positive (mitochondria over membrane, as in :class:`MaskToOneHot`); with
  ``close_channel`` set, watershed lines of that channel (``skimage.segmentation.watershed`` from the cores of the
  regions where it is below ``-core_level``) are added to it, so gaps narrower than about twice the core distance
  are closed.

Encoding and decoding round-trip exactly (thresholds at 0, no closing) for any one-hot mask; see the tests.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import overload

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import DistanceTransformEDT, MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_numpy

__all__ = ["DistanceMapToOneHot", "OneHotToDistanceMap", "OneHotToDistanceMapd"]


class OneHotToDistanceMap(Transform):
    """One-hot class mask ``(N + 1, *spatial)`` (last channel background) -> ``(N, *spatial)`` in (-1, 1).

    Channel ``k`` is ``tanh(sd_k / scale)``, ``sd_k = edt(class k) - edt(not class k)`` (Euclidean distance
    transforms in pixels): ``>= tanh(1 / scale)`` inside class ``k``, ``<= -tanh(1 / scale)`` outside, so
    thresholding at 0 gives the class back. ``scale`` (px) sets how far from a boundary the map still varies: about
    the radius of the structures to draw (4 px for mitochondria and cells of the Drosophila sections at 256 px).
    A class absent from the image gives -1 everywhere; a class covering it, +1.
    """

    def __init__(self, scale: float = 4.0) -> None:
        if scale <= 0:
            raise ValueError(f"OneHotToDistanceMap: scale must be > 0, got {scale}.")
        self.scale = float(scale)
        self.edt = DistanceTransformEDT()

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        onehot = convert_to_numpy(img) > 0.5
        if onehot.ndim < 3 or onehot.shape[0] < 2:
            raise ValueError(
                f"OneHotToDistanceMap: expected a one-hot mask (N + 1 >= 2, H, W[, D]), got shape {onehot.shape}."
            )
        inside = onehot[:-1].astype(np.float32)
        signed = np.asarray(self.edt(inside)) - np.asarray(self.edt(1.0 - inside))
        out = np.tanh(signed / self.scale).astype(np.float32)
        for k in range(inside.shape[0]):  # a class absent from (or covering) the image has no boundary to measure to
            if not inside[k].any() or inside[k].all():
                out[k] = 1.0 if inside[k].all() else -1.0
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]


class OneHotToDistanceMapd(MapTransform):
    """Dictionary version of :class:`OneHotToDistanceMap` (in place on ``keys``)."""

    def __init__(self, keys: KeysCollection, scale: float = 4.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = OneHotToDistanceMap(scale)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class DistanceMapToOneHot(Transform):
    """Signed-distance maps ``(N, *spatial)`` or ``(B, N, *spatial)`` -> one-hot ``(N + 1, ...)`` / ``(B, N + 1, ...)``.

    A pixel belongs to the first channel whose map is above ``threshold`` (earlier channels win), else to the
    background (last output channel). With ``close_channel`` (e.g. 1, the membranes), the maps of that channel are
    flooded (``skimage.segmentation.watershed`` with ``watershed_line=True``) from markers = connected regions where
    the map is below ``-core_level``: every cell core is one basin, and the lines where basins meet are added to the
    channel. A gap in an outline narrower than about ``2 * scale * atanh(core_level)`` px leaves the two cores
    apart, so a line is drawn through it; outlines without gaps are unchanged (the line runs inside them).

    Parameters
    ----------
    threshold
        Decision level of every channel (0: the encoder's boundary).
    close_channel
        Channel whose outlines are closed by the watershed, or ``None`` (plain thresholding).
    core_level
        Markers are the connected regions where the ``close_channel`` map is below ``-core_level``.
    min_size
        Connected components (8-connected in 2D, 26 in 3D) of a class smaller than this many pixels are dropped
        before the classes are combined (``skimage.morphology.remove_small_objects``): specks where a generated map
        hovers around the threshold. One number for every channel or one per channel; 0 (default) keeps
        everything. The round trip of encoded masks is exact only for 0 or for masks without such specks.
    """

    def __init__(
        self,
        threshold: float = 0.0,
        close_channel: int | None = None,
        core_level: float = 0.8,
        min_size: int | Sequence[int] = 0,
    ) -> None:
        if not 0.0 < core_level < 1.0:
            raise ValueError(f"DistanceMapToOneHot: core_level must be in (0, 1), got {core_level}.")
        sizes = (min_size,) if isinstance(min_size, (int, np.integer)) else tuple(min_size)
        if not sizes or min(sizes) < 0:
            raise ValueError(
                f"DistanceMapToOneHot: min_size must be >= 0 (one number or one per channel), got {min_size}."
            )
        self.threshold = float(threshold)
        self.close_channel = close_channel
        self.core_level = float(core_level)
        self.min_size = int(min_size) if isinstance(min_size, (int, np.integer)) else [int(v) for v in sizes]

    def _closing_lines(self, field: np.ndarray) -> np.ndarray:
        from skimage.measure import label
        from skimage.segmentation import watershed

        markers = label(field < -self.core_level)
        if markers.max() < 2:
            return np.zeros(field.shape, dtype=bool)
        return watershed(field, markers, watershed_line=True) == 0

    def _decode(self, maps: np.ndarray) -> np.ndarray:
        """``(N, *spatial)`` -> ``(N + 1, *spatial)`` float32 one-hot."""
        positive = maps > self.threshold
        sizes = [self.min_size] * len(positive) if isinstance(self.min_size, int) else self.min_size
        if len(sizes) != len(positive):
            raise ValueError(f"DistanceMapToOneHot: {len(sizes)} min_size values for {len(positive)} channels.")
        if max(sizes) > 1:
            from skimage.morphology import remove_small_objects

            positive = np.stack(
                [
                    remove_small_objects(p, max_size=v - 1, connectivity=p.ndim) if v > 1 else p
                    for p, v in zip(positive, sizes)
                ]
            )
        if self.close_channel is not None:
            c = int(self.close_channel)
            positive[c] |= self._closing_lines(maps[c])
        n = maps.shape[0]
        label = np.full(maps.shape[1:], n, dtype=np.int64)
        for k in range(n - 1, -1, -1):  # earlier channels win: write them last
            label[positive[k]] = k
        return (label[None] == np.arange(n + 1).reshape((-1,) + (1,) * (maps.ndim - 1))).astype(np.float32)

    @overload
    def __call__(self, img: torch.Tensor, batched: bool | None = None) -> torch.Tensor: ...

    @overload
    def __call__(self, img: np.ndarray, batched: bool | None = None) -> np.ndarray: ...

    def __call__(self, img: NdarrayOrTensor, batched: bool | None = None) -> NdarrayOrTensor:
        """Decode ``img``; ``batched`` (default: ``img.ndim >= 4``) says whether the first axis is the batch."""
        maps = convert_to_numpy(img, dtype=np.float32)
        if batched is None:
            batched = maps.ndim >= 4
        if maps.ndim < (4 if batched else 3):
            raise ValueError(f"DistanceMapToOneHot: expected (B, N, H, W[, D]) or (N, H, W[, D]), got {maps.shape}.")
        if self.close_channel is not None and not 0 <= int(self.close_channel) < maps.shape[1 if batched else 0]:
            raise ValueError(
                f"DistanceMapToOneHot: close_channel {self.close_channel} is not a channel of {maps.shape}."
            )
        out = np.stack([self._decode(m) for m in maps]) if batched else self._decode(maps)
        return convert_to_dst_type(out, img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]
