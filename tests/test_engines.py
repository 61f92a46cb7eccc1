import glob
import logging
import os

import numpy as np
import pytest
import torch
from monai.handlers import CheckpointLoader, CheckpointSaver, LrScheduleHandler, StatsHandler, TensorBoardStatsHandler
from torch import nn
from torch.utils.data import DataLoader

from emgan_monai.engines import AdversarialSettings
from emgan_monai.engines.cycle import CycleGANTrainer
from emgan_monai.engines.paired import PairedGANTrainer
from emgan_monai.engines.unconditional import UnconditionalGANTrainer
from emgan_monai.engines.utils import ImagePool, LinearDecayLR, RandomState, scalars

N_SAMPLES, BATCH = 4, 2  # -> 2 iterations per epoch
MODES = ("unconditional", "paired", "cycle")


def _gen(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, cout, 3, padding=1), nn.Tanh()
    )


def _disc(cin: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))


def _data(mode: str) -> list[dict]:
    g = torch.Generator().manual_seed(123)
    items = []
    for _ in range(N_SAMPLES):
        a, b = torch.rand(1, 16, 16, generator=g) * 2 - 1, torch.rand(1, 16, 16, generator=g) * 2 - 1
        items.append({"image_a": a, "image_b": b} if mode == "cycle" else {"image": a, "label": b})
    return items


def build(mode: str, max_epochs: int, handlers=(), **kwargs):
    """Fresh, identically initialised networks, optimisers and trainer; returns (trainer, save_dict)."""
    torch.manual_seed(0)
    loader = DataLoader(_data(mode), batch_size=BATCH, shuffle=False, num_workers=0)
    adversarial = {k: kwargs.pop(k) for k in ("loss", "d_steps", "clip_value", "gp_weight") if k in kwargs}
    common = dict(device="cpu", max_epochs=max_epochs, train_data_loader=loader, seed=7, **kwargs)
    if mode == "cycle":
        g_ab, g_ba, d_a, d_b = _gen(1, 1), _gen(1, 1), _disc(1), _disc(1)
        g_opt = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=2e-3, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=2e-3, betas=(0.5, 0.999))
        trainer = CycleGANTrainer(
            generators={"g_ab": g_ab, "g_ba": g_ba},
            discriminators={"d_a": d_a, "d_b": d_b},
            g_optimizer=g_opt,
            d_optimizer=d_opt,
            keys=("image_a", "image_b"),
            adversarial=AdversarialSettings(pool_size=3, **adversarial),
            **common,
        )
        nets = {"g_ab": g_ab, "g_ba": g_ba, "d_a": d_a, "d_b": d_b}
    else:
        g = _gen(1, 1)
        d = _disc(2 if mode == "paired" else 1)
        g_opt = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
        d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
        if mode == "paired":
            trainer = PairedGANTrainer(
                g_network=g,
                g_optimizer=g_opt,
                d_network=d,
                d_optimizer=d_opt,
                adversarial=AdversarialSettings(**adversarial),
                **common,
            )
        else:
            trainer = UnconditionalGANTrainer(
                g_network=g,
                g_optimizer=g_opt,
                d_network=d,
                d_optimizer=d_opt,
                latent_shape=(1, 16, 16),
                real_key="label",
                adversarial=AdversarialSettings(**adversarial),
                **common,
            )
        nets = {"g": g, "d": d}
    save_dict = {**nets, "g_opt": g_opt, "d_opt": d_opt, "trainer": trainer, "rng": trainer.rng}
    for h in handlers:
        h.attach(trainer)
    return trainer, save_dict


def _weights(save_dict) -> dict[str, torch.Tensor]:
    return {
        f"{k}.{n}": p.detach().clone()
        for k, m in save_dict.items()
        if isinstance(m, nn.Module)
        for n, p in m.state_dict().items()
    }


@pytest.mark.parametrize("mode", MODES)
def test_parameters_change_and_losses_finite(mode):
    trainer, save_dict = build(mode, max_epochs=1)
    before = _weights(save_dict)
    trainer.run()
    after = _weights(save_dict)
    for name in (k for k in save_dict if isinstance(save_dict[k], nn.Module)):
        changed = [not torch.equal(before[k], after[k]) for k in before if k.startswith(name + ".")]
        assert all(changed), f"{mode}: some parameters of {name} did not change"
    out = trainer.state.output
    values = scalars(out)
    expected = {"g_loss", "d_loss", "g_adv", "d_real", "d_fake"}
    expected |= {"paired": {"g_pixel"}, "cycle": {"g_cycle", "g_identity", "d_a", "d_b"}}.get(mode, set())
    assert expected <= set(values), values
    assert all(np.isfinite(v) for v in values.values())
    images = {
        "unconditional": ("real", "fake"),
        "paired": ("input", "fake", "real"),
        "cycle": ("real_a", "fake_b", "rec_a", "real_b", "fake_a", "rec_b"),
    }[mode]
    for key in images:
        assert out[key].shape == (BATCH, 1, 16, 16) and not out[key].requires_grad


