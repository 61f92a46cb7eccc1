"""Differentiable augmentation of GAN discriminator inputs (DiffAugment, Zhao et al. 2020), for masks and images.

The same random transforms are applied to real and generated batches just before the discriminator, in both the
discriminator and the generator updates, so the discriminator cannot memorise the few training images while the
generator still learns the un-augmented distribution (the transforms are differentiable and invertible in
distribution). Written for channel-first batches ``(B, C, H, W)``; every sample draws its own parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DiffAugment", "DIFFAUGMENT_POLICIES"]

#: available policies
DIFFAUGMENT_POLICIES: tuple[str, ...] = ("flip_rot", "translation", "cutout")


class DiffAugment(nn.Module):
    """Differentiable random flips / 90-degree rotations, translation and cutout of ``(B, C, H, W)`` batches.

    Parameters
    ----------
    policy
        Policies applied in order, any of :data:`DIFFAUGMENT_POLICIES`:

        - ``"flip_rot"``: one of the 8 symmetries of the square (flips and rotations by 90 degrees; square inputs
          only, otherwise flips only);
        - ``"translation"``: shift by up to ``translation_ratio`` of the size along each axis, zero padding;
        - ``"cutout"``: zero a square of ``cutout_ratio`` of the size at a random position.
    translation_ratio, cutout_ratio
        Sizes as fractions of the spatial size (1/8 and 1/2 in DiffAugment).
    prob
        Probability that a sample goes through each policy (1 in DiffAugment; lower it for ADA-like strength).
    seed
        Seed of the module's own ``torch.Generator`` (CPU), so that augmentation is reproducible and independent
        of the global random state.

    Notes
    -----
    Zero padding and cutout set all channels to 0, also for one-hot masks: real and fake batches receive exactly
    the same kind of values, so this leaks nothing the discriminator could use.
    """

    def __init__(
        self,
        policy: Sequence[str] | str = ("flip_rot", "translation", "cutout"),
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
        prob: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        policies = [policy] if isinstance(policy, str) else list(policy)
        bad = [p for p in policies if p not in DIFFAUGMENT_POLICIES]
        if bad:
            raise ValueError(f"unknown DiffAugment policies {bad}; expected any of {DIFFAUGMENT_POLICIES}.")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}.")
        self.policy = tuple(policies)
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)
        self.prob = float(prob)
        self.generator = torch.Generator().manual_seed(int(seed))

    def extra_repr(self) -> str:
        return f"policy={self.policy}, prob={self.prob}"

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)

    def _randint(self, low: int, high: int, n: int) -> torch.Tensor:
        return torch.randint(low, high, (n,), generator=self.generator)

    def _coin(self, n: int) -> torch.Tensor:
        """Whether each of ``n`` samples is augmented (named so as not to override ``nn.Module._apply``)."""
        return self._rand(n) < self.prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented copy of ``x`` ``(B, C, H, W)``; differentiable with respect to ``x``."""
        if x.ndim != 4:
            raise ValueError(f"DiffAugment expects (B, C, H, W), got shape {tuple(x.shape)}.")
        for p in self.policy:
            x = getattr(self, f"_{p}")(x)
        return x

    def _flip_rot(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        do = self._coin(b)
        k = self._randint(0, 4 if h == w else 1, b)
        flip = self._rand(b) < 0.5
        out = []
        for i in range(b):
            xi = x[i]
            if do[i]:
                if flip[i]:
                    xi = xi.flip(-1)
                if k[i]:
                    xi = torch.rot90(xi, int(k[i]), dims=(-2, -1))
            out.append(xi)
        return torch.stack(out)

    def _translation(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        sh, sw = int(h * self.translation_ratio + 0.5), int(w * self.translation_ratio + 0.5)
        if sh == 0 and sw == 0:
            return x
        do = self._coin(b)
        dy = self._randint(-sh, sh + 1, b) * do
        dx = self._randint(-sw, sw + 1, b) * do
        padded = F.pad(x, (sw, sw, sh, sh))
        out = [
            padded[i, :, sh - int(dy[i]) : sh - int(dy[i]) + h, sw - int(dx[i]) : sw - int(dx[i]) + w] for i in range(b)
        ]
        return torch.stack(out)

    def _cutout(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ch, cw = int(h * self.cutout_ratio + 0.5), int(w * self.cutout_ratio + 0.5)
        if ch == 0 or cw == 0:
            return x
        do = self._coin(b)
        cy = self._randint(0, h + 1 - ch % 2, b)
        cx = self._randint(0, w + 1 - cw % 2, b)
        yy = torch.arange(h).view(1, h, 1)
        xx = torch.arange(w).view(1, 1, w)
        y0 = (cy - ch // 2).view(b, 1, 1)
        x0 = (cx - cw // 2).view(b, 1, 1)
        hole = (yy >= y0) & (yy < y0 + ch) & (xx >= x0) & (xx < x0 + cw) & do.view(b, 1, 1)
        return x * (~hole).unsqueeze(1).to(device=x.device, dtype=x.dtype)
