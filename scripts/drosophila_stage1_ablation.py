#!/usr/bin/env python
"""Stage-1 discriminator ablation of ``drosophila_skip_patch`` from runs of ``train_mask.json`` that differ only in
``--discriminator_kind`` (same seed, data, recipe and iterations).

Input: one ``curve.json`` per kind, written by ``scripts/drosophila_stage1_curve.py`` on that run's checkpoints (EMA
generator, fixed seed, morphology, periodicity and diversity against the real masks), and the run folders for the
sample grids. Output in ``--output_dir``: ``ablation_stage1.json`` (per kind: first iteration at which each target of
issue 11 holds, number of targets met per checkpoint, the last checkpoint's statistics), ``ablation_stage1.md`` (the
tables), ``curves_stage1.png`` (every statistic against iterations, one line per kind, real as a dashed line) and
``masks_<kind>.png`` (8 samples of each kind's last checkpoint).

The paper's two claims are read off the same numbers: *no holes / no repeated shapes* (fraction of mitochondria with
holes; pixel disagreement between samples, strongest spectral peak and autocorrelation of each sample) and *about
half the epochs to converge* (iterations until each target first holds, and until the most targets hold).

Example (runs made with ``--discriminator_kind patch16`` / ``patch70`` beside the skip-patch run)::

    OMP_NUM_THREADS=1 python scripts/drosophila_stage1_ablation.py --output_dir bundles/drosophila_skip_patch/docs/ablation \\
        --kind skip_patch=runs/s1_A:runs/curve_A --kind patch16=runs/s1_p16:runs/curve_p16 \\
        --kind patch70=runs/s1_p70:runs/curve_p70 --max_iteration 3000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"

#: (row key, label) of the plotted statistics (``"fake"`` values of the curve rows)
PLOTTED = [
    ("n_mitochondria", "mitochondria per image"),
    ("pooled_mito_area", "mean mitochondrion area (px)"),
    ("membrane_fraction", "membrane fraction"),
    ("membrane_components", "membrane skeleton components"),
    ("hole_fraction", "mitochondria with holes"),
    ("n_mitochondria_std", "sd of mitochondria per image"),
    ("spectral_peak", "strongest spectral peak"),
    ("pixel_disagreement", "pixel disagreement between samples"),
    ("orientation_coherence", "membrane orientation coherence"),
]


def _value(row: dict, key: str, side: str = "fake") -> float:
    v = row[key]
    return float(v[side] if isinstance(v, dict) else v)


def _window(rows: list[dict], max_iteration: int | None, min_iteration: int | None = None) -> list[dict]:
    """The rows with ``min_iteration <= iteration <= max_iteration`` (either bound may be ``None``)."""
    return [
        r
        for r in rows
        if (max_iteration is None or (r["iteration"] or 0) <= max_iteration)
        and (min_iteration is None or (r["iteration"] or 0) >= min_iteration)
    ]


def _plotted(rows: list[dict]) -> list[tuple[str, str]]:
    """The :data:`PLOTTED` statistics that ``rows`` hold (curves of earlier versions lack the orientation)."""
    return [(k, label) for k, label in PLOTTED if all(k in r for r in rows)]


def summarise(rows: list[dict], max_iteration: int | None, min_iteration: int | None = None) -> dict:
    """First iteration (at or after ``min_iteration``) at which each target holds, targets met per checkpoint, and the
    last row's statistics (at or before ``max_iteration``)."""
    rows = _window(rows, max_iteration, min_iteration)
    if not rows:
        raise ValueError("no checkpoint between --min_iteration and --max_iteration")
    names = list(rows[0]["targets"])
    first = {n: next((r["iteration"] for r in rows if r["targets"][n]), None) for n in names}
    met = [(r["iteration"], int(sum(r["targets"].values()))) for r in rows]
    best = max(m for _, m in met)
    last = rows[-1]
    return {
        "iterations": [r["iteration"] for r in rows],
        "first_iteration_target_met": first,
        "targets_met": met,
        "most_targets_met": best,
        "first_iteration_most_targets": next(it for it, m in met if m == best),
        "last": {
            "checkpoint": last["checkpoint"],
            "iteration": last["iteration"],
            **{
                k: {"real": _value(last, k, "real") if isinstance(last[k], dict) else None, "fake": _value(last, k)}
                for k, _ in _plotted([last])
            },
            "autocorr_peak_max": last["autocorr_peak"]["fake_max"],
            "spectral_peak_max": last["spectral_peak"]["fake_max"],
            "targets": last["targets"],
        },
    }


