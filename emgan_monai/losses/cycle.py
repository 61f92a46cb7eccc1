"""Cycle-consistency and identity losses of CycleGAN (Zhu et al. 2017).

Both are an L1 distance between an image and what a generator (or a round trip) made of it; they differ only in
meaning and in the error message when the shapes disagree, so they share :class:`_CheckedL1`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CycleConsistencyLoss", "IdentityLoss"]


class _CheckedL1(nn.Module):
    """``L1(output, real)`` that refuses tensors of different shapes (instead of broadcasting them)."""

    _what = "L1"

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.l1 = nn.L1Loss(reduction=reduction)

    def forward(self, real: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if real.shape != output.shape:
            raise ValueError(f"{self._what}: shapes differ, {tuple(real.shape)} vs {tuple(output.shape)}.")
        return self.l1(output, real)


class CycleConsistencyLoss(_CheckedL1):
    """L1 distance between an image and its round trip ``G_ba(G_ab(x))``.

    ``forward(real, reconstructed)``: ``real`` ``(B, C, H, W[, D])`` images of domain A, ``reconstructed`` the
    round trip, same shape. Returns the scalar L1 loss (per element with ``reduction="none"``, as
    :class:`torch.nn.L1Loss`).
    """

    _what = "CycleConsistencyLoss"


class IdentityLoss(_CheckedL1):
    """L1 distance between an image of domain B and ``G_ab`` applied to it (``G_ab`` should leave it unchanged).

    ``forward(real, mapped)``: ``real`` ``(B, C, H, W[, D])`` images of the target domain, ``mapped`` the generator
    applied to them, same shape (generator input and output channels must match). Returns the scalar L1 loss.
    """

    _what = "IdentityLoss (generator input and output channels must match)"
