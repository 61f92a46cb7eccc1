#!/usr/bin/env python
"""Stage-2 texture realism and structure of the ``drosophila_skip_patch`` mask -> EM generator against wall time.

For every ``checkpoint_*.pt`` of a ``configs/train.json`` run (full checkpoints: generator, EMA, discriminator,
optimisers, trainer) the EMA generator draws ``--n_draws`` EM images from each held-out mask (area + argmax masks,
as in ``evaluate.json``) and is scored against the real held-out sections:

- texture Frechet distance of 128-px tile features (:func:`emgan_monai.evaluation.drosophila.evaluate_texture`,
  the table of ``evaluate.json``), with its same-run reference points (real training sections, blurred and noisy
  real sections, naively painted masks);
- high-frequency power relative to the real held-out sections;
- FCN Dice of a segmenter trained once on the real training sections (generated vs real held-out EM);
- the relief shading of draw 0 (:func:`emgan_monai.metrics.relief.membrane_relief`: signed grey-level step across
  the membranes along x and y, 0 for real sections) and the direction of its fine grain
  (:func:`emgan_monai.metrics.texture.grain_anisotropy`, about 0 for real sections); the spectral peaks of a hatch
  locked to the generator's pixel grid, over all draws (:func:`emgan_monai.metrics.texture.grid_peaks`); the swing of
  the grey level with the distance from the membranes, 4-16 px inside the cells, over all draws (concentric ripples:
  :func:`emgan_monai.metrics.relief.distance_profile`); the power of the finest diagonal grain beyond 0.5 cycles / px
  (:func:`emgan_monai.metrics.texture.corner_power`); how much two draws differ at 1-3 px, the scale of vesicles
  (mean absolute band-pass difference of draws 0 and 1, against the band's amplitude in the real held-out sections);
- with ``--c2st_seeds N`` (N > 0): the headline judge of ``evaluate.json``, its ``generated_from_heldout_masks`` row
  (a classifier two-sample test on 64-px patches: ``N`` judges of ``--c2st_steps`` steps trained on sections 0-15
  against the first half of the draws, tested on sections 16-19 against the other half; 0.5 = indistinguishable).

The wall time of a checkpoint is its file time minus the creation time of the run's TensorBoard event file.
Writes ``curve.json`` and ``curve.png`` into ``--output_dir``. Example::

    OMP_NUM_THREADS=1 python scripts/drosophila_stage2_curve.py --run_dir runs/stage2 \
        --output_dir bundles/drosophila_skip_patch/docs/stage2
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run_dir", required=True, help="output_dir of the training run (holds checkpoints/)")
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--config", default=str(BUNDLE / "configs" / "train.json"))
    ap.add_argument(
        "--eval_config",
        default=str(BUNDLE / "configs" / "train_mask.json"),
        help="config whose mask_preprocessing gives the real masks (default train_mask.json, as evaluate.json)",
    )
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument(
        "--em_antialias",
        choices=("true", "false"),
        default=None,
        help="the run's em_antialias (default: the config's; false for runs before 0.12.0)",
    )
    ap.add_argument(
        "--em_border_pad", type=int, default=None, help="reflection pad (default: the config's; 16 in inference)"
    )
    ap.add_argument("--n_draws", type=int, default=2)
    ap.add_argument("--segmenter_steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="use every n-th checkpoint")
    ap.add_argument("--epochs", type=int, nargs="*", default=None, help="only the checkpoints of these epochs")
    ap.add_argument("--c2st_seeds", type=int, default=0, help="judges of the two-sample test per checkpoint (0: off)")
    ap.add_argument("--c2st_steps", type=int, default=400)
    ap.add_argument("--c2st_patch", type=int, default=64, help="patch side the judge sees (px)")
    ap.add_argument("--c2st_channels", type=int, nargs="+", default=[16, 32, 64], help="widths of the judge")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from _drosophila_sections import heldout_split

    from emgan_monai.evaluation.drosophila import evaluate_texture, heldout_draws_set, stage2_draws
    from emgan_monai.handlers.ema import load_ema_generator
    from emgan_monai.losses.diversity import DiversityLoss
    from emgan_monai.metrics.fcn_score import segmentation_dice, train_segmenter
    from emgan_monai.metrics.relief import distance_profile, membrane_relief
    from emgan_monai.metrics.texture import corner_power, grain_anisotropy, grid_peaks
    from emgan_monai.metrics.two_sample import two_sample_table

    parser, (tr_masks, tr_em), (va_masks, va_em) = heldout_split(args.config, args.eval_config, args.resolution)

    segmenter = train_segmenter(
        tr_em, tr_masks, steps=args.segmenter_steps, seed=args.seed, patch_size=min(128, args.resolution)
    )
    roi = min(128, args.resolution)
    dice_real = segmentation_dice(segmenter, va_em, va_masks, roi_size=roi)["mean"]
    references: dict = {}
    band = DiversityLoss(sigma=3.0, fine_sigma=1.0)  # 1-3 px: the scale of vesicles and cristae

    run = Path(args.run_dir)
    events = sorted(run.glob("events.out.tfevents.*"))
    t0 = float(events[0].name.split(".")[3]) if events else None

    def number(p: Path) -> int:
        m = re.search(r"=(\d+)", p.name)
        return int(m.group(1)) if m else 10**9

    # not stored in the checkpoints (no parameters of their own): the config's unless given
    if args.em_antialias is not None:
        parser["em_antialias"] = args.em_antialias == "true"
    if args.em_border_pad is not None:
        parser["em_border_pad"] = args.em_border_pad
    config = parser.get()
    rows = []
    checkpoints = sorted((run / "checkpoints").glob("checkpoint_*.pt"), key=number)[:: max(1, args.every)]
    if args.epochs:
        checkpoints = [ck for ck in checkpoints if number(ck) in set(args.epochs)]
    for ck in checkpoints:
        state = torch.load(ck, map_location="cpu", weights_only=True)
        net = load_ema_generator(config, ck, recalibrate=False)
        fake = stage2_draws(net, va_masks, args.n_draws, seed=args.seed)  # (D, N, 1, H, W)
        tex = evaluate_texture(tr_masks, tr_em, va_masks, va_em, fake)
        if not references:
            references = {k: v["texture_frechet"] for k, v in tex["sets"].items() if not k.startswith("generated")}
            references["relief_real_heldout"] = membrane_relief(va_em, va_masks)
            references["grain_anisotropy_real_heldout"] = grain_anisotropy(va_em)
            references["grid_peaks_real_heldout"] = grid_peaks(va_em, period=net.size_multiple)
            references["ripple_real_heldout"] = distance_profile(va_em, va_masks)["ripple"]
            references["corner_power_real_heldout"] = corner_power(va_em)
            references["band_amplitude_real_heldout"] = float(band.difference(va_em, torch.zeros_like(va_em)))
            print(json.dumps({"references": references, "dice_real_heldout": dice_real}), flush=True)
        dist = tex["sets"]["generated_from_heldout_masks"]["texture_frechet"]
        row = {
            "checkpoint": ck.name,
            "iteration": int(state["trainer"]["iteration"]) if "trainer" in state else None,
            "wall_s": (ck.stat().st_mtime - t0) if t0 else None,
            "texture_frechet": dist,
            "vs_real_train": dist / references["real_train"],
            "vs_painted": dist / references["painted_masks"],
            "hf_power_ratio": tex["sets"]["generated_from_heldout_masks"]["hf_power_ratio"],
            "dice_mean": segmentation_dice(segmenter, fake[0], va_masks, roi_size=roi)["mean"],
            "draw_difference": tex["draw_diversity"] or 0.0,
            "relief": membrane_relief(fake[0], va_masks),
            "grain_anisotropy": grain_anisotropy(fake[0]),
            "grid_peaks": grid_peaks(fake.flatten(0, 1), period=net.size_multiple),
            "ripple": distance_profile(fake.flatten(0, 1), va_masks.repeat(fake.shape[0], 1, 1, 1))["ripple"],
            "corner_power": corner_power(fake.flatten(0, 1)),
            "band_draw_difference": float(band.difference(fake[0], fake[1])) if len(fake) > 1 else None,
        }
        if args.c2st_seeds > 0:
            judge = two_sample_table(
                {"g": heldout_draws_set(tr_em, va_em, fake)},
                patch=min(args.c2st_patch, args.resolution),
                steps=args.c2st_steps,
                seeds=args.c2st_seeds,
                channels=args.c2st_channels,
            )["rows"]["g"]
            row["c2st"], row["c2st_sd"], row["c2st_per_seed"] = (
                judge["accuracy"],
                judge["accuracy_sd"],
                judge["per_seed"],
            )
        row["targets"] = {
            "texture_within_3x_real": bool(row["vs_real_train"] <= 3.0),
            "texture_at_most_fifth_of_painting": bool(row["vs_painted"] <= 0.2),
            "dice_95pct_of_real": bool(row["dice_mean"] >= 0.95 * dice_real),
        }
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
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
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curve.json", "w", encoding="utf-8") as f:
        json.dump(
            {
                "run_dir": str(run),
                "resolution": args.resolution,
                "n_draws": args.n_draws,
                "seed": args.seed,
                "references": references,
                "dice_real_heldout": dice_real,
                "first_time_target_met": first,
                "rows": rows,
            },
            f,
            indent=2,
        )
    print(json.dumps(first, indent=1))
    if rows:
        _plot(rows, references, dice_real, out / "curve.png")


def _plot(rows: list[dict], references: dict, dice_real: float, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = [(r["wall_s"] or 0) / 60 for r in rows]
    judged = [r for r in rows if "c2st" in r]
    panels = 4 if judged else 3
    fig = Figure(figsize=(4 * panels, 3.6), dpi=100)
    ax = fig.add_subplot(1, panels, 1)
    ax.semilogy(t, [r["texture_frechet"] for r in rows], "o-", label="generated")
    ax.axhline(references["real_train"], color="g", ls="--", label="real train (reference)")
    ax.axhline(3 * references["real_train"], color="g", ls=":", label="target: 3x real")
    ax.axhline(references["painted_masks"], color="r", ls="--", label="painted masks")
    ax.set(xlabel="wall time (min)", title="texture Frechet vs real held-out")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, panels, 2)
    ax.plot(t, [r["hf_power_ratio"] for r in rows], "o-")
    ax.axhline(1.0, color="g", ls="--")
    ax.set(xlabel="wall time (min)", title="high-frequency power / real")
    ax = fig.add_subplot(1, panels, 3)
    ax.plot(t, [r["dice_mean"] for r in rows], "o-", label="generated")
    ax.axhline(dice_real, color="g", ls="--", label="real held-out")
    ax.axhline(0.95 * dice_real, color="g", ls=":", label="target: 95 % of real")
    ax.set(xlabel="wall time (min)", title="FCN Dice (mean of mito, membrane)")
    ax.legend(fontsize=7)
    if judged:
        ax = fig.add_subplot(1, panels, 4)
        tj = [(r["wall_s"] or 0) / 60 for r in judged]
        ax.errorbar(tj, [r["c2st"] for r in judged], yerr=[r["c2st_sd"] for r in judged], fmt="o-", label="generated")
        ax.axhline(0.5, color="g", ls="--", label="chance (real vs real)")
        ax.set(xlabel="wall time (min)", title="judge: two-sample accuracy", ylim=(0.4, 1.02))
        ax.legend(fontsize=7)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


if __name__ == "__main__":
    main()
