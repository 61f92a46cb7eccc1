import math

import pytest
import torch
from torch import nn

from emgan_monai.losses.adversarial import AdversarialLoss, clip_weights, gradient_penalty, last_logits
from emgan_monai.losses.cycle import CycleConsistencyLoss, IdentityLoss


def test_bce_known_values():
    loss = AdversarialLoss("bce")
    zeros = torch.zeros(2, 1, 4, 4)
    assert loss(zeros, True, True).item() == pytest.approx(math.log(2), abs=1e-6)
    assert loss(zeros, False, True).item() == pytest.approx(math.log(2), abs=1e-6)
    big = torch.full((2, 1, 4, 4), 3.0)
    assert loss(big, True, True).item() == pytest.approx(-math.log(torch.sigmoid(torch.tensor(3.0)).item()), rel=1e-5)
    p_real = torch.sigmoid(torch.tensor(3.0)).item()
    assert loss(big, False, True).item() == pytest.approx(-math.log(1 - p_real), rel=1e-5)
    assert loss(big, True, False).item() == pytest.approx(loss(big, True, True).item())


def test_least_squares_known_values():
    loss = AdversarialLoss("least_squares")
    ones = torch.ones(1, 1, 3, 3)
    assert loss(ones, True, True).item() == pytest.approx(0.0)
    assert loss(ones, False, True).item() == pytest.approx(1.0)
    assert loss(-ones, True, False).item() == pytest.approx(4.0)  # raw logits, no LeakyReLU


def test_hinge_known_values():
    loss = AdversarialLoss("hinge")
    x = torch.zeros(1, 1, 2, 2)  # tanh(0) = 0 -> hinge max(0, 1 - 0) = 1
    assert loss(x, True, True).item() == pytest.approx(1.0)
    assert loss(x, False, True).item() == pytest.approx(1.0)


def test_wasserstein_known_values_and_list_input():
    loss = AdversarialLoss("wasserstein")
    real = torch.tensor([[1.0], [3.0]])
    fake = torch.tensor([[-1.0], [0.0]])
    critic = loss(real, True, True) + loss(fake, False, True)
    assert critic.item() == pytest.approx(-2.0 + (-0.5))
    assert loss(fake, True, False).item() == pytest.approx(0.5)
    # PatchDiscriminator-style list: features then logits
    assert loss([torch.full((2, 4), 99.0), real], True, True).item() == pytest.approx(-2.0)
    assert last_logits([torch.zeros(1), real]) is real


def test_bad_arguments():
    with pytest.raises(ValueError, match="criterion"):
        AdversarialLoss("nope")
    with pytest.raises(ValueError, match="target_is_real"):
        AdversarialLoss("bce")(torch.zeros(1, 1), False, False)
    with pytest.raises(ValueError):
        last_logits([])


def test_gradient_penalty_linear_critic():
    # critic(x) = sum(w * x): gradient w.r.t. x is w everywhere -> penalty (||w|| - 1)^2 independent of eps
    w = torch.full((1, 2, 2), 0.5)  # ||w||_2 = 1 -> zero penalty
    critic = lambda x: (x * w).flatten(1).sum(1, keepdim=True)  # noqa: E731
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-6)
    w2 = torch.full((1, 2, 2), 1.0)  # ||w|| = 2 -> penalty 1
    critic2 = lambda x: (x * w2).flatten(1).sum(1, keepdim=True)  # noqa: E731
    assert gradient_penalty(critic2, real, fake).item() == pytest.approx(1.0, abs=1e-5)


def test_gradient_penalty_reproducible_and_differentiable():
    critic = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(1))
    real, fake = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    gp1 = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(3))
    gp2 = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(3))
    assert torch.equal(gp1, gp2)
    gp1.backward()
    assert critic[0].weight.grad is not None and torch.isfinite(critic[0].weight.grad).all()
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:1])


def test_clip_weights():
    net = nn.Conv2d(1, 4, 3)
    nn.init.normal_(net.weight, std=5.0)
    nn.init.constant_(net.bias, 0.5)
    clip_weights(net, 0.01)
    assert net.weight.abs().max() <= 0.01
    assert torch.all(net.bias == 0.5)  # biases do not change the Lipschitz constant: left alone
    with pytest.raises(ValueError):
        clip_weights(net, 0.0)


