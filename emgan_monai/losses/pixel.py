"""Pixel (fidelity) losses for image restoration."""

from __future__ import annotations

import torch
from monai.losses import SSIMLoss
from torch import nn

__all__ = ["L1SSIMLoss"]


class L1SSIMLoss(nn.Module):
    """``(1 - ssim_weight) * L1 + ssim_weight * (1 - SSIM)`` pixel loss for percentile-normalised images.

    Parameters
    ----------
    spatial_dims : int
        2 for ``(B, C, H, W)``, 3 for ``(B, C, H, W, D)``.
    ssim_weight : float
        Weight of the SSIM term in ``[0, 1]``.
    data_range : float
        Dynamic range for SSIM's constants (1.0 for data normalised to the 1st-99.8th percentiles).
    win_size : int
        SSIM Gaussian window size.
    """

    def __init__(self, spatial_dims: int = 2, ssim_weight: float = 0.2, data_range: float = 1.0, win_size: int = 7):
        super().__init__()
        if not 0.0 <= ssim_weight <= 1.0:
            raise ValueError(f"ssim_weight must lie in [0, 1], got {ssim_weight}.")
        self.ssim_weight = float(ssim_weight)
        self.l1 = nn.L1Loss()
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=data_range, win_size=win_size)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ``pred`` vs ``target``, both ``(B, C, H, W[, D])``."""
        loss = (1.0 - self.ssim_weight) * self.l1(pred, target)
        if self.ssim_weight > 0:
            loss = loss + self.ssim_weight * self.ssim(pred, target)
        return loss
