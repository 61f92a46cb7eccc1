"""A drosophila training run killed with SIGKILL mid-epoch and resumed with ``--resume true`` ends bit-exactly where
an uninterrupted run with the same seed ends (CPU), through ``python -m monai.bundle run``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from emgan_monai.data.drosophila import make_synthetic_stack
from emgan_monai.handlers.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "bundles" / "drosophila_skip_patch" / "configs" / "train.json"
PAUSE_AT = (
    5  # iteration 5 = first iteration of epoch 3 (2 iterations of batch 1 per epoch): after checkpoint_epoch=2.pt
)

# merged after train.json: the same `run` list plus a handler that, at iteration PAUSE_AT, tells the
# test it got there and then waits to be killed (so the kill lands at a known point, from outside, as a real SIGKILL)
PAUSE_HOOK = {
    "run": [
        "$@train#resume_handler.attach(@train#trainer)",
        "$@train#checkpoint_saver.attach(@train#trainer)",
        # (no 'import' in the expression: MONAI would take it for an import statement)
        "$@train#trainer.add_event_handler(os.sys.modules['ignite.engine'].Events.ITERATION_COMPLETED"
        f"(once={PAUSE_AT}), lambda e: (open(os.environ['EMGAN_TEST_MARKER'], 'w').close(), "
        "os.sys.modules['time'].sleep(300)))",
        "$@train#trainer.run()",
    ]
}


def _command(config: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", config,
        "--dataset_dir", str(data), "--output_dir", str(out), "--device", "cpu",
        "--n_train", "2", "--n_val", "1", "--resolution", "32", "--em_channels", "[4, 4, 8, 8]",
        "--batch_size", "1", "--iterations_per_epoch", "2", "--discriminator_channels", "4", "--max_epochs", "4",
        "--save_interval", "1", "--val_interval", "2", "--seed", "3", *extra,
    ]  # fmt: skip


def test_sigkill_mid_training_then_resume_equals_uninterrupted_run(tmp_path):
    data = tmp_path / "data"
    make_synthetic_stack(data / "stack1", n_sections=3, size=32, seed=1)
    hook = tmp_path / "pause_hook.json"
    hook.write_text(json.dumps(PAUSE_HOOK))
    marker = tmp_path / "paused"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EMGAN_TEST_MARKER": str(marker)}
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"

    # the reference run and the run to be killed, side by side
    full = subprocess.Popen(
        _command(str(TRAIN), data, full_dir), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    victim = subprocess.Popen(
        _command(str([str(TRAIN), str(hook)]), data, killed_dir),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    while not marker.exists():
        assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the training run never reached the kill point"
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL

    ckpts = killed_dir / "checkpoints"
    names = sorted(p.name for p in ckpts.glob("*.pt"))
    assert names == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"], names  # no final, no partial file
    assert not (killed_dir / "model.pt").exists()

    resumed = subprocess.run(
        _command(str(TRAIN), data, killed_dir, "--resume", "true"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = resumed.stdout + resumed.stderr
    assert "resume: read" in log and "checkpoint_epoch=2.pt" in log
    _, err = full.communicate(timeout=300)
    assert full.returncode == 0, err.decode()[-3000:]

    ref = load_checkpoint(full_dir / "checkpoints" / "checkpoint_final.pt")
    got = load_checkpoint(ckpts / "checkpoint_final.pt")
    assert got["trainer"]["iteration"] == ref["trainer"]["iteration"] == 8
    before_kill = load_checkpoint(ckpts / "checkpoint_epoch=2.pt")
    compared = 0
    for name in ("generator", "g_ema", "discriminator"):
        for key, value in ref[name].items():
            assert torch.allclose(got[name][key], value, atol=1e-6, rtol=0), f"{name}.{key} differs after resume"
            compared += 1
    # the optimiser moments too (Adam exp_avg / exp_avg_sq of every parameter)
    for name in ("g_optimizer", "d_optimizer"):
        for idx, state in ref[name]["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(got[name]["state"][idx][key], state[key], atol=1e-6, rtol=0)
    # the final generator written for users (model.pt) is identical as well
    ref_model, got_model = load_checkpoint(full_dir / "model.pt"), load_checkpoint(killed_dir / "model.pt")
    assert all(torch.allclose(got_model[k], v, atol=1e-6, rtol=0) for k, v in ref_model.items())
    # not vacuous: training moved the weights after the checkpoint the run resumed from
    assert compared > 10
    assert any(not torch.allclose(before_kill["generator"][k], v) for k, v in ref["generator"].items())