@pytest.mark.parametrize("mode", MODES)
def test_bit_exact_resume(mode, tmp_path):
    full, full_dict = build(mode, max_epochs=2)
    full.run()
    expected = _weights(full_dict)

    first, first_dict = build(mode, max_epochs=1)
    CheckpointSaver(str(tmp_path), first_dict, save_interval=1, epoch_level=True).attach(first)
    first.run()
    (ckpt,) = glob.glob(os.path.join(tmp_path, "*.pt"))

    second, second_dict = build(mode, max_epochs=2)
    CheckpointLoader(ckpt, second_dict).attach(second)
    second.run()
    assert second.state.iteration == full.state.iteration == 2 * N_SAMPLES // BATCH
    got = _weights(second_dict)
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6, rtol=0), f"{mode}: {k} differs after resume"
    # and the first half really differs from the end state (the test is not vacuous)
    assert any(not torch.allclose(_weights(first_dict)[k], v) for k, v in expected.items())


def test_wasserstein_clip():
    """Original WGAN: every critic weight is clamped to [-c, c] after each critic step (biases are not clipped)."""
    trainer, save_dict = build("unconditional", max_epochs=1, loss="wasserstein", clip_value=0.01, d_steps=2)
    trainer.run()
    weights = [p for n, p in save_dict["d"].named_parameters() if n.endswith("weight")]
    assert weights and all(float(w.abs().max()) <= 0.01 + 1e-8 for w in weights)
    # the clamp was active: the initial weights (~U(-0.25, 0.25)) end exactly on the bound
    assert any(bool((w.abs() == 0.01).any()) for w in weights)
    assert np.isfinite(trainer.state.output["d_loss"])


def test_wasserstein_gradient_penalty_value():
    """WGAN-GP on a linear critic ``D(x) = <w, x> + b``: its input gradient is ``w`` everywhere, so the reported
    ``gp`` must be ``(||w|| - 1)^2`` whatever the interpolation, and ``d_loss = -D(real) + D(fake) + 10 gp``."""
    torch.manual_seed(0)
    g = _gen(1, 1)
    critic = nn.Conv2d(2, 1, 16)  # (B, 2, 16, 16) -> (B, 1, 1, 1): one linear score per pair
    with torch.no_grad():
        critic.weight.mul_(2.5 / critic.weight.norm())  # ||w|| = 2.5 -> gp = 1.5^2 = 2.25
    w0, b0 = critic.weight.detach().clone(), critic.bias.detach().clone()
    g0 = _gen(1, 1)
    g0.load_state_dict(g.state_dict())
    loader = DataLoader(_data("paired"), batch_size=BATCH, shuffle=False)
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=loader,
        g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters()),
        d_network=critic,
        d_optimizer=torch.optim.Adam(critic.parameters()),
        adversarial=AdversarialSettings(loss="wasserstein", gp_weight=10.0),
        epoch_length=1,
        seed=7,
    )
    trainer.run()
    out = scalars(trainer.state.output)
    assert out["gp"] == pytest.approx(2.25, rel=1e-5)
    # the critic terms recomputed from the initial networks on the first batch
    batch = next(iter(loader))
    x, y = batch["image"], batch["label"]
    with torch.no_grad():
        score = lambda a, b: torch.nn.functional.conv2d(torch.cat([a, b], 1), w0, b0).mean()  # noqa: E731
        d_real, d_fake = float(-score(x, y)), float(score(x, g0(x)))
    assert out["d_real"] == pytest.approx(d_real, rel=1e-4, abs=1e-5)
    assert out["d_fake"] == pytest.approx(d_fake, rel=1e-4, abs=1e-5)
    assert out["d_loss"] == pytest.approx(d_real + d_fake + 10.0 * 2.25, rel=1e-5)
    # the penalty acted on the critic: with ||w|| > 1 the step shrinks w (Adam moves every weight by ~lr)
    assert float(critic.weight.norm()) < 2.5


def test_d_steps_updates_critic_more():
    def optimiser_steps(d_steps):
        trainer, save_dict = build("paired", max_epochs=1, d_steps=d_steps, epoch_length=1)
        trainer.run()

        def steps(net, opt):
            return save_dict[opt].state[next(iter(save_dict[net].parameters()))]["step"].item()

        return steps("d", "d_opt"), steps("g", "g_opt")

    assert optimiser_steps(1) == (1, 1)
    assert optimiser_steps(2) == (2, 1)  # two critic steps on the same batch per generator step


