"""Metric versus wall time of a cryoet_gan training run, from its weight snapshots.

``train.json`` saves the (EMA) D -> S generator every ``snapshot_interval`` iterations to
``<output_dir>/snapshots/g_ds_<iteration>.pt`` with the wall time in ``snapshots.csv``
(:class:`emgan_monai.handlers.WallTimeSnapshots`). This script evaluates every snapshot with
the steps of ``evaluate.json`` (:mod:`emgan_monai.evaluation.cryoet`: same baselines, same classifier, same normalisation)
and writes ``curve.csv`` and ``curve.md`` (iteration, wall time, accuracy +- SE, Frechet distance, coverage, classes
predicted, std ratio) plus the full ``metrics.json`` to ``--out``. The curve is a record, not a selection rule:
the shipped weights are the run's final EMA weights.

Example::

    OMP_NUM_THREADS=1 python scripts/cryoet_snapshot_curve.py bundles/cryoet_gan/runs/physics --kind physics \\
        --out bundles/cryoet_gan/eval/curve_physics
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emgan_monai.bundle_utils import data_dir  # noqa: E402
from emgan_monai.data.cryoet_domains import load_deepfinder_domains  # noqa: E402
from emgan_monai.evaluation import cryoet as ev  # noqa: E402
from emgan_monai.networks import SubtomogramClassifier, build_subtomogram_generator  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--kind", default="physics", choices=["physics", "physics_residual", "cyclegan"])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dataset_dir", default=None)
    ap.add_argument("--classifier", type=Path, default=REPO / "bundles" / "cryoet_gan" / "models" / "classifier.pt")
    ap.add_argument("--every", type=int, default=1, help="use every n-th snapshot")
    ap.add_argument("--n_samples", type=int, default=8)
    ap.add_argument("--generator_kwargs", default="{}", help="JSON, e.g. '{\"refine_channels\": 16}'")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    kwargs = {
        "box": 16,
        "voxel_size": 20.0,
        "refine_channels": 0,
        "channels": 8,
        "n_res_blocks": 6,
        "noise_channels": 1,
        "decoder_noise": True,
        "input_noise_std": 0.2,
        "dropout": 0.1,
        **json.loads(args.generator_kwargs),
    }
    rows = list(csv.DictReader((args.run_dir / "snapshots" / "snapshots.csv").open()))[:: args.every]
    gens = {}
    for r in rows:
        net = build_subtomogram_generator(args.kind, **kwargs)
        net.load_state_dict(torch.load(args.run_dir / "snapshots" / r["file"], map_location="cpu", weights_only=True))
        gens[f"it{int(r['iteration']):07d}"] = net
    clf = SubtomogramClassifier(3, 1, 9, channels=(16, 32, 64), strides=(2, 2, 2), norm="BATCH")
    clf.load_state_dict(torch.load(args.classifier, map_location="cpu", weights_only=True))
    root, geometry, voxel_size = args.dataset_dir or data_dir("cryoet"), {"box": 16, "sigma": 0.5, "binning": 2}, 20.0
    train = load_deepfinder_domains(root, [1, 2, 3, 4], **geometry)
    test = load_deepfinder_domains(root, [5, 6], **geometry)
    baselines = ev.calibrate_baselines(train, voxel_size)
    sets = {
        **ev.baseline_sets(test, baselines, args.n_samples, voxel_size),
        **ev.generator_sets(test, gens, args.n_samples),
    }
    setting = {
        "train_tomograms": [1, 2, 3, 4],
        "test_tomograms": [5, 6],
        "n_samples_per_map": args.n_samples,
        "box": 16,
        "binning": 2,
        "voxel_size_A": voxel_size,
        "prdc_k": 5,
        "seed": 0,
    }
    metrics = ev.metrics_table(ev.score_sets(clf, train, test, sets), setting, train, baselines, gens)
    ev.write_report(metrics, test, sets, train, args.out, overwrite=True)
    keys = [
        "accuracy",
        "accuracy_se",
        "accuracy_se_by_map",
        "frechet_distance",
        "coverage",
        "classes_predicted",
        "std_ratio",
    ]
    with (args.out / "curve.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["iteration", "wall_s", *keys])
        for r in rows:
            m = metrics[f"it{int(r['iteration']):07d}"]
            w.writerow([r["iteration"], r["wall_s"], *[m[k] for k in keys]])
    ref = {k: metrics[k] for k in ("real_heldout", "traditional_simulation", "traditional_simulation_wedge_noise")}
    lines = [
        "| iteration | wall time (s) | accuracy +- SE (by map) | Frechet distance | coverage | classes | std ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = metrics[f"it{int(r['iteration']):07d}"]
        lines.append(
            f"| {r['iteration']} | {float(r['wall_s']):.0f} | {100 * m['accuracy']:.1f} % +- "
            f"{100 * m['accuracy_se']:.1f} ({100 * m['accuracy_se_by_map']:.1f}) | "
            f"{m['frechet_distance']:.1f} | {m['coverage']:.3f} | {m['classes_predicted']} | "
            f"{m['std_ratio']:.2f} |"
        )
    for name, m in ref.items():
        fd = f"{m['frechet_distance']:.1f}" if "frechet_distance" in m else "--"
        cov = f"{m['coverage']:.3f}" if "coverage" in m else "--"
        lines.append(
            f"| {name} (reference) | -- | {100 * m['accuracy']:.1f} % +- {100 * m['accuracy_se']:.1f} "
            f"({100 * m['accuracy_se_by_map']:.1f}) | {fd} | {cov} | {m['classes_predicted']} | "
            f"{m['std_ratio']:.2f} |"
        )
    (args.out / "curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return metrics


if __name__ == "__main__":
    main()