def test_clip_weights_refuses_spectral_norm():
    from torch.nn.utils.parametrizations import spectral_norm

    net = nn.Sequential(spectral_norm(nn.Conv2d(1, 4, 3)))
    with pytest.raises(ValueError, match="parametrised"):
        clip_weights(net, 0.01)


def test_gradient_penalty_uses_the_mean_of_patch_scores():
    """A patch critic whose every patch score is sum(w * x) / P: the per-sample mean score has gradient w
    (unit norm -> zero penalty); the old sum reduction would see P * w."""
    w = torch.full((1, 2, 2), 0.5)  # ||w|| = 1
    critic = lambda x: (x * w).flatten(1).sum(1).view(-1, 1, 1, 1).expand(-1, 1, 3, 3)  # noqa: E731
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-6)


def test_low_pass_cycle_ignores_high_frequencies():
    from emgan_monai.losses import LowPassCycleLoss

    torch.manual_seed(0)
    x = torch.zeros(1, 1, 16, 16, 16)
    x[..., 4:12, 4:12, 4:12] = 1.0
    checker = (torch.arange(16).view(-1, 1, 1) + torch.arange(16).view(1, -1, 1) + torch.arange(16).view(1, 1, -1)) % 2
    y = x + 0.5 * (2 * checker.float() - 1)  # pure Nyquist pattern on top
    lp = LowPassCycleLoss(sigma=1.5)
    assert lp(x, y).item() < 0.05 * CycleConsistencyLoss()(x, y).item()
    assert lp(x, x + 0.3).item() == pytest.approx(0.3, rel=1e-4)  # low frequencies still count
    with pytest.raises(ValueError, match="shapes differ"):
        lp(x, y[..., :8])


def test_cycle_and_identity():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.25)
    assert CycleConsistencyLoss()(x, y).item() == pytest.approx(0.25)
    assert IdentityLoss()(x, y).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shapes differ"):
        IdentityLoss()(x, torch.zeros(2, 2, 4, 4))


def test_radial_spectrum_loss_sees_missing_texture_not_its_position():
    from emgan_monai.losses import RadialSpectrumLoss, radial_power_spectrum

    g = torch.Generator().manual_seed(0)
    grain = torch.rand(2, 1, 64, 64, generator=g)
    other_grain = torch.rand(2, 1, 64, 64, generator=g)  # same statistics, another realisation
    smooth = torch.nn.functional.avg_pool2d(grain, 5, stride=1, padding=2)
    loss = RadialSpectrumLoss(n_bins=8)
    assert loss(grain, grain) < 1e-6
    assert loss(other_grain, grain) < 0.1  # the realisation is free ...
    assert loss(smooth, grain) > 5 * loss(other_grain, grain)  # ... the lost detail is not
    assert loss(torch.roll(grain, (7, 11), dims=(2, 3)), grain) < 0.1  # nor is where the detail lies
    spec = radial_power_spectrum(smooth, n_bins=8)
    assert spec.shape == (2, 1, 8) and (spec[..., -1] < spec[..., 0]).all()  # low-pass: less power at high f
    x = smooth.clone().requires_grad_(True)
    loss(x, grain).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert RadialSpectrumLoss(n_bins=8, min_frequency=0.25)(smooth, grain) > loss(smooth, grain)  # HF rings only
    with pytest.raises(ValueError, match="differ"):
        loss(grain, grain[:, :, :32])
    with pytest.raises(ValueError, match="H, W >= 8"):
        radial_power_spectrum(torch.rand(1, 1, 4, 4))


