"""Plane-wise tiled inference of a 2D network on 2D images and 3D stacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer

__all__ = ["PlanewiseInferer"]


class PlanewiseInferer(Inferer):
    """Tiled inference of a 2D network on 2D images or, plane by plane, on 3D stacks.

    Parameters
    ----------
    roi_size : Sequence[int] | int
        2D window ``(H, W)``; each side must be divisible by the network's down-sampling factor.
    sw_batch_size : int
        Windows per network call.
    overlap : float
        Window overlap fraction.
    mode : str
        Blending, ``"gaussian"`` (default) or ``"constant"``.
    padding_mode : str
        Padding of images smaller than the window (``"reflect"`` avoids dark rims).
    spatial_dim : int
        Axis of a 3D input ``(B, C, H, W, D)`` that indexes planes (2: ``D``, the Z axis of a stack read by
        :class:`~emgan_monai.io.TiffReader`).
    kwargs
        Further arguments of :class:`monai.inferers.SlidingWindowInferer`.

    Notes
    -----
    ``(B, C, H, W)`` goes through :class:`~monai.inferers.SlidingWindowInferer`, ``(B, C, H, W, D)`` through
    :class:`~monai.inferers.SliceInferer`; the output has the input's spatial shape.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        padding_mode: str = "reflect",
        spatial_dim: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        roi = (int(roi_size),) * 2 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if len(roi) != 2:
            raise ValueError(f"roi_size must be 2D (H, W), got {roi_size}.")
        self.inferer_2d = SlidingWindowInferer(
            roi_size=roi, sw_batch_size=sw_batch_size, overlap=overlap, mode=mode, padding_mode=padding_mode, **kwargs
        )
        self.inferer_3d = SliceInferer(
            spatial_dim=spatial_dim,
            roi_size=roi,
            sw_batch_size=sw_batch_size,
            overlap=overlap,
            mode=mode,
            padding_mode=padding_mode,
            **kwargs,
        )

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """Predict ``(B, C_out, H, W[, D])`` for ``inputs`` ``(B, C_in, H, W[, D])``."""
        if inputs.ndim == 4:
            return self.inferer_2d(inputs, network, *args, **kwargs)
        if inputs.ndim == 5:
            return self.inferer_3d(inputs, network, *args, **kwargs)
        raise ValueError(f"expected (B, C, H, W) or (B, C, H, W, D) inputs, got shape {tuple(inputs.shape)}.")