def plot(
    curves: dict[str, list[dict]], path: Path, max_iteration: int | None, min_iteration: int | None = None
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(14, 9.5), dpi=100)
    FigureCanvasAgg(fig)
    for i, (key, label) in enumerate(_plotted([r for rows in curves.values() for r in rows])):
        ax = fig.add_subplot(3, 3, i + 1)
        for kind, rows in curves.items():
            rows = _window(rows, max_iteration, min_iteration)
            ax.plot([r["iteration"] for r in rows], [_value(r, key) for r in rows], "o-", ms=3, label=kind)
        ref = next(iter(curves.values()))[0][key]
        if isinstance(ref, dict) and "real" in ref:
            ax.axhline(ref["real"], color="k", ls="--", lw=1, label="real")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration (batch 8)", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def sample_grid(config: dict, checkpoint: Path, path: Path, n: int = 8) -> None:
    """``n`` samples (256 px, seed 0) of the EMA generator of ``checkpoint`` as a mask montage at ``path``."""
    from emgan_monai.data.drosophila_synthesis import default_latent_shape, generate
    from emgan_monai.handlers.ema import load_ema_generator
    from emgan_monai.io import write_image
    from emgan_monai.visualize import montage, onehot_to_rgb

    net = load_ema_generator(config, checkpoint)
    masks, _ = generate(net, None, n, default_latent_shape(net, 256), seed=0)
    write_image(path, montage([onehot_to_rgb(m.numpy()) for m in masks], ncols=4), overwrite=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--kind",
        action="append",
        required=True,
        help="KIND=RUN_DIR:CURVE_DIR (the run's output_dir and the folder of its curve.json); repeat",
    )
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--config", default=str(BUNDLE / "configs" / "train_mask.json"))
    ap.add_argument("--max_iteration", type=int, default=None, help="compare the runs up to this iteration")
    ap.add_argument(
        "--min_iteration",
        type=int,
        default=None,
        help="and from this iteration on (e.g. the start of a second training phase)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    from monai.bundle import ConfigParser

    from emgan_monai.bundle_utils import config_files

    config = ConfigParser.load_config_files(config_files(BUNDLE, args.config))
    curves, runs = {}, {}
    for spec in args.kind:
        kind, _, dirs = spec.partition("=")
        run_dir, _, curve_dir = dirs.partition(":")
        if not kind or not run_dir or not curve_dir:
            raise SystemExit(f"--kind {spec!r}: expected KIND=RUN_DIR:CURVE_DIR")
        curves[kind] = json.loads((Path(curve_dir) / "curve.json").read_text())["rows"]
        runs[kind] = Path(run_dir)
    result = {"max_iteration": args.max_iteration, "min_iteration": args.min_iteration, "kinds": {}}
    for kind, rows in curves.items():
        summary = result["kinds"][kind] = summarise(rows, args.max_iteration, args.min_iteration)
        summary["samples"] = summary["last"]["checkpoint"]  # the last checkpoint compared
        sample_grid(config, runs[kind] / "checkpoints" / summary["samples"], out / f"masks_{kind}.png")
    plot(curves, out / "curves_stage1.png", args.max_iteration, args.min_iteration)
    (out / "ablation_stage1.json").write_text(json.dumps(result, indent=2))
    (out / "ablation_stage1.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    kinds = list(result["kinds"])
    lines = ["| statistic (last checkpoint) | real | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    first = result["kinds"][kinds[0]]["last"]
    for key, label in PLOTTED:
        if key not in first:
            continue
        real = first[key]["real"]
        lines.append(
            f"| {label} | {'' if real is None else f'{real:.3g}'} | "
            + " | ".join(f"{result['kinds'][k]['last'][key]['fake']:.3g}" for k in kinds)
            + " |"
        )
    lines.append(
        "| strongest spectral peak, max over samples | | "
        + " | ".join(f"{result['kinds'][k]['last']['spectral_peak_max']:.3g}" for k in kinds)
        + " |"
    )
    lines.append(
        "| autocorrelation peak, max over samples | | "
        + " | ".join(f"{result['kinds'][k]['last']['autocorr_peak_max']:.3g}" for k in kinds)
        + " |"
    )
    lines += ["", "| target: first iteration met | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for name in result["kinds"][kinds[0]]["first_iteration_target_met"]:
        lines.append(
            f"| {name} | "
            + " | ".join(str(result["kinds"][k]["first_iteration_target_met"][name] or "never") for k in kinds)
            + " |"
        )
    lines.append(
        "| most targets met (of 7), first at iteration | "
        + " | ".join(
            f"{result['kinds'][k]['most_targets_met']} at {result['kinds'][k]['first_iteration_most_targets']}"
            for k in kinds
        )
        + " |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