def test_resume_without_rng_is_not_exact(tmp_path):
    """The rng object is what makes the unconditional resume exact (noise stream)."""
    full, full_dict = build("unconditional", max_epochs=2)
    full.run()
    first, first_dict = build("unconditional", max_epochs=1)
    first_dict.pop("rng")
    CheckpointSaver(str(tmp_path), first_dict, save_interval=1).attach(first)
    first.run()
    (ckpt,) = glob.glob(os.path.join(tmp_path, "*.pt"))
    second, second_dict = build("unconditional", max_epochs=2)
    second_dict.pop("rng")
    CheckpointLoader(ckpt, second_dict).attach(second)
    second.run()
    assert not torch.allclose(_weights(second_dict)["g.0.weight"], _weights(full_dict)["g.0.weight"], atol=1e-6)


def test_amp_on_cpu_warns_and_runs_fp32():
    import emgan_monai.engines.base as base

    base._AMP_CPU_WARNED = False
    with pytest.warns(UserWarning, match="only honoured on CUDA"):
        trainer, _ = build("paired", max_epochs=1, amp=True, epoch_length=1)
    assert trainer.amp is False and trainer.scaler_g is None
    trainer.run()
    assert trainer.state.output["fake"].dtype == torch.float32


def test_missing_key_raises():
    trainer, _ = build("paired", max_epochs=1)
    trainer.image_key = "nope"
    with pytest.raises(ValueError, match="no key 'nope'"):
        trainer.run()


def test_stats_and_tensorboard_handlers_log_dict_output(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("emgan_test_stats")
    logger.addHandler(collector := _Collect())
    try:
        stats = StatsHandler(name="emgan_test_stats", output_transform=scalars, iteration_log=True)
        tb = TensorBoardStatsHandler(log_dir=str(tmp_path), output_transform=scalars)
        trainer, _ = build("cycle", max_epochs=1, train_handlers=[stats, tb])
        trainer.run()
    finally:
        logger.removeHandler(collector)
    text = "\n".join(records)
    assert "g_loss:" in text and "d_fake:" in text and "g_cycle:" in text
    tb.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert {"g_loss", "d_loss", "g_cycle"} <= set(acc.Tags()["scalars"])


def test_linear_decay_lr_values_and_handler():
    rule = LinearDecayLR(n_constant=2, n_decay=3)
    assert [rule(e) for e in range(7)] == pytest.approx([1, 1, 0.75, 0.5, 0.25, 0.0, 0.0])
    trainer, save_dict = build("paired", max_epochs=3)
    sched = torch.optim.lr_scheduler.LambdaLR(save_dict["g_opt"], lr_lambda=LinearDecayLR(1, 3))
    LrScheduleHandler(sched, print_lr=False, epoch_level=True).attach(trainer)
    trainer.run()
    assert save_dict["g_opt"].param_groups[0]["lr"] == pytest.approx(2e-3 * 0.25)
    state = sched.state_dict()
    assert state["lr_lambdas"][0] == {"n_constant": 1, "n_decay": 3}
    with pytest.raises(ValueError):
        LinearDecayLR(-1, 2)


def test_image_pool_semantics():
    rng = RandomState(5, include_global=False)
    pool = ImagePool(pool_size=4, rng=rng)
    first = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first) and len(pool) == 4  # filling: returned as is
    returned_stored, n = 0, 200
    for i in range(n):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(new)
        stored_values = {float(im) for im in pool.images}
        if out.item() != new.item():
            returned_stored += 1
            assert new.item() in stored_values  # swapped in
        else:
            assert new.item() not in stored_values
    assert 0.35 < returned_stored / n < 0.65  # p = 0.5
    # state round-trip
    clone = ImagePool(4, rng=RandomState(0, include_global=False))
    clone.load_state_dict(pool.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(clone.images, pool.images))
    assert torch.equal(ImagePool(0).query(first), first)
    with pytest.raises(ValueError):
        clone.load_state_dict({"pool_size": 3, "images": []})


def test_random_state_round_trip():
    rng = RandomState(3)
    state = rng.state_dict()
    a = rng.randn((5,))
    torch.rand(3)
    rng.load_state_dict(state)
    assert torch.equal(rng.randn((5,)), a)


