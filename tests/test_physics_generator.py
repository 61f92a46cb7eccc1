"""Tests of the physics-informed subtomogram generator, the one-directional GAN mode, EMA and snapshots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import cube_particle_maps as _maps
from torch import nn

from emgan_monai.engines import AdversarialSettings, CycleGANTrainer
from emgan_monai.handlers import ModelEMA, WallTimeSnapshots
from emgan_monai.networks import (
    CycleGANGenerator,
    PhysicsInformedGenerator,
    SpectralNormCritic,
    build_subtomogram_generator,
)
from emgan_monai.networks.physics_generator import ctf_torch, soft_wedge
from emgan_monai.physics.ctf import ctf_1d
from emgan_monai.physics.subtomogram_simulator import missing_wedge_mask, simulate_subtomogram


def test_ctf_torch_matches_numpy_and_has_gradients():
    k = np.linspace(0, 0.025, 50)
    defocus = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(50.0, requires_grad=True)
    ours = ctf_torch(torch.from_numpy(k), defocus, b)
    np.testing.assert_allclose(ours.detach().numpy(), ctf_1d(k, defocus_um=3.0, bfactor=50.0), rtol=1e-5, atol=1e-7)
    ours.sum().backward()
    assert defocus.grad is not None and defocus.grad != 0 and b.grad is not None and b.grad != 0


def test_soft_wedge_approaches_the_binary_wedge():
    g = PhysicsInformedGenerator(box=16, wedge_width_deg=1e-3, refine_channels=0)
    soft = soft_wedge(g.angle, torch.tensor(60.0), 1e-3).numpy()
    hard = missing_wedge_mask((16, 16, 16), (-60, 60))
    off_edge = np.abs(g.angle.numpy() - 60.0) > 0.5
    np.testing.assert_array_equal(np.round(soft[off_edge]), hard[off_edge])


def test_noise_free_signal_equals_traditional_simulator():
    """With a hard wedge, the generator's signal path is the package's traditional simulator (no noise)."""
    g = PhysicsInformedGenerator(box=16, voxel_size=20.0, wedge_width_deg=1e-4, refine_channels=0, bfactor=0.0)
    with torch.no_grad():
        g.raw_bfactor.fill_(-30.0)  # B ~ 0
    x = _maps(2)
    ours = g.signal(x).detach().numpy()[:, 0]
    # pure angle grid points exactly on the 60 degree edge are rare at box 16; compare away from them
    ref = np.stack([simulate_subtomogram((m[0].numpy() + 1) / 2, 20.0, snr=None) for m in x])
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99


def test_calibrated_generator_starts_as_physics_and_in_z_units():
    torch.manual_seed(0)
    g = PhysicsInformedGenerator(box=16, refine_channels=8)
    x = _maps(8)
    g.calibrate_(x, snr=0.05)
    with torch.no_grad():
        noise = g.sample_noise(x)
        z = g.forward_z(x, noise[0])
        physics_only = g.gain * g.signal(x) + g.offset + g.log_sigma.exp() * g.colour_noise(noise[0])
    torch.testing.assert_close(z, physics_only)  # residual starts at exactly zero
    assert abs(float(z.mean())) < 0.1 and float(z.std()) == pytest.approx(1.0, abs=0.1)
    y = g(x)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    assert not torch.allclose(g(x), g(x))  # stochastic: one map, many subtomograms


def test_gradients_reach_physics_and_residual():
    g = PhysicsInformedGenerator(box=16, refine_channels=4)
    x = _maps(2)
    critic = SpectralNormCritic(3, 1, channels=(4, 8))
    critic(g(x)).mean().backward()
    for p in (g.log_defocus, g.raw_bfactor, g.tilt_max, g.noise_log_profile, g.noise_wedge_logit, g.gain, g.log_sigma):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    last = g.refine[-1].conv
    assert last.weight.grad.abs().sum() > 0  # zero-initialised but trainable


def test_noise_filter_keeps_unit_power():
    g = PhysicsInformedGenerator(box=16, refine_channels=0)
    with torch.no_grad():
        g.noise_log_profile.copy_(torch.linspace(-1, 1, g.noise_log_profile.numel()))
        g.noise_wedge_logit.fill_(3.0)
    torch.manual_seed(0)
    n = g.colour_noise(torch.randn(64, 1, 16, 16, 16))
    assert float(n.std()) == pytest.approx(1.0, rel=0.05)


def test_build_subtomogram_generator_by_kind():
    kw = dict(
        box=16, voxel_size=20.0, refine_channels=4, channels=2, n_res_blocks=1, decoder_noise=True, input_noise_std=0.2
    )
    assert isinstance(build_subtomogram_generator("physics", **kw), PhysicsInformedGenerator)
    cg = build_subtomogram_generator("cyclegan", **kw)
    assert isinstance(cg, CycleGANGenerator) and cg.decoder_noise and cg.input_noise_std == 0.2
    with pytest.raises(ValueError, match="unknown generator kind"):
        build_subtomogram_generator("diffusion")
    with pytest.raises(ValueError, match="expected"):
        build_subtomogram_generator("physics", box=16)(torch.zeros(1, 1, 8, 8, 8))


def test_one_directional_trainer_moves_physics_and_ema():
    torch.manual_seed(0)
    g = PhysicsInformedGenerator(box=16, refine_channels=4)
    d = SpectralNormCritic(3, 1, channels=(4, 8))
    data = [{"density": _maps(2, seed=i), "subtomo": torch.randn(2, 1, 16, 16, 16).clamp(-1, 1) / 3} for i in range(3)]
    before = g.log_defocus.item()
    ema = ModelEMA(g, decay=0.9)
    trainer = CycleGANTrainer(
        "cpu",
        2,
        data,
        generators={"g_ab": g, "g_ba": None},
        discriminators={"d_a": None, "d_b": d},
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-2),
        d_optimizer=torch.optim.Adam(d.parameters(), 1e-3),
        keys=("density", "subtomo"),
        adversarial=AdversarialSettings(loss="least_squares", pool_size=0),
    )
    ema.attach(trainer)
    trainer.run()
    out = trainer.state.output
    assert "g_cycle" not in out and np.isfinite(out["g_loss"]) and np.isfinite(out["d_loss"])
    assert g.log_defocus.item() != before
    assert int(ema.updates) == 6
    # the EMA lies between the start and the current weights
    assert ema.module.log_defocus.item() != g.log_defocus.item()
    with pytest.raises(ValueError, match="both"):
        CycleGANTrainer(
            "cpu",
            1,
            data,
            {"g_ab": g},
            {"d_a": d, "d_b": d},
            g_optimizer=trainer.g_optimizer,
            d_optimizer=trainer.d_optimizer,
        )


def test_model_ema_average():
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = ModelEMA(net, decay=0.5, warmup=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update()
    assert ema.module.weight.flatten().tolist() == [0.5, 0.5]
    ema.update()
    assert ema.module.weight.flatten().tolist() == [0.75, 0.75]
    ema.reset()
    assert ema.module.weight.flatten().tolist() == [1.0, 1.0] and int(ema.updates) == 0


def test_wall_time_snapshots(tmp_path):
    from ignite.engine import Engine

    net = nn.Linear(2, 1)
    engine = Engine(lambda e, b: None)
    WallTimeSnapshots(net, tmp_path / "snap", interval=2, prefix="g").attach(engine)
    engine.run(range(5), max_epochs=1)
    rows = (tmp_path / "snap" / "snapshots.csv").read_text().strip().splitlines()
    assert rows[0] == "iteration,epoch,wall_s,file" and len(rows) == 3
    state = torch.load(tmp_path / "snap" / "g_0000004.pt", weights_only=True)
    assert set(state) == {"weight", "bias"}
