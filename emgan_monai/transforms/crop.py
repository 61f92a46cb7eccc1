"""Random area-fraction crops that keep the aspect ratio, and joint random flips.

Both are thin layers over MONAI: the crop is :class:`monai.transforms.SpatialCrop` followed by
:class:`monai.transforms.Resize`; the flips are :class:`monai.transforms.RandFlipd` instances.
All transforms work on channel-first data ``(C, H, W)`` (2D) or ``(C, H, W, D)`` (3D); the number of
spatial dimensions is taken from the input.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import (
    BorderPad,
    Compose,
    InvertibleTransform,
    MapTransform,
    RandFlipd,
    RandomizableTransform,
    Resize,
    SpatialCrop,
)
from monai.transforms.utils import TraceKeys
from monai.utils import ensure_tuple_rep, fall_back_tuple
from monai.utils.enums import TransformBackends
from monai.utils.type_conversion import convert_to_tensor

__all__ = ["RandAreaCrop", "RandAreaCropd", "RandFlipsd", "area_crop_size"]

_LINEAR_MODES = ("linear", "bilinear", "trilinear")
_LINEAR_BY_NDIM = {1: "linear", 2: "bilinear", 3: "trilinear"}


def area_crop_size(spatial_shape: Sequence[int], area_fraction: float) -> tuple[int, ...]:
    """Side lengths of a crop covering ``area_fraction`` of the input with the same aspect ratio.

    Each side is scaled by ``area_fraction ** (1 / ndim)`` and rounded to the nearest integer
    (clamped to ``[1, side]``), so the crop's area (2D) or volume (3D) is ``area_fraction`` of the
    input up to one pixel per side.

    Parameters
    ----------
    spatial_shape
        Input spatial shape ``(H, W[, D])``.
    area_fraction
        Fraction of the area (volume in 3D) to keep, in ``(0, 1]``.

    Returns
    -------
    tuple of int
        Crop size ``(h, w[, d])``.
    """
    if not 0.0 < area_fraction <= 1.0:
        raise ValueError(f"area_fraction must be in (0, 1], got {area_fraction}.")
    if len(spatial_shape) == 0 or any(int(s) < 1 for s in spatial_shape):
        raise ValueError(f"spatial_shape must be non-empty with positive sides, got {tuple(spatial_shape)}.")
    scale = float(area_fraction) ** (1.0 / len(spatial_shape))
    return tuple(min(int(s), max(1, int(round(int(s) * scale)))) for s in spatial_shape)


def _resize_mode(mode: str, spatial_dims: int) -> str:
    """Map any linear mode name to the one ``torch.nn.functional.interpolate`` needs for ``spatial_dims``."""
    return _LINEAR_BY_NDIM[spatial_dims] if mode in _LINEAR_MODES else mode


class RandAreaCrop(RandomizableTransform, InvertibleTransform):
    """Randomly crop a box holding ``area_fraction`` of the image, keeping the aspect ratio, and resize back.

    With probability ``prob`` a box whose sides are the input's sides times
    ``area_fraction ** (1 / spatial_dims)`` (rounded, see :func:`area_crop_size`) is placed at a uniformly
    random position, cropped with :class:`monai.transforms.SpatialCrop` and resized with
    :class:`monai.transforms.Resize` to ``spatial_size``. This is the "zoom-in" augmentation of the
    Drosophila mask/EM GAN (``area_fraction=0.90`` for the stage-1 masks, ``0.98`` for mask/EM pairs).

    When the coin says "no", the box is the whole image; the image is still resized to ``spatial_size``
    when that differs from the input size, so the output shape never depends on the coin.

    The box of the last call is kept in :attr:`last_box` (a tuple of ``slice``, one per spatial axis).
    Seeding with :meth:`set_random_state` makes the sequence of boxes reproducible.

    On a :class:`~monai.data.MetaTensor` the affine is updated by the MONAI crop/resize and a single
    entry is pushed to ``applied_operations``, so :meth:`inverse` (resize back, zero-pad outside the box)
    and :class:`monai.transforms.Compose` inversion keep working; inversion is not required for training.

    Parameters
    ----------
    area_fraction
        Fraction of the area (2D) or volume (3D) to keep, in ``(0, 1]``.
    prob
        Probability of cropping.
    spatial_size
        Output spatial size ``(H', W'[, D'])``; ``None`` (default) or non-positive entries keep the
        input's size along that axis.
    mode
        Interpolation mode of :class:`monai.transforms.Resize` (``"bilinear"``, ``"area"``, ``"nearest"``,
        ``"nearest-exact"``, ``"bicubic"``...). ``"linear"``, ``"bilinear"`` and ``"trilinear"`` are
        interchangeable: the one matching the input's dimensionality is used.
    align_corners
        Passed to :class:`monai.transforms.Resize` for linear modes.
    anti_aliasing
        Gaussian pre-filtering when the resize shrinks (only relevant when ``spatial_size`` is smaller
        than the crop).

    Examples
    --------
    >>> crop = RandAreaCrop(area_fraction=0.9, prob=1.0).set_random_state(seed=0)
    >>> out = crop(torch.rand(1, 64, 48))        # (1, 64, 48)
    >>> [s.stop - s.start for s in crop.last_box]
    [61, 46]
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        area_fraction: float = 0.9,
        prob: float = 1.0,
        spatial_size: Sequence[int] | int | None = None,
        mode: str = "bilinear",
        align_corners: bool | None = None,
        anti_aliasing: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0.0 < area_fraction <= 1.0:
            raise ValueError(f"area_fraction must be in (0, 1], got {area_fraction}.")
        self.area_fraction = float(area_fraction)
        self.spatial_size = spatial_size
        self.mode = mode
        self.align_corners = align_corners
        self.anti_aliasing = anti_aliasing
        self.last_box: tuple[slice, ...] | None = None

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the coin and the box for an input of spatial shape ``(H, W[, D])``; sets :attr:`last_box`."""
        super().randomize(None)
        shape = tuple(int(s) for s in spatial_shape)
        self.last_box = self.draw_box(shape) if self._do_transform else tuple(slice(0, s) for s in shape)

    def draw_box(self, spatial_shape: Sequence[int]) -> tuple[slice, ...]:
        """Draw a box of size :func:`area_crop_size` at a uniformly random position (no coin toss)."""
        shape = tuple(int(s) for s in spatial_shape)
        size = area_crop_size(shape, self.area_fraction)
        starts = [int(self.R.randint(0, s - c + 1)) for s, c in zip(shape, size)]
        return tuple(slice(st, st + c) for st, c in zip(starts, size))

    def output_size(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """Output spatial size for an input of spatial shape ``spatial_shape``."""
        if self.spatial_size is None:
            return tuple(int(s) for s in spatial_shape)
        return tuple(int(s) for s in fall_back_tuple(self.spatial_size, tuple(spatial_shape)))

    def __call__(
        self,
        img: NdarrayOrTensor,
        randomize: bool = True,
        mode: str | None = None,
        align_corners: bool | None = None,
    ) -> torch.Tensor:
        """Crop and resize one channel-first image.

        Parameters
        ----------
        img
            Array or tensor of shape ``(C, H, W[, D])``.
        randomize
            Draw a new box; ``False`` re-uses :attr:`last_box` (used by :class:`RandAreaCropd` to crop
            several keys at the same place).
        mode, align_corners
            Override the constructor's resize settings for this call.

        Returns
        -------
        torch.Tensor
            Tensor (a :class:`~monai.data.MetaTensor` when meta tracking is on) of shape
            ``(C, *spatial_size)``, dtype float32.
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        if img_t.ndim < 2:
            raise ValueError(
                f"RandAreaCrop expects a channel-first (C, H[, W, D]) input, got shape {tuple(img_t.shape)}."
            )
        spatial_shape = tuple(int(s) for s in img_t.shape[1:])
        if randomize:
            self.randomize(spatial_shape)
        if self.last_box is None:
            raise RuntimeError("RandAreaCrop: call randomize() (or __call__ with randomize=True) before cropping.")
        if len(self.last_box) != len(spatial_shape) or any(b.stop > s for b, s in zip(self.last_box, spatial_shape)):
            raise ValueError(
                f"RandAreaCrop: box {self.last_box} does not fit an input of spatial shape {spatial_shape}; "
                "all keys cropped together must share one spatial shape."
            )
        spatial_dims = len(spatial_shape)
        resize = Resize(
            spatial_size=self.output_size(spatial_shape),
            mode=_resize_mode(mode or self.mode, spatial_dims),
            align_corners=self.align_corners if align_corners is None else align_corners,
            anti_aliasing=self.anti_aliasing,
        )
        out = resize(SpatialCrop(roi_slices=self.last_box)(img_t))
        if get_track_meta() and isinstance(out, MetaTensor):
            # group the crop and resize entries into one, as ResizeWithPadOrCrop does
            resize_info = out.applied_operations.pop()
            crop_info = out.applied_operations.pop()
            self.push_transform(
                out,
                orig_size=crop_info.get(TraceKeys.ORIG_SIZE),
                extra_info={
                    "crop_info": crop_info,
                    "resize_info": resize_info,
                    "box": [[b.start, b.stop] for b in self.last_box],
                },
            )
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Undo the last crop of ``data``: resize to the box size, then zero-pad to the original size."""
        transform = self.pop_transform(data)
        return self.inverse_transform(data, transform)

    def inverse_transform(self, data: torch.Tensor, transform: Mapping) -> torch.Tensor:
        """Apply the inverse described by a traced ``transform`` entry (see :meth:`inverse`)."""
        extra = transform[TraceKeys.EXTRA_INFO]
        with Resize(spatial_size=1).trace_transform(False):
            data = Resize(spatial_size=1).inverse_transform(data, extra["resize_info"])
        pad = BorderPad(extra["crop_info"][TraceKeys.EXTRA_INFO]["cropped"])
        with pad.trace_transform(False):
            return pad(data)


class RandAreaCropd(RandomizableTransform, MapTransform, InvertibleTransform):
    """Dictionary version of :class:`RandAreaCrop`: ONE random box for all ``keys``, per-key resize modes.

    All keys must share the same spatial shape ``(H, W[, D])`` (they may differ in channels); they are
    cropped at exactly the same place, so an EM image and its mask stay aligned.

    Resize modes per key: use ``"bilinear"`` (or ``"area"``) for intensity images and ``"nearest"`` for
    label maps or one-hot masks so they stay binary. Alternatively resize a one-hot mask with
    ``"bilinear"`` (smoother borders) and re-binarise afterwards with MONAI's
    ``AsDiscreted(keys="label", argmax=True, to_onehot=3)``: the bilinear result still sums to 1 per pixel,
    the argmax picks the dominant class, and ``to_onehot`` rebuilds one channel per class.

    Parameters
    ----------
    keys
        Keys of the items to crop.
    area_fraction, prob, spatial_size, align_corners, anti_aliasing
        See :class:`RandAreaCrop`.
    mode
        One resize mode for all keys, or one per key (same order as ``keys``).
    allow_missing_keys
        Skip keys absent from the dictionary instead of raising ``KeyError``.

    Examples
    --------
    >>> crop = RandAreaCropd(["image", "label"], area_fraction=0.98, mode=["bilinear", "nearest"])
    >>> out = crop.set_random_state(seed=1)({"image": torch.rand(1, 64, 64), "label": torch.rand(3, 64, 64)})
    """

    backend = RandAreaCrop.backend

    def __init__(
        self,
        keys: KeysCollection,
        area_fraction: float = 0.9,
        prob: float = 1.0,
        spatial_size: Sequence[int] | int | None = None,
        mode: Sequence[str] | str = "bilinear",
        align_corners: Sequence[bool | None] | bool | None = None,
        anti_aliasing: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.cropper = RandAreaCrop(
            area_fraction=area_fraction, prob=1.0, spatial_size=spatial_size, anti_aliasing=anti_aliasing
        )
        self.cropper.R = self.R  # one random stream: same seed -> same boxes as the array version
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.align_corners = ensure_tuple_rep(align_corners, len(self.keys))

    @property
    def last_box(self) -> tuple[slice, ...] | None:
        """Box of the last call (one ``slice`` per spatial axis), shared by all keys."""
        return self.cropper.last_box

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandAreaCropd:
        super().set_random_state(seed, state)
        self.cropper.R = self.R
        return self

    def randomize(self, spatial_shape: Sequence[int]) -> None:
        """Draw the coin and, when cropping, the box shared by all keys (see :attr:`last_box`)."""
        super().randomize(None)
        shape = tuple(int(s) for s in spatial_shape)
        self.cropper._do_transform = self._do_transform  # recorded in the traced operations
        self.cropper.last_box = (
            self.cropper.draw_box(shape) if self._do_transform else tuple(slice(0, s) for s in shape)
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Crop every key in ``data`` at the same random box.

        Returns
        -------
        dict
            Copy of ``data`` where each key holds a tensor of shape ``(C_key, *spatial_size)``.
        """
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            return d
        shapes = {key: tuple(int(s) for s in np.shape(d[key])[1:]) for key in present}
        if len(set(shapes.values())) != 1:
            raise ValueError(f"RandAreaCropd: all keys must share one spatial shape, got {shapes}.")
        self.randomize(shapes[present[0]])
        for key, mode, align_corners in self.key_iterator(d, self.mode, self.align_corners):
            d[key] = self.cropper(d[key], randomize=False, mode=mode, align_corners=align_corners)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Undo the crop for every key (resize back to the box, zero-pad outside it)."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d


class RandFlipsd(Compose):
    """Independent random flips along several spatial axes, applied jointly to all ``keys``.

    A thin :class:`monai.transforms.Compose` of one :class:`monai.transforms.RandFlipd` per axis.
    ``RandFlipd(keys=["image", "label"], spatial_axis=0)`` alone already flips image and mask together
    (one coin for all keys); ``RandFlipd(spatial_axis=(0, 1))`` flips both axes with ONE coin (2 outcomes).
    This compose draws one coin per axis, giving all ``2 ** len(spatial_axes)`` flip combinations, and
    stays reproducible because :meth:`Compose.set_random_state` seeds every inner ``RandFlipd``.
    Inversion works through :meth:`Compose.inverse`.

    Parameters
    ----------
    keys
        Keys flipped together.
    prob
        Probability of flipping along each axis, independently.
    spatial_axes
        Spatial axes (0 = H, 1 = W, 2 = D) to flip; e.g. ``(0, 1, 2)`` for 3D volumes.
    allow_missing_keys
        Skip keys absent from the dictionary.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        spatial_axes: Sequence[int] = (0, 1),
        allow_missing_keys: bool = False,
    ) -> None:
        axes = tuple(int(a) for a in spatial_axes)
        if len(axes) == 0 or len(set(axes)) != len(axes) or any(a < 0 for a in axes):
            raise ValueError(f"spatial_axes must be distinct non-negative axis indices, got {spatial_axes}.")
        super().__init__(
            [RandFlipd(keys, prob=prob, spatial_axis=a, allow_missing_keys=allow_missing_keys) for a in axes]
        )
        self.spatial_axes = axes