def _paired_trainer(loader, max_epochs: int, wrap=lambda m: m):
    """Paired trainer on the tiny networks of :func:`build`, optionally wrapping each network (e.g. in DDP)."""
    torch.manual_seed(0)
    g, d = wrap(_gen(1, 1)), wrap(_disc(2))
    g_opt = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.5, 0.999))
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        g_network=g,
        g_optimizer=g_opt,
        d_network=d,
        d_optimizer=d_opt,
        seed=7,
    )
    return trainer, {"g": g, "d": d, "g_opt": g_opt, "d_opt": d_opt, "trainer": trainer, "rng": trainer.rng}


def _bare_weights(save_dict) -> dict[str, torch.Tensor]:
    return {
        f"{k}.{n}": p.detach().clone()
        for k in ("g", "d")
        for n, p in getattr(save_dict[k], "module", save_dict[k]).state_dict().items()
    }


def _ddp_worker(rank: int, world: int, tmp: str, max_epochs: int) -> None:
    """One rank of a 2-process gloo run: DDP-wrapped networks, a DistributedSampler, rank 0 writes checkpoints."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data.distributed import DistributedSampler

    from emgan_monai.handlers.checkpoint import AtomicCheckpointSaver

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=world)
    try:
        data = _data("paired")
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)  # rank r: items r, r + 2
        trainer, save = _paired_trainer(DataLoader(data, batch_size=BATCH, sampler=sampler), max_epochs, wrap=DDP)
        # built on every rank (ignite's saver gathers the host names of all ranks once), attached on rank 0 only,
        # as the bundles' multi_gpu_train.json do
        saver = AtomicCheckpointSaver(os.path.join(tmp, "ckpt"), save, save_interval=1, n_saved=None)
        if rank == 0:
            saver.attach(trainer)
        trainer.run()
        torch.save(_bare_weights(save), os.path.join(tmp, f"rank{rank}.pt"))
        # both ranks leave together: a rank that tears gloo down while the other still holds its pairs can abort
        # ("terminate called without an active exception", SIGABRT), seen once in CI
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_two_ranks_match_one_process_and_resume_on_one_device(tmp_path):
    """Two gloo ranks with half a batch each train exactly like one process on the whole batch (DDP averages the
    gradients of the per-rank mean losses), and rank 0's checkpoint holds bare (un-prefixed) state dicts that a
    single-device run without DDP resumes from, ending where the uninterrupted runs end."""
    import shutil

    import torch.multiprocessing as mp

    from emgan_monai.handlers.checkpoint import load_checkpoint
    from emgan_monai.handlers.resume import ResumeFromLatest

    mp.spawn(_ddp_worker, args=(2, str(tmp_path), 2), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k, v in rank0.items():
        torch.testing.assert_close(rank1[k], v, rtol=0, atol=0)  # the ranks stay in sync

    whole_batch = DataLoader(_data("paired"), batch_size=2 * BATCH, shuffle=False)
    single, single_dict = _paired_trainer(whole_batch, max_epochs=2)
    single.run()
    expected = _bare_weights(single_dict)
    for k, v in expected.items():
        torch.testing.assert_close(rank0[k], v, rtol=1e-5, atol=1e-6, msg=f"DDP differs from one process at {k}")

    (epoch1,) = (tmp_path / "ckpt").glob("*epoch=1.pt")
    ckpt = load_checkpoint(epoch1)
    for net in ("g", "d"):
        assert set(ckpt[net]) == set(_gen(1, 1).state_dict() if net == "g" else _disc(2).state_dict())
    resume_dir = tmp_path / "resume"
    resume_dir.mkdir()
    shutil.copy(epoch1, resume_dir / epoch1.name)
    resumed, resumed_dict = _paired_trainer(whole_batch, max_epochs=2)  # plain modules, no process group
    ResumeFromLatest(resume_dir, resumed_dict).attach(resumed)
    resumed.run()
    assert resumed.state.epoch == 2 and resumed.state.iteration == 2
    for k, v in _bare_weights(resumed_dict).items():
        torch.testing.assert_close(v, rank0[k], rtol=1e-5, atol=1e-6, msg=f"resume on one device differs at {k}")
    # a checkpoint written from the wrappers' own state_dict() ("module." keys) resumes on one device as well
    prefixed = dict(ckpt)
    for net in ("g", "d"):
        prefixed[net] = {f"module.{k}": v for k, v in ckpt[net].items()}
    prefixed_dir = tmp_path / "prefixed"
    prefixed_dir.mkdir()
    torch.save(prefixed, prefixed_dir / epoch1.name)
    again, again_dict = _paired_trainer(whole_batch, max_epochs=2)
    ResumeFromLatest(prefixed_dir, again_dict).attach(again)
    again.run()
    for k, v in _bare_weights(again_dict).items():
        torch.testing.assert_close(v, rank0[k], rtol=1e-5, atol=1e-6)
