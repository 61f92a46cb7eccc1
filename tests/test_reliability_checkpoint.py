"""Reliability of training state: non-finite losses, atomic checkpoints, safe loading, exact data-loader resume."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import DataLoader as MonaiDataLoader
from monai.data import Dataset
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from torch import nn

from emgan_monai.engines import AdversarialSettings, GeneratorLoss
from emgan_monai.engines.paired import PairedGANTrainer
from emgan_monai.errors import CheckpointError, DataError, NonFiniteLossError
from emgan_monai.handlers.checkpoint import AtomicCheckpointSaver, is_complete_checkpoint, load_checkpoint
from emgan_monai.handlers.nonfinite import NonFiniteLossGuard
from emgan_monai.handlers.resume import ResumeFromLatest, latest_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _nets():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))
    d = nn.Sequential(nn.Conv2d(2, 4, 4, stride=2, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))
    return g, d


def _items(n: int = 4, nan_at: int | None = None) -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    items = []
    for i in range(n):
        image, label = torch.rand(1, 16, 16, generator=gen), torch.rand(1, 16, 16, generator=gen)
        if i == nan_at:
            label[0, 3, 3] = float("nan")  # a failed reconstruction in the targets
        items.append({"image": image, "label": label})
    return items


class _NanAfter(torch.utils.data.Dataset):
    """Serves ``items``; from the ``n``-th item served on, the labels hold a NaN (data that go bad mid-run)."""

    def __init__(self, items: list[dict], n: int) -> None:
        self.items, self.n, self.served = items, n, 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        self.served += 1
        item = {k: v.clone() for k, v in self.items[i].items()}
        if self.served > self.n:
            item["label"][0, 0, 0] = float("nan")
        return item


def _trainer(loader, max_epochs: int, check_inputs: bool = True, **kwargs):
    g, d = _nets()
    g_opt, d_opt = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    trainer = PairedGANTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        g_network=g,
        g_optimizer=g_opt,
        d_network=d,
        d_optimizer=d_opt,
        seed=3,
        **kwargs,
    )
    trainer.check_inputs = check_inputs
    save = {"g": g, "d": d, "g_opt": g_opt, "d_opt": d_opt, "trainer": trainer, "rng": trainer.rng}
    return trainer, save


def _state(save: dict) -> dict[str, torch.Tensor]:
    return {f"{k}.{n}": v.detach().clone() for k in ("g", "d") for n, v in save[k].state_dict().items()}


# ------------------------------------------------------------------------------------------- non-finite losses
def test_nonfinite_loss_stops_before_step_keeps_last_good_checkpoint(tmp_path):
    """NaN in the data at epoch 2: clear error (loss, epoch, iteration, resume hint), weights not poisoned,
    no final checkpoint / model.pt written from the diverged state, epoch-1 checkpoint stays the newest."""
    loader = torch.utils.data.DataLoader(_NanAfter(_items(4), n=4), batch_size=2, shuffle=False)
    trainer, save = _trainer(
        loader, max_epochs=3, adversarial=AdversarialSettings(loss="least_squares"), check_inputs=False
    )
    ckpt_dir = tmp_path / "checkpoints"
    AtomicCheckpointSaver(
        str(ckpt_dir), save, save_interval=1, n_saved=2, save_final=True, final_filename="checkpoint_final.pt"
    ).attach(trainer)
    # MONAI's own saver, as in a bundle's train_handlers: it would save model.pt on EXCEPTION_RAISED
    CheckpointSaver(str(tmp_path), {"model": save["g"]}, save_final=True, final_filename="model.pt").attach(trainer)
    seen = {}
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: seen.update(_state(save)))
    with pytest.raises(NonFiniteLossError) as info:
        trainer.run()
    err = info.value
    assert err.loss_name == "d_loss" and err.epoch == 2 and err.iteration == 3
    assert "--resume true" in str(err) and "d_real" in str(err)
    # the weights are those of the end of epoch 1 for the generator (the critic phase of iteration 3 raised
    # before any step) and every value is finite
    assert all(torch.isfinite(v).all() for v in _state(save).values())
    assert all(torch.equal(seen[k], v) for k, v in _state(save).items())
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["checkpoint_epoch=1.pt"]
    assert not (tmp_path / "model.pt").exists()
    assert latest_checkpoint(ckpt_dir).name == "checkpoint_epoch=1.pt"


def test_nan_in_a_batch_is_named_before_the_forward_pass():
    loader = torch.utils.data.DataLoader(_items(4, nan_at=3), batch_size=2, shuffle=False)
    trainer, save = _trainer(loader, max_epochs=1)
    with pytest.raises(DataError, match=r"batch\['label'\] holds 1 NaN/Inf values at epoch 1, iteration 2"):
        trainer.run()


def test_nonfinite_generator_loss_is_named():
    loader = torch.utils.data.DataLoader(_items(2), batch_size=2)
    trainer, _ = _trainer(
        loader,
        max_epochs=1,
        generator_loss=GeneratorLoss(pixel_loss=lambda fake, real: (fake - real).abs().mean() / 0.0),
    )
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite g_loss \(inf\) at epoch 1, iteration 1; terms: .*g_pixel=inf"
    ):
        trainer.run()


def test_nonfinite_guard_for_other_engines(tmp_path):
    """Any engine (e.g. a pixel-loss SupervisedTrainer): the guard stops it; the atomic saver writes no final."""
    losses = iter([0.5, 0.4, float("inf"), 0.3])
    engine = Engine(lambda e, b: {"loss": next(losses)})
    NonFiniteLossGuard().attach(engine)
    net = nn.Linear(2, 2)
    AtomicCheckpointSaver(str(tmp_path), {"net": net}, save_final=True, final_filename="final.pt").attach(engine)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(inf\) at epoch 2, iteration 3"):
        engine.run([0, 1], max_epochs=2)
    assert not (tmp_path / "final.pt").exists()


# ------------------------------------------------------------------------------------------- atomic saving
_KILL_DURING_SAVE = textwrap.dedent(
    """
    import io, os, signal, sys
    import torch
    from ignite.engine import Engine, Events
    from monai.handlers import CheckpointSaver
    from emgan_monai.handlers.checkpoint import AtomicCheckpointSaver

    folder, kind = sys.argv[1], sys.argv[2]
    net = torch.nn.Linear(64, 64)
    cls = AtomicCheckpointSaver if kind == "atomic" else CheckpointSaver
    engine = Engine(lambda e, b: None)
    cls(folder, {"net": net, "head": torch.nn.Linear(2, 2)}, save_interval=1, n_saved=2).attach(engine)
    real_save = torch.save

    def save_then_die(obj, f, **kwargs):  # write half the checkpoint, then die as a SIGKILL would leave it
        if engine.state.epoch < 2:
            return real_save(obj, f, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, **kwargs)
        data = buf.getvalue()[: len(buf.getvalue()) // 2]
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as fh:
                fh.write(data)
        else:
            f.write(data)
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: torch.nn.init.normal_(net.weight))
    engine.run([0], max_epochs=3)
    """
)


def test_kill_during_save_keeps_previous_checkpoint_loadable(tmp_path):
    procs = {}
    for kind in ("atomic", "monai"):
        (tmp_path / kind).mkdir()
        procs[kind] = subprocess.Popen(
            [sys.executable, "-c", _KILL_DURING_SAVE, str(tmp_path / kind), kind],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    for proc in procs.values():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    # atomic: only an orphan temporary file besides the intact epoch-1 checkpoint
    atomic = tmp_path / "atomic"
    assert not (atomic / "checkpoint_epoch=2.pt").exists()
    assert is_complete_checkpoint(atomic / "checkpoint_epoch=1.pt")
    assert set(load_checkpoint(atomic / "checkpoint_epoch=1.pt")["net"]) == {"weight", "bias"}
    assert latest_checkpoint(atomic) == atomic / "checkpoint_epoch=1.pt"
    assert [p.name for p in atomic.iterdir() if p.name.startswith("tmp")], "the half-written file was a temp file"
    # MONAI's saver (atomic=False) leaves a truncated checkpoint_epoch=2.pt; latest_checkpoint skips it
    monai_dir = tmp_path / "monai"
    broken = monai_dir / "checkpoint_epoch=2.pt"
    assert broken.exists() and not is_complete_checkpoint(broken)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(broken)
    assert latest_checkpoint(monai_dir) == monai_dir / "checkpoint_epoch=1.pt"


def test_atomic_saver_is_atomic_and_readable_by_others(tmp_path):
    net = nn.Linear(2, 2)
    assert AtomicCheckpointSaver(
        str(tmp_path), {"net": net}, save_final=True, save_key_metric=True, key_metric_name="m", save_interval=1
    ).atomic
    assert not CheckpointSaver(str(tmp_path), {"net": net}, save_final=True)._final_checkpoint.save_handler._atomic
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"net": net}, save_interval=1).attach(engine)
    engine.run([0], max_epochs=1)
    path = tmp_path / "net_epoch=1.pt"  # ignite names a one-object checkpoint after the object
    assert os.stat(path).st_mode & 0o044 == 0o044  # group/other read, like a non-atomic torch.save
    assert torch.equal(load_checkpoint(path)["weight"], net.weight)


# ------------------------------------------------------------------------------------------- safe loading
class _Payload:
    """Unpickling this creates ``marker`` (stands for any code execution)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious_checkpoint(path: Path, marker: Path, save: dict) -> None:
    state = {k: v.state_dict() for k, v in save.items()}
    state["payload"] = _Payload(str(marker))
    torch.save(state, path)


