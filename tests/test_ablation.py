"""Tests of ``scripts/ablation_discriminators.py``: helpers, and one tiny end-to-end run on a synthetic stack."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emgan_monai.data.drosophila import make_synthetic_stack

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "ablation_discriminators.py"


def _module():
    spec = importlib.util.spec_from_file_location("ablation_discriminators", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_convergence_helpers():
    abl = _module()
    # higher is better: first epoch reaching 90 % of the maximum
    assert abl.epochs_to_fraction_of_best([2, 4, 6, 8], [0.1, 0.5, 0.92, 1.0]) == 6
    assert abl.epochs_to_fraction_of_best([2, 4], [float("nan"), float("nan")]) is None
    # lower is better: 90 % of the way from the first value (10) to the best (0) means <= 1
    assert abl.epochs_to_fraction_of_improvement([1, 2, 3, 4], [10.0, 5.0, 0.9, 0.0]) == 3
    assert abl.epochs_to_fraction_of_improvement([1, 2], [3.0, 3.0]) == 1


def test_mask_diversity():
    abl = _module()
    same = torch.nn.functional.one_hot(torch.zeros(3, 8, 8, dtype=torch.long), 3).movedim(-1, 1).float()
    assert abl.mask_diversity(same) == 0.0
    a = torch.zeros(2, 8, 8, dtype=torch.long)
    a[1] = 1
    two = torch.nn.functional.one_hot(a, 3).movedim(-1, 1).float()
    assert abl.mask_diversity(two) == 1.0
    with pytest.raises(ValueError, match="N >= 2"):
        abl.mask_diversity(same[:1])


def test_morphology_distance_is_zero_for_identical_sets():
    from emgan_monai.metrics.morphology import compare_morphology, mask_morphology

    abl = _module()
    rng = np.random.default_rng(0)
    stats = [mask_morphology(rng.integers(0, 3, (32, 32))) for _ in range(4)]
    assert abl.morphology_distance(compare_morphology(stats, stats)) == pytest.approx(0.0, abs=1e-12)
    other = [mask_morphology(np.full((32, 32), 2)) for _ in range(4)]
    assert abl.morphology_distance(compare_morphology(stats, other)) > 0


def test_cli_rejects_bad_resolution():
    abl = _module()
    with pytest.raises(SystemExit):
        abl.parse_args(["--dataset_dir", "x", "--output_dir", "y", "--resolution", "48"])


def test_ablation_end_to_end(tmp_path):
    data = tmp_path / "data"
    make_synthetic_stack(data / "stack1", n_sections=6, size=64, seed=1)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(out),
        "--work_dir",
        str(tmp_path / "work"),
        "--resolution",
        "64",
        "--epochs_mask",
        "2",
        "--epochs_em",
        "2",
        "--eval_every",
        "1",
        "--n_train",
        "4",
        "--n_val",
        "2",
        "--num_generated",
        "4",
        "--eval_samples",
        "3",
        "--segmenter_steps",
        "3",
        "--discriminator_channels",
        "8",
        "--kinds",
        "skip_patch",
        "patch16",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["kinds"]) == ["skip_patch", "patch16"]
    for kind, res in result["kinds"].items():
        # one curve point per epoch for both stages
        assert [r["epoch"] for r in res["stage1"]["curve"]] == [1, 2]
        assert [r["epoch"] for r in res["stage2"]["curve"]] == [1, 2]
        for row in res["stage2"]["curve"]:
            assert {"val_ssim", "val_psnr", "val_mse"} <= set(row) and math.isfinite(row["val_ssim"])
        for row in res["stage1"]["curve"]:
            assert {
                "hole_fraction",
                "n_mitochondria",
                "mito_area_wasserstein",
                "membrane_components",
                "morphology_distance",
                "diversity",
            } <= set(row)
        # convergence figures follow from the curves (recomputed here, not by the script's helpers)
        ssim = [r["val_ssim"] for r in res["stage2"]["curve"]]
        dist = [r["morphology_distance"] for r in res["stage1"]["curve"]]
        assert all(math.isfinite(v) for v in ssim + dist), (ssim, dist)
        conv = res["convergence"]
        assert conv["stage2_best_val_ssim"] == pytest.approx(max(ssim))
        first_90 = next(e for e, v in enumerate(ssim, 1) if v >= 0.9 * max(ssim))
        assert conv["stage2_epochs_to_90pct_best_ssim"] == first_90
        assert conv["stage1_best_morphology_distance"] == pytest.approx(min(dist))
        target = min(dist) + 0.1 * (dist[0] - min(dist))
        assert conv["stage1_epochs_to_90pct_improvement"] == next(e for e, v in enumerate(dist, 1) if v <= target)
        final = res["final"]
        assert math.isfinite(final["stage2_quality_heldout"]["ssim"])
        assert "dice_generated_from_generated_masks" in final["stage2_fcn_score"]
        assert (out / f"masks_{kind}.png").is_file() and (out / f"pca_masks_{kind}.png").is_file()
    table = (out / "ablation.md").read_text()
    assert "| metric | better | skip_patch | patch16 |" in table
    assert "epochs to 90 % of the best val SSIM" in table
    for png in ("curves_stage1.png", "curves_stage2.png"):
        assert (out / png).stat().st_size > 1000
    # no checkpoints among the outputs
    assert not list(out.rglob("*.pt"))
    # a second run refuses to replace the results
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "already exists" in again.stderr


def _stage1_row(it: int, n_mito: float, comps: float, met: dict) -> dict:
    pair = lambda real, fake: {"real": real, "fake": fake}  # noqa: E731
    return {
        "checkpoint": f"checkpoint_epoch={it // 50}.pt",
        "iteration": it,
        "n_mitochondria": pair(19.2, n_mito),
        "pooled_mito_area": pair(186.0, 190.0),
        "membrane_fraction": pair(0.21, 0.2),
        "membrane_components": pair(6.25, comps),
        "hole_fraction": pair(0.03, 0.0),
        "n_mitochondria_std": pair(2.4, 2.0),
        "spectral_peak": {"real": 11.5, "fake": 20.0, "real_max": 14.0, "fake_max": 30.0},
        "autocorr_peak": {"real": 0.15, "fake": 0.15, "real_max": 0.26, "fake_max": 0.28},
        "pixel_disagreement": 0.4,
        "targets": met,
    }


def test_stage1_ablation_summary_reads_first_iterations_and_cuts_at_max_iteration():
    spec = importlib.util.spec_from_file_location("stage1_ablation", REPO / "scripts" / "drosophila_stage1_ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [
        _stage1_row(200, 40.0, 50.0, {"mito": False, "comps": False}),
        _stage1_row(400, 20.0, 30.0, {"mito": True, "comps": False}),
        _stage1_row(600, 21.0, 10.0, {"mito": True, "comps": True}),
    ]
    full = mod.summarise(rows, None)
    assert full["first_iteration_target_met"] == {"mito": 400, "comps": 600}
    assert full["targets_met"] == [(200, 0), (400, 1), (600, 2)]
    assert full["most_targets_met"] == 2 and full["first_iteration_most_targets"] == 600
    assert full["last"]["n_mitochondria"] == {"real": 19.2, "fake": 21.0}
    cut = mod.summarise(rows, 400)  # the runs are compared at the same iteration
    assert cut["first_iteration_target_met"] == {"mito": 400, "comps": None} and cut["last"]["iteration"] == 400
    with pytest.raises(ValueError, match="max_iteration"):
        mod.summarise(rows, 100)
    table = mod.markdown({"max_iteration": 400, "kinds": {"skip_patch": cut, "patch16": full}})
    assert "| comps | never | 600 |" in table and "| mitochondria per image | 19.2 | 20 | 21 |" in table
    assert "orientation" not in table  # rows of curves written before the orientation metric
    # a second training phase alone: rows from --min_iteration on
    late = mod.summarise(rows, None, 400)
    assert late["iterations"] == [400, 600] and late["first_iteration_target_met"] == {"mito": 400, "comps": 600}
    with pytest.raises(ValueError, match="min_iteration"):
        mod.summarise(rows, 300, 400)
    rows = [
        {**r, "orientation_coherence": {"real": 0.06, "fake": 0.03, "real_max": 0.08, "fake_max": 0.05}} for r in rows
    ]
    assert "| membrane orientation coherence | 0.06 | 0.03 |" in mod.markdown(
        {"kinds": {"skip_patch": mod.summarise(rows, None)}}
    )
