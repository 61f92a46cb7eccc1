"""Mirror / rotation consistency of a generator (emgan_monai.losses.equivariance)."""

from __future__ import annotations

import pytest
import torch

from emgan_monai.losses import EquivarianceLoss, dihedral, dihedral_inverse


def test_dihedral_draws_the_eight_symmetries_and_inverts_them():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    images = {tuple(dihedral(x, k).flatten().tolist()) for k in range(8)}
    assert len(images) == 8  # eight different images of an asymmetric one
    for k in range(8):
        torch.testing.assert_close(dihedral_inverse(dihedral(x, k), k), x)
    assert dihedral(x, 1).shape[-2:] == (4, 3)
    torch.testing.assert_close(dihedral(x, 4), x.flip(-1))  # k = 4: the mirror of the last axis
    with pytest.raises(ValueError, match="0 .. 7"):
        dihedral(x, 8)


class _Relief(torch.nn.Module):
    """A 'generator' that draws a one-sided relief: the image plus its x-difference (a shadow left of an edge)."""

    def forward(self, x):
        return x + (x - x.roll(1, dims=-1))


def test_equivariance_loss_is_zero_for_an_equivariant_map_and_sees_a_one_sided_relief():
    torch.manual_seed(0)
    x = (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss = EquivarianceLoss(sigma=1.0)
    blur = torch.nn.Conv2d(1, 1, 3, padding=1, bias=False, padding_mode="circular")
    with torch.no_grad():
        blur.weight.copy_(torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3) / 8)
    relief = _Relief()
    y = relief(x)
    with torch.no_grad():
        for k in range(1, 8):  # a symmetric kernel commutes with every symmetry of the square
            assert float(loss(blur, x, blur(x), k)) < 1e-6
        assert float(loss(relief, x, y, 4)) > 0.05  # mirrored along x: the shadow moves to the other side
        assert float(loss(relief, x, y, 6)) < 1e-6  # mirrored along y (k = 6: half turn + x mirror): it stays
    with pytest.raises(ValueError, match="identity"):
        loss(relief, x, y, 0)
    with pytest.raises(ValueError, match="same batch and size"):
        loss(relief, x, y[:, :, :16], 4)


def test_equivariance_loss_trains_both_passes():
    x = torch.rand(2, 1, 16, 16)
    loss = EquivarianceLoss(sigma=0.0)
    # the pass inside the loss (the turned mask) is trained: the given output carries no graph here
    net = torch.nn.Conv2d(1, 1, 3, padding=1)
    loss(net, x, net(x).detach(), 4).backward()
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0
    # the given output's graph is kept: a frozen generator inside the loss, gradients reach only through y
    frozen = torch.nn.Conv2d(1, 1, 3, padding=1).requires_grad_(False)
    net.weight.grad = None
    loss(frozen, x, net(x), 4).backward()
    assert net.weight.grad is not None and float(net.weight.grad.abs().sum()) > 0


class _GridPainter(torch.nn.Module):
    """A 'generator' that adds a hatch locked to its pixel grid (period 4 along both axes, symmetric within the
    period, so every mirror and quarter turn of a crop whose side is a multiple of 4 keeps it)."""

    def forward(self, x):
        a = torch.tensor([1.0, 0.0, 0.0, 1.0])
        rows, cols = a[torch.arange(x.shape[-2]) % 4], a[torch.arange(x.shape[-1]) % 4]
        return x + rows[:, None] + cols[None, :]


def test_shifted_equivariance_loss_sees_a_grid_locked_hatch_that_the_symmetries_miss():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    painter = _GridPainter()
    y = painter(x)
    plain, shifted = EquivarianceLoss(sigma=0.0), EquivarianceLoss(sigma=0.0, shift=4, margin=4)
    for k in range(1, 8):
        assert float(plain(painter, x, y, k)) < 1e-6  # the hatch looks the same after every symmetry
        assert float(shifted(painter, x, y, k, (0, 0))) < 1e-6  # a crop on the grid keeps it too
        assert float(shifted(painter, x, y, k, (1, 2))) > 0.3  # a crop off the grid moves it
        assert float(shifted(painter, x, y, k, (5, 6))) == pytest.approx(float(shifted(painter, x, y, k, (1, 2))))
    identity = torch.nn.Identity()
    assert float(shifted(identity, x, x, 3, (1, 3))) < 1e-6  # a map without a grid passes every shift
    with pytest.raises(ValueError, match="nothing to compare"):
        EquivarianceLoss(shift=8, margin=12)(painter, x, y, 1, (1, 1))
    with pytest.raises(ValueError, match=">= 0"):
        EquivarianceLoss(shift=-1)
