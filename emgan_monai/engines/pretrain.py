"""Supervised start of a CycleGAN's inverse generator on simulated pairs (CryoETGAN's ``G_sd``).

A CycleGAN's two generators start from nothing and each one's cycle is judged by the other: on small data the pair
can agree on a private code (the D -> S generator hides the map in low-amplitude patterns, the S -> D generator
reads them) and the cycle is satisfied without the outputs looking like either domain. A simulator gives pairs for
free: :func:`pretrain_inverse` trains ``G_sd`` to recover the map from the simulator's noisy subtomograms, so that
from the first adversarial step the cycle rewards subtomograms from which a *realistic* inverse can read the map.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["pretrain_inverse", "random_cube_rotation"]

logger = logging.getLogger(__name__)


def random_cube_rotation(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One of the 24 proper rotations of the cube per call (the same for the whole batch).

    ``x``: ``(B, C, N, N, N)``. A random ``rot90`` about each of the three axes in turn (4 x 4 x 4 = 64 draws covering
    the 24 rotations). For noise-free maps only: a subtomogram's missing wedge is not rotation-invariant.
    """
    k = torch.randint(0, 4, (3,), generator=generator).tolist()
    for kk, dims in zip(k, ((2, 3), (2, 4), (3, 4))):
        if kk:
            x = torch.rot90(x, int(kk), dims)
    return x


def pretrain_inverse(
    inverse: nn.Module,
    simulator: Callable[[torch.Tensor], torch.Tensor],
    maps: torch.Tensor,
    steps: int = 300,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, float]:
    """Train ``inverse`` (S -> D) on ``(simulator(map), map)`` pairs with a squared error; returns the first and last
    loss.

    The squared error, not CycleGAN's L1: at the toy data's SNR a voxel is rarely more likely inside the particle than
    outside, so the L1 optimum (the posterior median) is the empty map ``-1`` everywhere; the squared error's optimum
    is the posterior mean, a soft map that keeps the particle.

    Parameters
    ----------
    inverse
        The S -> D generator ``(B, 1, N, N, N) -> (B, 1, N, N, N)`` (trained in place, left in train mode).
    simulator
        A map -> subtomogram function in the generators' range, e.g. a calibrated
        :class:`~emgan_monai.networks.PhysicsInformedGenerator`; called under ``no_grad``, one fresh noise draw per
        call.
    maps
        ``(N, 1, B, B, B)`` training maps in ``[-1, 1]``, on the inverse's device; every step draws ``batch_size``
        of them and rotates the batch by a random cube rotation (the classes are rotation-invariant, and the
        simulator applies the missing wedge after the rotation).
    steps, batch_size, lr, seed
        Adam steps, batch, learning rate and the seed of the draws (the global torch generator draws the noise).
    """
    if steps <= 0:
        return {"steps": 0}
    if maps.ndim != 5 or maps.shape[1] != 1:
        raise ValueError(f"maps must be (N, 1, B, B, B), got {tuple(maps.shape)}")
    g = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.Adam(inverse.parameters(), lr=lr, betas=(0.5, 0.999))
    inverse.train()
    first = last = float("nan")
    t0 = time.perf_counter()
    for step in range(int(steps)):
        idx = torch.randint(0, maps.shape[0], (int(batch_size),), generator=g)
        x = random_cube_rotation(maps[idx.to(maps.device)], g)
        with torch.no_grad():
            s = simulator(x)
        loss = nn.functional.mse_loss(inverse(s), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        if step == 0:
            first = last
    elapsed = time.perf_counter() - t0
    logger.info("G_sd pre-trained on simulated pairs: %d steps, MSE %.4f -> %.4f, %.1f s", steps, first, last, elapsed)
    return {"steps": int(steps), "mse_first": first, "mse_last": last}