def test_spectrum_with_orientation_sectors_tells_streaks_from_isotropic_grain():
    from emgan_monai.losses import RadialSpectrumLoss, TextureStatisticsLoss, radial_power_spectrum

    g = torch.Generator().manual_seed(0)
    grain = torch.rand(2, 1, 64, 64, generator=g)
    streaks = torch.rand(2, 1, 1, 64, generator=g).expand(2, 1, 64, 64).clone()  # varies along x only
    spec = radial_power_spectrum(streaks, n_bins=8, n_angles=4).view(2, 1, 8, 4)
    # all the power of vertical streaks lies on the x frequency axis (sector 0), none across it (sector 2)
    assert (spec[..., 4, 0] > spec[..., 4, 2] + 3).all()
    iso = radial_power_spectrum(grain, n_bins=8, n_angles=4).view(2, 1, 8, 4)[..., 4:, :]
    assert (iso.amax(-1) - iso.amin(-1)).max() < 0.5  # white noise: the same power in every direction
    turned = streaks.transpose(-1, -2)  # the same streaks, horizontal
    assert RadialSpectrumLoss(n_bins=8)(streaks, turned) < 1e-5  # the radial average cannot tell them apart
    assert RadialSpectrumLoss(n_bins=8, n_angles=4)(streaks, turned) > 1.0
    assert TextureStatisticsLoss(n_bins=8, n_angles=4, w_intensity=0, w_gradient=0)(streaks, turned) > 1.0
    # the first rings are left out sector by sector
    assert RadialSpectrumLoss(n_bins=8, n_angles=4, min_frequency=0.25).first == 16
    with pytest.raises(ValueError, match="n_angles"):
        RadialSpectrumLoss(n_bins=8, n_angles=0)
    with pytest.raises(ValueError, match="n_angles"):
        radial_power_spectrum(grain, n_angles=0)


def test_spectrum_corners_ring_sees_a_pixel_scale_diagonal_hatch():
    from emgan_monai.losses import RadialSpectrumLoss, TextureStatisticsLoss, radial_power_spectrum

    g = torch.Generator().manual_seed(0)
    grain = torch.rand(2, 1, 64, 64, generator=g)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    hatch = grain + 0.3 * torch.cos(2 * torch.pi * 0.4 * (xx + yy)).float()  # (0.4, 0.4) cycles / px: |f| 0.57
    # the corner frequency lies in no ring by default: the 16 rings up to 0.5 cycles / px barely see the hatch ...
    assert RadialSpectrumLoss(n_bins=16, n_angles=4)(grain, hatch) < 0.05
    # ... one more ring of their own (per sector) sees it, on the 45-degree diagonal only
    spec = radial_power_spectrum(hatch, n_bins=16, n_angles=4, corners=True)
    base = radial_power_spectrum(grain, n_bins=16, n_angles=4, corners=True)
    assert spec.shape == (2, 1, 17 * 4)
    torch.testing.assert_close(spec[..., :64], radial_power_spectrum(hatch, n_bins=16, n_angles=4))  # rings unchanged
    excess = (spec - base)[..., 64:].mean((0, 1))
    assert excess[1] > 0.5 and excess.abs()[[0, 2, 3]].max() < 0.1
    with_corners = RadialSpectrumLoss(n_bins=16, n_angles=4, corners=True)
    assert with_corners(grain, hatch) > 4 * RadialSpectrumLoss(n_bins=16, n_angles=4)(grain, hatch)
    assert with_corners(hatch, hatch) == 0.0
    assert TextureStatisticsLoss(n_bins=16, n_angles=4, corners=True, w_intensity=0, w_gradient=0).spectrum.corners


def test_texture_statistics_loss_terms():
    from emgan_monai.losses import TextureStatisticsLoss, sorted_values_distance
    from emgan_monai.losses.texture import gradient_magnitude

    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 1, 32, 32, generator=g)
    perm = a.flatten(2)[..., torch.randperm(32 * 32, generator=g)].reshape(a.shape)
    assert sorted_values_distance(perm, a) < 1e-7  # same values anywhere: same histogram
    assert abs(float(sorted_values_distance(a + 0.1, a)) - 0.1) < 1e-5  # a shift of 0.1 is a W1 of 0.1
    ramp = torch.linspace(0, 1, 16).repeat(16, 1)[None, None]
    torch.testing.assert_close(gradient_magnitude(ramp), torch.full((1, 1, 15, 15), 1 / 15))
    only_hist = TextureStatisticsLoss(w_spectrum=0.0, w_intensity=1.0, w_gradient=0.0)
    torch.testing.assert_close(only_hist(a + 0.1, a), sorted_values_distance(a + 0.1, a))
    full = TextureStatisticsLoss(n_bins=8)
    smooth = torch.nn.functional.avg_pool2d(a, 3, stride=1, padding=1)
    assert full(smooth, a) > 3 * full(torch.rand(2, 1, 32, 32, generator=g), a)
    with pytest.raises(ValueError, match="weights"):
        TextureStatisticsLoss(w_gradient=-1.0)
    with pytest.raises(ValueError, match="differ"):
        sorted_values_distance(a, a[:1])