def test_malicious_checkpoint_is_refused(tmp_path):
    loader = torch.utils.data.DataLoader(_items(2), batch_size=2)
    trainer, save = _trainer(loader, max_epochs=1)
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    marker = tmp_path / "pwned"
    _malicious_checkpoint(ckpt_dir / "checkpoint_epoch=5.pt", marker, save)
    # the payload is live: an unsafe load would run it
    probe = tmp_path / "probe.pt"
    torch.save({"x": _Payload(str(tmp_path / "probe_marker"))}, probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe_marker").exists()

    with pytest.raises(CheckpointError, match=r"checkpoint_epoch=5\.pt.*refused by torch\.load\(weights_only=True\)"):
        ResumeFromLatest(ckpt_dir, save).attach(trainer)
    assert not marker.exists()
    # MONAI's CheckpointLoader (weights_only=True inside) refuses it as well, raising from trainer.run()
    CheckpointLoader(str(ckpt_dir / "checkpoint_epoch=5.pt"), save).attach(trainer)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        trainer.run()
    assert not marker.exists()


def _unsafe_torch_loads(tree: ast.AST, where: str) -> list[str]:
    """Every call of ``torch.load`` (however imported or aliased) whose ``weights_only`` is not the literal ``True``."""
    torch_names, load_names = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
            load_names |= {a.asname or a.name for a in node.names if a.name == "load"}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        is_load = (isinstance(f, ast.Name) and f.id in load_names) or (
            isinstance(f, ast.Attribute)
            and f.attr == "load"
            and (
                (isinstance(f.value, ast.Name) and f.value.id in torch_names)
                or (
                    isinstance(f.value, ast.Attribute)
                    and f.value.attr == "serialization"
                    and isinstance(f.value.value, ast.Name)
                    and f.value.value.id in torch_names
                )
            )
        )
        if not is_load:
            continue
        safe = any(
            k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        if not safe:
            found.append(f"{where}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)}")
    return found


def _config_expressions(obj):
    """The Python expressions (``"$..."`` strings) of a bundle config, ``@ref`` replaced by a plain name."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _config_expressions(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _config_expressions(v)
    elif isinstance(obj, str) and obj.startswith("$"):
        yield re.sub(r"@[\w#]+", "_ref", obj[1:])


def _repo_unsafe_loads(root: Path) -> list[str]:
    offenders = []
    for pattern in ("emgan_monai/**/*.py", "scripts/**/*.py", "apps/**/*.py"):
        for path in root.glob(pattern):
            rel = path.relative_to(root)
            offenders += _unsafe_torch_loads(ast.parse(path.read_text(encoding="utf-8"), str(rel)), str(rel))
    for path in root.glob("bundles/*/configs/*.json"):
        rel = path.relative_to(root)
        for expr in _config_expressions(json.loads(path.read_text(encoding="utf-8"))):
            offenders += _unsafe_torch_loads(ast.parse(expr, str(rel)), str(rel))  # "$import x" too
    return offenders


def test_every_checkpoint_load_in_the_repo_is_weights_only():
    """Every torch.load in the package, scripts, apps and bundle configs passes ``weights_only=True`` (parsed, not
    grepped: multi-line calls, aliases and ``from torch import load`` count)."""
    assert len(list(REPO.glob("apps/**/*.py"))) > 0  # the MONAI Label app is searched too
    offenders = _repo_unsafe_loads(REPO)
    assert not offenders, "\n".join(offenders)


def test_unsafe_load_finder_sees_multiline_aliased_and_config_loads(tmp_path):
    (tmp_path / "emgan_monai").mkdir()
    (tmp_path / "apps" / "x").mkdir(parents=True)
    (tmp_path / "bundles" / "b" / "configs").mkdir(parents=True)
    (tmp_path / "emgan_monai" / "a.py").write_text(
        textwrap.dedent("""
        import torch
        import torch as th
        from torch import load as tl
        ok = torch.load("f",
                        weights_only=True)
        bad1 = torch.load(
            "f",
            map_location="cpu",
        )
        bad2 = th.load("f", weights_only=False)
        bad3 = tl("f")
        bad4 = torch.serialization.load("f")
    """)
    )
    (tmp_path / "apps" / "x" / "b.py").write_text("import torch\nnet = torch.load('m.pt')\n")
    (tmp_path / "bundles" / "b" / "configs" / "inference.json").write_text(
        json.dumps(
            {
                "load": "$@net.load_state_dict(torch.load(@ckpt_path))",
                "safe": "$@net.load_state_dict(torch.load(@ckpt_path, weights_only=True))",
            }
        )
    )
    found = _repo_unsafe_loads(tmp_path)
    assert len(found) == 6, found
    assert sum("a.py" in f for f in found) == 4 and any("apps/x/b.py:2" in f for f in found)
    assert any("inference.json" in f for f in found)


# ------------------------------------------------------------------------------------------- exact data resume
def _shuffled_run(tmp_path: Path, max_epochs: int, resume: Path | None, register: bool = True):
    transform = Compose(
        [
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
            RandGaussianNoised(keys="image", prob=1.0, std=0.05),
        ]
    )
    transform.set_random_state(seed=11)
    loader = MonaiDataLoader(
        Dataset(_items(6), transform),
        batch_size=2,
        shuffle=True,
        num_workers=0,
        generator=torch.Generator().manual_seed(5),
    )
    trainer, save = _trainer(loader, max_epochs=max_epochs)
    if not register:
        trainer.rng._registered.pop("data_loader")
    if resume is not None:
        ResumeFromLatest(resume, save).attach(trainer)
    else:
        AtomicCheckpointSaver(str(tmp_path), save, save_interval=1).attach(trainer)
    trainer.run()
    return _state(save)


def test_shuffling_and_random_transforms_resume_exactly(tmp_path):
    """The trainer's rng holds the loader's shuffling generator and its transforms' numpy states."""
    full = _shuffled_run(tmp_path / "full", 3, None)
    _shuffled_run(tmp_path / "part", 2, None)
    resumed = _shuffled_run(tmp_path, 3, tmp_path / "part")
    assert all(torch.allclose(resumed[k], v, atol=1e-6, rtol=0) for k, v in full.items())
    # without the data-loader state the resumed epoch replays epoch 1's order/augmentation: not exact
    unregistered = _shuffled_run(tmp_path, 3, tmp_path / "part", register=False)
    assert any(not torch.allclose(unregistered[k], v, atol=1e-6, rtol=0) for k, v in full.items())


def test_data_loader_state_is_weights_only_safe(tmp_path):
    transform = Compose([RandFlipd(keys="image", prob=0.5)])
    loader = MonaiDataLoader(
        Dataset(_items(2), transform), batch_size=1, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    trainer, _ = _trainer(loader, max_epochs=1)
    torch.save({"rng": trainer.rng.state_dict()}, tmp_path / "rng.pt")
    state = load_checkpoint(tmp_path / "rng.pt")["rng"]["registered"]["data_loader"]
    assert len(state["generators"]) == 1 and len(state["transforms"]) >= 1
    assert np.asarray(state["transforms"][0]["key"]).shape == (624,)
