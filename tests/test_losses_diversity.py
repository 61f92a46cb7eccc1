"""Diversity of a stochastic generator's fine texture (emgan_monai.losses.diversity)."""

from __future__ import annotations

import pytest
import torch

from emgan_monai.losses import DiversityLoss


class _Noisy(torch.nn.Module):
    """``G(m) = smooth(m) + scale * noise``: the first mask channel plus learned-scale white noise."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return m[:, :1] + self.scale * torch.randn_like(m[:, :1])


def test_difference_sees_fine_texture_not_a_smooth_change():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 32, 32)
    loss = DiversityLoss(sigma=1.0, target=0.05)
    assert float(loss.difference(a, a)) == 0.0
    assert float(loss.difference(a, a + 0.3)) < 1e-6  # a constant offset has no high frequencies
    ramp = torch.linspace(0, 0.5, 32).expand(2, 1, 32, 32)
    assert float(loss.difference(a, a + ramp)) < 1e-3  # nor a slow ramp (inside the replicate-padded border)
    noise = 0.1 * torch.randn(2, 1, 32, 32)
    assert float(loss.difference(a, a + noise)) > 0.05  # white noise: most of it is above the low-pass
    # sigma 0: the raw difference
    assert float(DiversityLoss(sigma=0.0).difference(a, a + 0.3)) == pytest.approx(0.3, rel=1e-5)


def test_band_pass_leaves_out_the_finest_pixels():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 64, 64)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = (0.2 * (-1.0) ** (xx + yy)).expand(2, 1, 64, 64)  # pixel-scale grain (Nyquist)
    blobs = 0.2 * torch.cos(2 * torch.pi * xx / 8).expand(2, 1, 64, 64)  # 4 px specks (8 px period)
    high, band = DiversityLoss(sigma=3.0), DiversityLoss(sigma=3.0, fine_sigma=1.0)
    assert float(high.difference(a, a + checker)) > 0.15  # the high-pass counts pixel-scale grain in full ...
    assert float(band.difference(a, a + checker)) < 0.01  # ... the band-pass does not
    assert float(band.difference(a, a + blobs)) > 0.05  # the band's scales it does count
    assert float(band.difference(a, a + 0.3)) < 1e-6
    with pytest.raises(ValueError, match="fine_sigma must be 0 or in"):
        DiversityLoss(sigma=1.0, fine_sigma=1.0)
    with pytest.raises(ValueError, match="fine_sigma must be 0 or in"):
        DiversityLoss(sigma=1.0, fine_sigma=-0.5)


def test_margin_leaves_the_edge_out():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 32, 32)
    frame = torch.zeros_like(a)
    frame[..., :4, :] = frame[..., -4:, :] = frame[..., :, :4] = frame[..., :, -4:] = 1.0
    noise = 0.2 * torch.randn_like(a)
    plain, inner = DiversityLoss(sigma=1.0), DiversityLoss(sigma=1.0, margin=8)
    assert float(plain.difference(a, a + noise * frame)) > 0.02  # grain only in a 4 px frame counts without a margin
    assert float(inner.difference(a, a + noise * frame)) < 1e-6  # ... and not at all inside a margin of 8 px
    assert float(inner.difference(a, a + noise)) > 0.05
    with pytest.raises(ValueError, match="margin must be >= 0"):
        DiversityLoss(margin=-1)
    with pytest.raises(ValueError, match="leave nothing inside a margin of 16 px"):
        DiversityLoss(margin=16).difference(a, a)


def test_the_hinge_falls_linearly_to_zero_at_the_target():
    torch.manual_seed(0)
    m = torch.rand(2, 3, 32, 32)
    loss = DiversityLoss(sigma=1.0, target=0.05)
    deterministic = _Noisy(0.0)
    y = deterministic(m)
    assert loss(deterministic, m, y).item() == 1.0  # no noise used: the full penalty
    for scale, expect_zero in ((0.01, False), (0.2, True)):
        g = _Noisy(scale)
        y = g(m)
        value = loss(g, m, y)
        torch.manual_seed(1)
        y2 = g(m)
        torch.manual_seed(1)
        again = loss(g, m, y)  # the same second draw as y2
        expected = max(0.0, 1.0 - float(loss.difference(y, y2)) / 0.05)
        assert again.item() == pytest.approx(expected, abs=1e-6)
        assert (value.item() == 0.0) is expect_zero


def test_gradient_raises_a_noise_scale_below_the_target_and_leaves_it_above():
    torch.manual_seed(0)
    m = torch.rand(4, 3, 32, 32)
    loss = DiversityLoss(sigma=1.0, target=0.05)
    small, large = _Noisy(0.01), _Noisy(0.5)
    loss(small, m, small(m)).backward()
    loss(large, m, large(m)).backward()
    assert small.scale.grad is not None and float(small.scale.grad) < 0  # descent makes the noise larger
    assert large.scale.grad is None or float(large.scale.grad) == 0.0


def test_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="sigma must be >= 0 and target > 0"):
        DiversityLoss(sigma=-1.0)
    with pytest.raises(ValueError, match="sigma must be >= 0 and target > 0"):
        DiversityLoss(target=0.0)
    with pytest.raises(ValueError, match="two \\(B, C, H, W\\) draws of the same shape"):
        DiversityLoss().difference(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="two \\(B, C, H, W\\) draws"):
        DiversityLoss().difference(torch.rand(1, 8, 8), torch.rand(1, 8, 8))
