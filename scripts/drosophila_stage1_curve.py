#!/usr/bin/env python
"""Stage-1 metrics of the ``drosophila_skip_patch`` mask generator against wall time, from a run's checkpoints.

For every ``checkpoint_*.pt`` written by ``configs/train_mask.json`` (full checkpoints: generator, EMA, discriminator,
optimisers, trainer) the EMA generator is loaded, ``--num_samples`` masks of ``--resolution`` px are generated with a
fixed seed and compared with the real masks of all sections at the same size (mask pipeline of the config:
area downsampling + argmax): mitochondria per image, mean area, membrane fraction, skeleton components, hole
fraction, sd of the mitochondria count, strongest spectral peak and autocorrelation. The wall time of a checkpoint is
its file time minus the creation time of the run's TensorBoard event file.

Writes ``curve.json`` and ``curve.png`` into ``--output_dir``. Example::

    OMP_NUM_THREADS=1 python scripts/drosophila_stage1_curve.py \
        --run_dir bundles/drosophila_skip_patch/runs/stage1_mask --output_dir bundles/drosophila_skip_patch/docs/stage1
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"

#: (key in the morphology table, label, target rule)
STATS = [
    ("n_mitochondria", "mitochondria per image"),
    ("mean_mito_area", "mean mitochondrion area (px)"),
    ("membrane_fraction", "membrane fraction"),
    ("membrane_components", "membrane skeleton components"),
    ("hole_fraction", "fraction of mitochondria with holes"),
]


def stage1_metrics(net: torch.nn.Module, real: torch.Tensor, num_samples: int, resolution: int, seed: int) -> dict:
    from emgan_monai.data.drosophila_synthesis import default_latent_shape, generate
    from emgan_monai.evaluation.drosophila import evaluate_stage1
    from emgan_monai.metrics.mask_structure import PERIODICITY_KEYS

    fake, _ = generate(net, None, num_samples, default_latent_shape(net, resolution), seed=seed)
    table = evaluate_stage1(real, fake)
    out = {k: {"real": table[k]["real"], "fake": table[k]["fake"]} for k, _ in STATS}
    out["n_mitochondria_std"] = {
        "real": table["n_mitochondria"]["real_std"],
        "fake": table["n_mitochondria"]["fake_std"],
    }
    out["pooled_mito_area"] = {"real": table["mito_area"]["real_mean"], "fake": table["mito_area"]["fake_mean"]}
    for key in PERIODICITY_KEYS:
        out[key] = {
            "real": table["periodicity"][key]["real"],
            "fake": table["periodicity"][key]["fake"],
            "real_max": table["periodicity"][key]["real_max"],
            "fake_max": table["periodicity"][key]["fake_max"],
        }
    out["pixel_disagreement"] = table["periodicity"]["diversity"]["pixel_disagreement"]
    return out


def targets_met(row: dict) -> dict[str, bool]:
    """The "Done when" criteria of issue 11 for one row of metrics (generated vs real)."""

    def within(key: str, rel: float) -> bool:
        real, fake = row[key]["real"], row[key]["fake"]
        return bool(np.isfinite(fake) and abs(fake - real) <= rel * abs(real))

    comp_r, comp_f = row["membrane_components"]["real"], row["membrane_components"]["fake"]
    return {
        "mitochondria_per_image_20pct": within("n_mitochondria", 0.2),
        "mean_mito_area_20pct": within("pooled_mito_area", 0.2),
        "membrane_fraction_20pct": within("membrane_fraction", 0.2),
        "skeleton_components_2x": bool(comp_f > 0 and comp_r / 2 <= comp_f <= 2 * comp_r),
        "holes_under_5pct": bool(row["hole_fraction"]["fake"] < 0.05),
        "count_sd_at_least_half_real": bool(
            row["n_mitochondria_std"]["fake"] >= 0.5 * row["n_mitochondria_std"]["real"]
        ),
        "no_spectral_peak_above_real": bool(row["spectral_peak"]["fake_max"] <= row["spectral_peak"]["real_max"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run_dir", required=True, help="output_dir of the training run (holds checkpoints/)")
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--config", default=str(BUNDLE / "configs" / "train_mask.json"))
    ap.add_argument("--dataset_dir", default=None)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--num_samples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="use every n-th checkpoint")
    ap.add_argument(
        "--reuse", action="store_true", help="keep the rows of checkpoints already in <output_dir>/curve.json"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="config override the run was trained with, e.g. --set noise_blocks=3 (repeatable)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)

    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from emgan_monai.bundle_utils import config_files
    from emgan_monai.data.drosophila import drosophila_datalist, load_sections
    from emgan_monai.handlers.ema import load_ema_generator

    run = Path(args.run_dir)
    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, args.config))
    parser["section_size"] = args.resolution
    for item in args.set:
        key, _, value = item.partition("=")
        parser[key] = json.loads(value)
    if args.dataset_dir:
        parser["dataset_dir"] = args.dataset_dir
    mask_tf = Compose(parser.get_parsed_content("mask_preprocessing"))
    datalist = drosophila_datalist(Path(parser.get_parsed_content("dataset_dir")) / parser["stack"])
    real, _ = load_sections(datalist, args.resolution, mask_transform=mask_tf)

    events = sorted(run.glob("events.out.tfevents.*"))
    t0 = float(events[0].name.split(".")[3]) if events else None

    def number(p: Path) -> int:
        m = re.search(r"=(\d+)", p.name)
        return int(m.group(1)) if m else 10**9

    ckpts = sorted((run / "checkpoints").glob("checkpoint_*.pt"), key=number)[:: max(1, args.every)]
    config = parser.get()
    rows = []
    old = {}
    if args.reuse and (Path(args.output_dir) / "curve.json").is_file():
        prev = json.loads((Path(args.output_dir) / "curve.json").read_text())
        if prev.get("num_samples") == args.num_samples and prev.get("resolution") == args.resolution:
            old = {r["checkpoint"]: r for r in prev["rows"]}
    for ck in ckpts:
        if ck.name in old and not ck.name.endswith("final.pt"):
            rows.append(old[ck.name])
            continue
        state = torch.load(ck, map_location="cpu", weights_only=True)
        it = int(state["trainer"]["iteration"]) if "trainer" in state else None
        net = load_ema_generator(config, ck)
        row = {
            "checkpoint": ck.name,
            "iteration": it,
            "wall_s": (ck.stat().st_mtime - t0) if t0 else None,
            **stage1_metrics(net, real, args.num_samples, args.resolution, args.seed),
        }
        rows.append(row)
        print(
            json.dumps({k: row[k] for k in ("checkpoint", "iteration", "wall_s")}),
            {k: round(row[k]["fake"], 3) for k, _ in STATS},
            flush=True,
        )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for row in rows:
        row["targets"] = targets_met(row)
    first = (
        {
            name: next(
                (
                    {"checkpoint": r["checkpoint"], "iteration": r["iteration"], "wall_s": r["wall_s"]}
                    for r in rows
                    if r["targets"][name]
                ),
                None,
            )
            for name in rows[0]["targets"]
        }
        if rows
        else {}
    )
    with open(out / "curve.json", "w", encoding="utf-8") as f:
        json.dump(
            {
                "run_dir": str(run),
                "resolution": args.resolution,
                "num_samples": args.num_samples,
                "seed": args.seed,
                "first_time_target_met": first,
                "rows": rows,
            },
            f,
            indent=2,
        )
    print(json.dumps(first, indent=1))
    _plot(rows, out / "curve.png")


def _plot(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = [k for k, _ in STATS] + ["n_mitochondria_std", "spectral_peak", "orientation_coherence"]
    keys = [k for k in keys if k in rows[0]]  # curve.json rows of an earlier version lack orientation_coherence
    labels = dict(STATS) | {
        "n_mitochondria_std": "sd of mitochondria per image",
        "spectral_peak": "spectral peak",
        "orientation_coherence": "membrane orientation coherence",
    }
    fig = Figure(figsize=(12, 6), dpi=100)
    FigureCanvasAgg(fig)
    x = np.array([(r["wall_s"] or 0) / 60 for r in rows])
    for i, k in enumerate(keys):
        ax = fig.add_subplot(2, 4, i + 1)
        ax.plot(x, [r[k]["fake"] for r in rows], "o-", label="generated")
        ax.axhline(rows[0][k]["real"], color="k", ls="--", label="real")
        ax.set_title(labels[k], fontsize=9)
        ax.set_xlabel("wall time (min, 1 CPU thread)", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
