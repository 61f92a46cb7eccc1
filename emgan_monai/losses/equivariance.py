"""Mirror, rotation and shift consistency of an image-to-image generator.

A mask -> image generator should not care which way up its mask lies: the image of a mirrored mask is the mirrored
image of the mask, up to the generator's texture noise. Convolutional networks are not built that way; a few-shot
GAN whose discriminator sees every crop under a random flip or rotation (DiffAugment) does not teach it either, and a
generator can learn a one-sided relief (a shadow left of every membrane, the "embossed" look) that no loss term
sees. :class:`EquivarianceLoss` compares ``T^-1 G(T x)`` with ``G(x)`` for one of the seven non-trivial symmetries
``T`` of the square, on Gaussian low-passed images (the texture noise differs between the two passes; its low
frequencies, where a relief lives, should not).

A generator with stride-2 down-sampling and up-sampling can also paint a pattern locked to its own pixel grid: with
``L`` levels, a hatch of period ``2 ** L`` px (or a divisor) wherever the mask leaves it free (inside large cell
profiles), the same on every image. Mirrors and quarter turns of a crop whose side is a multiple of the period keep
such a pattern; a shift by a part of the period does not. With ``shift`` set, :class:`EquivarianceLoss` also moves
the crop by an offset below the period before the symmetry, so a grid-locked pattern costs as much as a relief.

- :func:`dihedral`, :func:`dihedral_inverse`: the eight symmetries of the square on the last two axes, ``k`` in
  ``0 .. 7`` (``k % 4`` quarter turns, then a mirror of the last axis when ``k >= 4``).
"""

from __future__ import annotations

import torch
from torch import nn

from .cycle import LowPassCycleLoss

__all__ = ["EquivarianceLoss", "dihedral", "dihedral_inverse"]


def _check_k(k: int) -> int:
    if not 0 <= int(k) < 8:
        raise ValueError(f"k must index a symmetry of the square (0 .. 7), got {k}.")
    return int(k)


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry ``k`` (0 .. 7) of the square applied to the last two axes of ``x`` ``(..., H, W)``.

    ``k % 4`` quarter turns (``torch.rot90``), then, for ``k >= 4``, a mirror of the last axis. The output is
    ``(..., W, H)`` for an odd number of quarter turns.
    """
    k = _check_k(k)
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`dihedral`: ``dihedral_inverse(dihedral(x, k), k) == x``."""
    k = _check_k(k)
    y = x.flip(-1) if k >= 4 else x
    return torch.rot90(y, -(k % 4), dims=(-2, -1))


class EquivarianceLoss(nn.Module):
    """``L1(blur(T^-1 G(T x)), blur(G(x)))`` for a symmetry ``T`` of the square (a 2D generator), optionally after a
    shift of the input by part of the generator's grid period.

    Parameters
    ----------
    sigma
        Standard deviation (px) of the Gaussian low-pass applied to both images before the L1
        (:class:`~emgan_monai.losses.LowPassCycleLoss`); 0 = plain L1, which also asks the two texture draws to agree.
        A hatch of period 4 px survives a low-pass of sigma 1 (29 % of its amplitude), not one of sigma 2 (1 %).
    shift
        0 (default): no shift, ``T`` acts on the whole input. Otherwise the generator's grid period (``2 ** L`` for
        ``L`` stride-2 levels, e.g. ``NoiseUNet.size_multiple``): the second pass sees the crop
        ``x[..., dy : dy + H - shift, dx : dx + W - shift]`` with ``(dy, dx) = offset % shift`` (its size stays a
        multiple of the period), and is compared with the same region of ``y``.
    margin
        With ``shift``: pixels left out of the comparison along each edge of the crop, where the two passes see
        different zero padding.

    Shapes: ``forward(generator, x, y, k, offset=(0, 0))`` with the generator's input ``x`` ``(B, C_in, H, W)``, its
    output ``y = generator(x)`` ``(B, C_out, H, W)`` (keep its graph: both passes are trained), ``k`` in ``1 .. 7``
    (:func:`dihedral`) and ``offset`` two non-negative integers (used with ``shift``) -> scalar. A quarter turn of a
    non-square input hands the generator a ``(W, H)`` image; a fully convolutional generator takes it.
    """

    def __init__(self, sigma: float = 2.0, shift: int = 0, margin: int = 8) -> None:
        super().__init__()
        if int(shift) < 0 or int(margin) < 0:
            raise ValueError(f"EquivarianceLoss: shift and margin must be >= 0, got {shift} and {margin}.")
        self.distance = LowPassCycleLoss(sigma=sigma, spatial_dims=2)
        self.shift, self.margin = int(shift), int(margin)

    def forward(
        self, generator: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, offset: tuple[int, int] = (0, 0)
    ) -> torch.Tensor:
        if x.ndim != 4 or y.ndim != 4 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise ValueError(
                f"EquivarianceLoss expects a 2D generator's input (B, C, H, W) and output of the same batch and size, "
                f"got {tuple(x.shape)} and {tuple(y.shape)}."
            )
        if _check_k(k) == 0:
            raise ValueError("k = 0 is the identity: draw k from 1 .. 7.")
        if not self.shift:
            return self.distance(y.float(), dihedral_inverse(generator(dihedral(x, k)), k).float())
        h, w = x.shape[-2] - self.shift, x.shape[-1] - self.shift
        if min(h, w) <= 2 * self.margin:
            raise ValueError(
                f"EquivarianceLoss: an input of {tuple(x.shape[2:])} px leaves nothing to compare after a shift of "
                f"{self.shift} and margins of {self.margin} px."
            )
        dy, dx = (int(o) % self.shift for o in offset)
        back = dihedral_inverse(generator(dihedral(x[..., dy : dy + h, dx : dx + w], k)), k)
        m = self.margin
        inner = (..., slice(m, h - m), slice(m, w - m))
        return self.distance(y[..., dy : dy + h, dx : dx + w].float()[inner], back.float()[inner])
