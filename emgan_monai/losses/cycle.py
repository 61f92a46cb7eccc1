"""Cycle-consistency and identity losses of CycleGAN (Zhu et al. 2017).

Both are an L1 distance (or, with ``criterion="mse"``, a squared error) between an image and what a generator (or a
round trip) made of it; they differ only in meaning and in the error message when the shapes disagree, so they share
:class:`_CheckedL1`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CycleConsistencyLoss", "IdentityLoss", "LowPassCycleLoss"]


class _CheckedL1(nn.Module):
    """``L1(output, real)`` (``criterion="mse"``: the squared error) that refuses tensors of different shapes (instead
    of broadcasting them). The squared error suits a target the round trip can only estimate as a posterior mean
    (a small particle in a noisy subtomogram: the L1 optimum there is the empty map)."""

    _what = "L1"

    def __init__(self, reduction: str = "mean", criterion: str = "l1") -> None:
        super().__init__()
        losses = {"l1": nn.L1Loss, "mse": nn.MSELoss}
        if criterion not in losses:
            raise ValueError(f"criterion must be one of {sorted(losses)}, got {criterion!r}.")
        self.distance = losses[criterion](reduction=reduction)

    def forward(self, real: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if real.shape != output.shape:
            raise ValueError(f"{self._what}: shapes differ, {tuple(real.shape)} vs {tuple(output.shape)}.")
        return self.distance(output, real)


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


class LowPassCycleLoss(CycleConsistencyLoss):
    """Cycle consistency on Gaussian low-passed images: ``L1(blur(real), blur(reconstructed))``.

    For a domain that is mostly noise (cryo-ET subtomograms) a voxel-wise cycle asks a stochastic generator to
    reproduce the noise realisation of its input, which pushes it to hide that input in low-amplitude patterns.
    Comparing only the low frequencies (the particle) keeps the cycle's content constraint without that pressure.

    Parameters
    ----------
    sigma
        Standard deviation of the separable Gaussian in voxels (0 = plain L1 cycle).
    spatial_dims
        2 or 3.
    reduction
        As :class:`torch.nn.L1Loss`.

    Shapes: ``forward(real, reconstructed)`` with ``(B, C, H, W[, D])`` tensors of equal shape -> scalar.
    """

    _what = "LowPassCycleLoss"

    def __init__(self, sigma: float = 1.0, spatial_dims: int = 3, reduction: str = "mean") -> None:
        super().__init__(reduction=reduction)
        if sigma < 0 or spatial_dims not in (2, 3):
            raise ValueError(f"sigma must be >= 0 and spatial_dims 2 or 3, got {sigma}, {spatial_dims}")
        self.sigma = float(sigma)
        self.spatial_dims = int(spatial_dims)
        radius = max(1, int(round(3 * self.sigma)))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (x / max(self.sigma, 1e-6)) ** 2)
        self.kernel: torch.Tensor  # the 1D Gaussian (a buffer)
        self.register_buffer("kernel", kernel / kernel.sum(), persistent=False)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of ``(B, C, *S)`` (replicate padding), same shape."""
        if self.sigma == 0:
            return x
        import torch.nn.functional as F

        b, c = x.shape[:2]
        h = x.reshape(b * c, 1, *x.shape[2:]).float()
        k = self.kernel.to(h)
        r = (k.numel() - 1) // 2
        conv = F.conv3d if self.spatial_dims == 3 else F.conv2d
        for axis in range(self.spatial_dims):
            shape = [1, 1] + [1] * self.spatial_dims
            shape[2 + axis] = k.numel()
            pad = [0, 0] * self.spatial_dims
            pad[2 * (self.spatial_dims - 1 - axis)] = r
            pad[2 * (self.spatial_dims - 1 - axis) + 1] = r
            h = conv(F.pad(h, pad, mode="replicate"), k.view(shape))
        return h.reshape(x.shape)

    def forward(self, real: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if real.shape != output.shape:
            raise ValueError(f"{self._what}: shapes differ, {tuple(real.shape)} vs {tuple(output.shape)}.")
        return self.distance(self.blur(output), self.blur(real))
