"""Cycle-consistency and identity losses of CycleGAN (Zhu et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CycleConsistencyLoss", "IdentityLoss"]


def _check_shapes(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}.")


class CycleConsistencyLoss(nn.Module):
    """L1 distance between an image and its round trip ``G_ba(G_ab(x))``.

    Parameters
    ----------
    reduction
        ``"mean"`` (default), ``"sum"`` or ``"none"``, as :class:`torch.nn.L1Loss`.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.l1 = nn.L1Loss(reduction=reduction)

    def forward(self, real: torch.Tensor, reconstructed: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        real
            Images of domain A, ``(B, C, H, W[, D])``.
        reconstructed
            ``G_ba(G_ab(real))``, same shape.

        Returns
        -------
        torch.Tensor
            Scalar L1 loss (or per-element with ``reduction="none"``).
        """
        _check_shapes(real, reconstructed, "CycleConsistencyLoss")
        return self.l1(reconstructed, real)


class IdentityLoss(nn.Module):
    """L1 distance between an image of domain B and ``G_ab`` applied to it (``G_ab`` should leave it unchanged).

    Parameters
    ----------
    reduction
        ``"mean"`` (default), ``"sum"`` or ``"none"``, as :class:`torch.nn.L1Loss`.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.l1 = nn.L1Loss(reduction=reduction)

    def forward(self, real: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
        """
        Parameters
        ----------
        real
            Images of the target domain, ``(B, C, H, W[, D])``.
        mapped
            The generator applied to ``real``, same shape (generator input and output channels must match).

        Returns
        -------
        torch.Tensor
            Scalar L1 loss (or per-element with ``reduction="none"``).
        """
        _check_shapes(real, mapped, "IdentityLoss (generator input and output channels must match)")
        return self.l1(mapped, real)
