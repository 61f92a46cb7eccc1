"""Tests of the working CryoETGAN pieces: the physics-started G_ds, G_sd's pre-training on simulated pairs, cube
rotations of the maps and the S -> D evaluation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import cube_particle_maps as _maps

from emgan_monai.data.cryoet_domains import CryoETDomains
from emgan_monai.engines import pretrain_inverse, random_cube_rotation
from emgan_monai.engines.gan_modes import gan_optimizer
from emgan_monai.evaluation.cryoet_inverse import (
    fit_lowpass_sigma,
    inverse_criteria,
    inverse_scores,
    load_inverses,
    lowpass,
    map_correlations,
)
from emgan_monai.networks import (
    CycleGANGenerator,
    PhysicsInformedGenerator,
    PhysicsResidualGenerator,
    build_subtomogram_generator,
)
from emgan_monai.networks.physics_residual import load_physics_


def test_physics_residual_starts_at_the_simulator():
    """The ResNet's last convolution is zero: before training the output is the physics' output, noise for noise."""
    torch.manual_seed(0)
    g = PhysicsResidualGenerator(box=16, residual_channels=4, residual_blocks=1)
    x = _maps(2)
    noise = torch.randn_like(x)
    np.testing.assert_allclose(g(x, noise).detach().numpy(), g.simulate(x, noise).detach().numpy(), atol=1e-6)
    assert g(x).shape == x.shape


def test_physics_residual_is_bounded_and_trainable():
    torch.manual_seed(0)
    g = PhysicsResidualGenerator(box=16, residual_channels=4, residual_blocks=1, residual_bound=0.25)
    for p in g.residual.decoder[2].parameters():
        torch.nn.init.normal_(p, std=10.0)  # a saturated residual
    x = _maps(2)
    noise = torch.randn_like(x)
    with torch.no_grad():
        diff = (g(x, noise) - g.simulate(x, noise)) * g.z_scale
    assert float(diff.abs().max()) <= 0.25 + 1e-5 and float(diff.abs().max()) > 0.1
    g.physics_net.gain.data.fill_(1.0)
    g(x).square().mean().backward()
    assert g.residual.encoder[0].conv.weight.grad is not None and g.physics_net.gain.grad is not None


def test_physics_residual_calibration_and_optimizer_groups():
    g = build_subtomogram_generator("physics_residual", box=16, residual_channels=4, residual_blocks=1, channels=99)
    assert isinstance(g, PhysicsResidualGenerator)  # keys of the other kinds (channels) are ignored
    phys = g.calibrate_(_maps(4), snr=0.05)
    ref = PhysicsInformedGenerator(box=16, refine_channels=0).calibrate_(_maps(4), snr=0.05)
    assert phys.pop("noise_profile") == ref.pop("noise_profile")
    assert phys == pytest.approx(ref)
    opt = gan_optimizer(g, "wgan_gp", lr=1e-4, physics_lr=3e-3)
    lrs = sorted(group["lr"] for group in opt.param_groups)
    assert lrs == [1e-4, 3e-3]
    assert len(opt.param_groups[1]["params"]) == len(g.physics_parameters())


def test_load_physics_starts_g_ds_at_a_trained_simulator(tmp_path):
    trained = PhysicsInformedGenerator(box=16, refine_channels=0, defocus_um=4.5, tilt_max_deg=50.0)
    trained.calibrate_(_maps(4), snr=0.05)
    torch.save(trained.state_dict(), tmp_path / "physics.pt")
    g = PhysicsResidualGenerator(box=16, residual_channels=4, residual_blocks=1)
    assert load_physics_(g, str(tmp_path / "physics.pt")) == trained.physics()
    x, noise = _maps(2), torch.randn(2, 1, 16, 16, 16)
    torch.testing.assert_close(g(x, noise), trained(x, noise))  # the residual is still zero
    refined = PhysicsInformedGenerator(box=16, refine_channels=4)
    torch.save(refined.state_dict(), tmp_path / "refined.pt")
    with pytest.raises(ValueError, match=r"refined.pt: not the weights .*refine"):
        load_physics_(g, str(tmp_path / "refined.pt"))
    with pytest.raises(TypeError, match="physics_residual"):
        load_physics_(trained, str(tmp_path / "physics.pt"))


def test_physics_residual_rejects_a_non_positive_bound():
    with pytest.raises(ValueError, match="residual_bound"):
        PhysicsResidualGenerator(residual_bound=0.0)


def test_random_cube_rotation_covers_the_24_rotations():
    x = torch.arange(27, dtype=torch.float32).reshape(1, 1, 3, 3, 3)
    g = torch.Generator().manual_seed(0)
    seen = {tuple(random_cube_rotation(x, g).flatten().tolist()) for _ in range(400)}
    assert len(seen) == 24
    y = random_cube_rotation(torch.randn(2, 1, 4, 4, 4), g)
    assert y.shape == (2, 1, 4, 4, 4)


def test_pretrain_inverse_learns_the_map_back_from_a_simulator():
    """G_sd learns to undo a fixed blur-and-invert simulator: the error falls and the output correlates with the map
    (an L1 loss would give the empty map here: the particles are small)."""
    torch.manual_seed(0)

    def simulator(m: torch.Tensor) -> torch.Tensor:
        return -torch.nn.functional.avg_pool3d(m, 3, stride=1, padding=1) * 0.5 + 0.1 * torch.randn_like(m)

    maps = _maps(8, box=12)
    inverse = CycleGANGenerator(3, 1, 1, channels=4, n_res_blocks=1, noise_channels=0)
    out = pretrain_inverse(inverse, simulator, maps, steps=150, batch_size=4, lr=3e-3, seed=0)
    assert out["steps"] == 150 and out["mse_last"] < 0.5 * out["mse_first"]
    with torch.no_grad():
        pred = inverse.eval()(simulator(maps))
    assert map_correlations(pred[:, 0].numpy(), maps[:, 0].numpy()).mean() > 0.8
    assert pretrain_inverse(inverse, simulator, maps, steps=0) == {"steps": 0}
    with pytest.raises(ValueError, match="maps"):
        pretrain_inverse(inverse, simulator, maps[:, 0], steps=1)


def test_map_correlations_and_lowpass():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 6, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(map_correlations(a, a), 1.0, atol=1e-6)
    np.testing.assert_allclose(map_correlations(-2 * a, a), -1.0, atol=1e-6)
    assert map_correlations(np.zeros_like(a), a).tolist() == [0.0, 0.0, 0.0]  # a constant prediction scores 0
    assert lowpass(a, 1.0).shape == a.shape and float(np.corrcoef(lowpass(a, 1.0)[0].ravel(), a[0].ravel())[0, 1]) < 0


def _domains(n: int, noise: float, seed: int) -> CryoETDomains:
    """Smooth maps and subtomograms = -map + white noise: the best low-pass is a wide one."""
    maps = (_maps(n, box=16, seed=seed)[:, 0].numpy() + 1) / 2
    rng = np.random.default_rng(seed)
    sub = -maps + noise * rng.normal(size=maps.shape).astype(np.float32)
    return CryoETDomains(
        density=maps, subtomo=sub.astype(np.float32), mask=maps, label=np.arange(n) % 3 + 1, tomo=np.ones(n, int)
    )


def test_inverse_scores_rows_and_reference_points(tmp_path):
    train, test = _domains(6, 1.0, 0), _domains(6, 1.0, 1)
    assert fit_lowpass_sigma(train) >= 1.0  # at this noise level the raw subtomogram is not the best estimate
    torch.manual_seed(0)
    net = CycleGANGenerator(3, 1, 1, channels=4, n_res_blocks=1, noise_channels=1, decoder_noise=True)
    torch.save(net.state_dict(), tmp_path / "g_sd.pt")
    kwargs = dict(spatial_dims=3, in_channels=1, out_channels=1, channels=4, n_res_blocks=1, decoder_noise=True)
    nets = load_inverses({"g_sd": tmp_path / "g_sd.pt"}, kwargs)
    rows = inverse_scores(nets, train, test, n_samples=3)
    assert list(rows) == ["g_sd", "g_sd_mean", "lowpass_baseline", "inverted_subtomogram", "mean_training_map"]
    for row in rows.values():
        assert row["n"] == 6 and -1 <= row["correlation"] <= 1 and set(row["per_class"]) == {1, 2, 3}
    assert rows["lowpass_baseline"]["correlation"] > rows["inverted_subtomogram"]["correlation"] > 0.1
    assert rows["g_sd_mean"]["draws"] == 3
    with pytest.raises(FileNotFoundError, match="missing"):
        load_inverses({"missing": tmp_path / "nope.pt"}, kwargs)


def test_scores_of_a_row_are_the_correlations_of_the_deviations_from_the_prior():
    from emgan_monai.evaluation.cryoet_inverse import _row

    rng = np.random.default_rng(1)
    maps = rng.normal(size=(5, 4, 4, 4))
    prior = maps.mean(0, keepdims=True) + 0.1
    pred = maps + rng.normal(scale=0.5, size=maps.shape)
    row = _row(pred, maps, prior, np.array([1, 1, 2, 2, 2]))
    expected = map_correlations(pred - prior, maps - prior)
    np.testing.assert_allclose(row["per_particle_specific_correlation"], expected, rtol=1e-10)
    assert row["correlation"] == pytest.approx(map_correlations(pred, maps).mean())
    assert row["identification"] == 1.0  # every output nearest its own map
    shuffled = _row(pred[::-1].copy(), maps, prior, np.array([1, 1, 2, 2, 2]))
    assert shuffled["identification"] <= 0.2  # only the middle particle keeps its own map


def test_inverse_criteria_needs_a_paired_margin_of_two_standard_errors():
    rng = np.random.default_rng(0)
    base = rng.normal(0.2, 0.1, 50)
    row = lambda v: {"per_particle_specific_correlation": list(v)}  # noqa: E731
    rows = {
        "clear": row(base + 0.1 + rng.normal(0, 0.02, 50)),
        "noise": row(base + rng.normal(0.005, 0.1, 50)),
        "worse": row(base - 0.05),
        "clear_mean": row(base + 0.1) | {"draws": 8},
        "lowpass_baseline": row(base),
        "inverted_subtomogram": row(base),
        "mean_training_map": row(base * 0),
    }
    crit = inverse_criteria(rows)
    assert set(crit) == {"clear", "noise", "worse"}  # reference rows and means of draws are not judged
    assert crit["clear"]["beats_lowpass_baseline"] and crit["clear"]["specific_correlation_minus_lowpass"] > 0.09
    assert not crit["noise"]["beats_lowpass_baseline"] and crit["noise"]["se_paired_by_particle"] > 0.01
    assert not crit["worse"]["beats_lowpass_baseline"]


@pytest.mark.parametrize("spectral_norm", [True, False])
def test_critic_spectral_norm_is_a_free_setting(spectral_norm):
    """The ablation switches spectral norm independently of the loss (the bundle's ``spectral_norm`` key)."""
    from emgan_monai.networks import SpectralNormCritic

    critic = SpectralNormCritic(3, 1, channels=(4, 8), spectral_norm=spectral_norm)
    names = [n for n, _ in critic.named_parameters()]
    assert any("parametrizations" in n for n in names) == spectral_norm
    assert list(itertools.islice(critic(torch.randn(1, 1, 8, 8, 8)).shape, 2)) == [1, 1]