def _stripes(angle: float, size: int = 64, period: float = 6.0) -> torch.Tensor:
    """``(size, size)`` sinusoidal stripes whose wave vector makes ``angle`` radians with the x axis."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    return torch.sin(2 * math.pi * (x * math.cos(angle) + y * math.sin(angle)) / period)


def _rings(size: int = 64, period: float = 6.0) -> torch.Tensor:
    """``(size, size)`` concentric rings: edges in every direction."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    r = torch.sqrt((x - size / 2 + 0.5) ** 2 + (y - size / 2 + 0.5) ** 2)
    return torch.sin(2 * math.pi * r / period)


def test_orientation_coherence_tells_parallel_streaks_from_edges_in_all_directions():
    from emgan_monai.losses.texture import orientation_coherence

    stripes = torch.stack([_stripes(a) for a in (0.0, 0.4, math.pi / 2)])[:, None]  # (3, 1, 64, 64)
    rings = _rings()[None, None]
    for window in (None, 16):
        c = orientation_coherence(stripes, window)
        assert c.shape == (3, 1) and (c > 0.99).all(), c  # parallel edges, whatever their direction
    assert orientation_coherence(rings).item() < 0.05  # whole image: every direction equally
    # windows of a few periods see locally parallel rings (less so where they curve most), the whole image does not
    local = [orientation_coherence(rings, w).item() for w in (8, 16, 32)]
    assert 0.2 < local[2] < local[1] < local[0] < 0.99, local
    # a symmetry of the square does not change it; a constant image has none
    torch.testing.assert_close(
        orientation_coherence(torch.rot90(stripes, 1, (2, 3)).flip(-1), 16), orientation_coherence(stripes, 16)
    )
    assert orientation_coherence(torch.ones(1, 1, 16, 16)).item() == 0.0
    x = stripes.clone().requires_grad_(True)
    orientation_coherence(x, 16).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="window"):
        orientation_coherence(stripes, 63)
    with pytest.raises(ValueError, match="H, W >= 3"):
        orientation_coherence(torch.rand(1, 1, 2, 8))


def test_texture_statistics_orientation_term_compares_batches_as_distributions():
    from emgan_monai.losses import TextureStatisticsLoss

    only = TextureStatisticsLoss(w_spectrum=0.0, w_intensity=0.0, w_gradient=0.0, w_orientation=1.0)
    stripes = torch.stack([_stripes(a) for a in (0.0, 1.0)])[:, None]
    rings = torch.stack([_rings(), _rings(period=7.0)])[:, None]
    assert only(stripes, rings) > 0.5  # streaks where the target has edges in all directions
    from emgan_monai.losses.texture import orientation_coherence

    expected = torch.stack(
        [
            (orientation_coherence(stripes, w).sort(0).values - orientation_coherence(rings, w).sort(0).values)
            .abs()
            .mean()
            for w in (None, 16)
        ]
    ).mean()
    torch.testing.assert_close(only(stripes, rings), expected)  # the default windows: whole image and 16 px
    assert only(stripes, stripes.flip(0)) < 1e-6  # the order within the batch is free
    assert only(stripes.transpose(-1, -2), stripes) < 1e-4  # so is the direction of the streaks
    assert TextureStatisticsLoss()(stripes, rings) == TextureStatisticsLoss(w_orientation=0.0)(
        stripes, rings
    )  # off by default
    two = torch.cat([stripes, rings], dim=1)  # channel 0 streaks, channel 1 rings
    only_rings = TextureStatisticsLoss(
        w_spectrum=0.0, w_intensity=0.0, w_gradient=0.0, w_orientation=1.0, orientation_channels=[1]
    )
    assert only_rings(two, torch.cat([rings, rings], dim=1)) < 1e-6 < only(two, torch.cat([rings, rings], dim=1))
    with pytest.raises(ValueError, match="orientation_windows"):
        TextureStatisticsLoss(w_orientation=1.0, orientation_windows=[])
