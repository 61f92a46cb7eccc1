#!/usr/bin/env python
"""Discriminator ablation of the ``drosophila_skip_patch`` bundle: ``skip_patch`` vs ``patch16`` vs ``patch70``.

For every discriminator kind both stages are trained with the same seed, data, resolution and number of epochs
through the bundle's own configs (``configs/train_mask.json`` for stage 1, ``configs/train.json`` for stage 2),
instantiated with :class:`monai.bundle.ConfigParser` and command-line style overrides, so the ablation runs exactly
the bundle's pipeline (transforms, networks, trainers, optimisers, LR schedule, validation). Only two observers are
added:

- stage 1 (noise -> mask): every ``--eval_every`` epochs ``--eval_samples`` masks are generated from a fixed noise
  batch and their morphology is compared with the real training masks
  (:func:`emgan_monai.metrics.morphology.compare_morphology`): fraction of mitochondria with holes, mitochondria per
  image, Wasserstein distance of the mitochondrion-area distributions, membrane skeleton components, and a single
  *morphology distance* (mean over all per-mask statistics of the Wasserstein distance between real and generated
  values divided by the real spread); plus the *diversity* of the generated masks (mean pairwise fraction of pixels
  whose label differs, next to the same number for the real masks: a collapse to repeated shapes lowers it);
- stage 2 (mask -> EM): the validation metrics (SSIM, PSNR, MSE on the held-out sections) that the config's
  ``SupervisedEvaluator`` computes every ``val_interval`` (= ``--eval_every``) epochs, read from
  ``evaluator.state.metrics``.

The final generators of each kind are then scored with :func:`emgan_monai.evaluation.drosophila.evaluate` (one
segmenter, trained once on the real training sections, is shared by all kinds so their FCN-scores and feature
distances are comparable).

Outputs in ``--output_dir`` (small files only; checkpoints and TensorBoard logs go to ``--work_dir``):
``ablation.json`` (settings, curves, final metrics, convergence), ``ablation.md`` (one table),
``curves_stage1.png``, ``curves_stage2.png``, ``masks_<kind>.png`` (generated masks), ``pca_masks_<kind>.png``
and ``heldout_<kind>.png`` (evaluation plots).

Example::

    OMP_NUM_THREADS=1 python scripts/ablation_discriminators.py --dataset_dir ../shared/data/drosophila_vnc \
        --output_dir bundles/drosophila_skip_patch/docs/ablation --resolution 128 --epochs_mask 30 --epochs_em 30
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "drosophila_skip_patch"
KINDS = ("skip_patch", "patch16", "patch70")
#: stage-1 statistics plotted and tabulated (keys of ``compare_morphology``)
STAGE1_CURVE_KEYS = ("hole_fraction", "n_mitochondria", "membrane_components")

logger = logging.getLogger("ablation")


# ---------------------------------------------------------------------------------------------------------------
# metrics helpers


def mask_diversity(masks: torch.Tensor, max_pairs: int = 200, seed: int = 0) -> float:
    """Mean pairwise label disagreement of a set of masks.

    Parameters
    ----------
    masks
        ``(N, 3, H, W)`` one-hot (or soft) masks, ``N >= 2``.
    max_pairs
        At most this many random pairs are compared.

    Returns
    -------
    float
        Mean over pairs of the fraction of pixels whose arg-max label differs (0: identical masks).
    """
    if masks.ndim != 4 or masks.shape[0] < 2:
        raise ValueError(f"mask_diversity needs (N >= 2, C, H, W) masks, got {tuple(masks.shape)}")
    labels = masks.argmax(1)
    n = labels.shape[0]
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[k] for k in rng.choice(len(pairs), max_pairs, replace=False)]
    return float(np.mean([(labels[i] != labels[j]).float().mean().item() for i, j in pairs]))


def morphology_distance(comparison: dict) -> float:
    """One number for how far generated masks are from real ones (lower is better).

    Mean over :data:`emgan_monai.metrics.morphology.SCALAR_STATS` of the Wasserstein distance between the real and
    generated per-mask values, each divided by the real values' standard deviation (or by ``|real mean|`` when that
    is 0, or by 1), so that counts, fractions and lengths weigh alike.
    """
    from emgan_monai.metrics.morphology import SCALAR_STATS

    terms = []
    for name in SCALAR_STATS:
        c = comparison[name]
        scale = c["real_std"] if c["real_std"] > 0 else (abs(c["real"]) if c["real"] != 0 else 1.0)
        terms.append(c["wasserstein"] / scale)
    return float(np.mean(terms))


def epochs_to_fraction_of_best(epochs: Sequence[int], values: Sequence[float], fraction: float = 0.9) -> int | None:
    """First epoch whose value reaches ``fraction`` of the best (maximum) value of the curve (higher is better)."""
    vals = np.asarray(values, dtype=float)
    if not len(vals) or not np.isfinite(vals).any():
        return None
    target = fraction * np.nanmax(vals)
    for e, v in zip(epochs, vals):
        if np.isfinite(v) and v >= target:
            return int(e)
    return None


def epochs_to_fraction_of_improvement(
    epochs: Sequence[int], values: Sequence[float], fraction: float = 0.9
) -> int | None:
    """First epoch that achieves ``fraction`` of the curve's total improvement (lower is better).

    The improvement is measured from the first evaluated value to the best (minimum) one; the answer is the first
    epoch with ``value <= best + (1 - fraction) * (first - best)``.
    """
    vals = np.asarray(values, dtype=float)
    ok = np.isfinite(vals)
    if not ok.any():
        return None
    first = vals[ok][0]
    best = np.nanmin(vals)
    target = best + (1.0 - fraction) * (first - best)
    for e, v in zip(epochs, vals):
        if np.isfinite(v) and v <= target:
            return int(e)
    return None


# ---------------------------------------------------------------------------------------------------------------
# training through the bundle configs


def _parser(config: str, overrides: dict):
    from monai.bundle import ConfigParser

    from emgan_monai.bundle_utils import config_files

    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, config))
    parser.update(overrides)
    return parser


def _common_overrides(args, kind: str, out: Path, epochs: int) -> dict:
    return {
        "bundle_root": str(BUNDLE),
        "dataset_dir": str(args.dataset_dir),
        "output_dir": str(out),
        "device": f"$torch.device('{args.device}')",
        "seed": args.seed,
        "resolution": args.resolution,
        "n_train": args.n_train,
        "n_val": args.n_val,
        "max_epochs": epochs,
        "discriminator_kind": kind,
        "save_interval": epochs,  # keep only the final checkpoint
        "resume": False,
    }


def _run_workflow(parser, attach) -> None:
    """Run ``initialize``, instantiate the generator first (so it is initialised identically for every kind),
    let ``attach(parser)`` add the observers, then run the config's ``run`` section."""
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("network")
    attach(parser)
    parser.get_parsed_content("run")


def train_stage1(args, kind: str, work: Path, real_stats: list[dict], real_diversity: float) -> dict:
    """Train stage 1 with ``configs/train_mask.json``; return the curve and the trained generator's state dict."""
    from ignite.engine import Events

    from emgan_monai.data.drosophila_synthesis import generate
    from emgan_monai.metrics.morphology import compare_morphology, mask_morphology

    out = work / f"stage1_{kind}"
    overrides = _common_overrides(args, kind, out, args.epochs_mask)
    overrides["image_interval"] = max(args.epochs_mask, 1)
    # the few-shot recipe trains on crops of sections downsampled to section_size: sections at --resolution,
    # crops of half of it (its latent grid is 1/16 of the crop)
    overrides["section_size"] = args.resolution
    overrides["crop_size"] = args.resolution // 2
    if args.discriminator_channels:
        overrides["discriminator_channels"] = args.discriminator_channels
    parser = _parser("train_mask.json", overrides)
    curve: list[dict] = []
    timing = {}

    def attach(p):
        trainer = p.get_parsed_content("train#trainer")
        net = p.get_parsed_content("network")
        from emgan_monai.data.drosophila_synthesis import default_latent_shape

        latent_shape = default_latent_shape(net, args.resolution)  # masks of the real sections' size

        def evaluate_masks(engine) -> None:
            fake, _ = generate(net, None, args.eval_samples, latent_shape, seed=args.seed + 12345, device=args.device)
            net.train()
            cmp = compare_morphology(real_stats, [mask_morphology(m.numpy()) for m in fake])
            row = {
                "epoch": int(engine.state.epoch),
                "morphology_distance": morphology_distance(cmp),
                "mito_area_wasserstein": cmp["mito_area"]["wasserstein"],
                "diversity": mask_diversity(fake, seed=args.seed),
                "real_diversity": real_diversity,
            }
            for key in STAGE1_CURVE_KEYS:
                row[key] = cmp[key]["fake"]
                row[f"real_{key}"] = cmp[key]["real"]
            curve.append(row)
            logger.info(
                "stage 1 %s epoch %d: %s",
                kind,
                row["epoch"],
                {k: round(v, 4) for k, v in row.items() if isinstance(v, float)},
            )

        trainer.add_event_handler(Events.EPOCH_COMPLETED(every=args.eval_every), evaluate_masks)
        trainer.add_event_handler(Events.STARTED, lambda e: timing.setdefault("start", time.perf_counter()))
        trainer.add_event_handler(Events.COMPLETED, lambda e: timing.setdefault("end", time.perf_counter()))

    _run_workflow(parser, attach)
    net = parser.get_parsed_content("network")
    return {
        "curve": curve,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "wall_s": timing.get("end", 0.0) - timing.get("start", 0.0),
    }


def train_stage2(args, kind: str, work: Path) -> dict:
    """Train stage 2 with ``configs/train.json``; return the validation curve and the generator's state dict."""
    from ignite.engine import Events

    out = work / f"stage2_{kind}"
    overrides = _common_overrides(args, kind, out, args.epochs_em)
    overrides["val_interval"] = args.eval_every
    if args.discriminator_channels:
        overrides["discriminator_channels"] = args.discriminator_channels
    parser = _parser("train.json", overrides)
    curve: list[dict] = []
    timing = {}

    def attach(p):
        trainer = p.get_parsed_content("train#trainer")
        evaluator = p.get_parsed_content("validate#evaluator")

        def record(engine) -> None:
            row = {"epoch": int(trainer.state.epoch)}
            row.update({k: float(v) for k, v in engine.state.metrics.items()})
            curve.append(row)
            logger.info("stage 2 %s epoch %d: %s", kind, row["epoch"], row)

        evaluator.add_event_handler(Events.EPOCH_COMPLETED, record)
        trainer.add_event_handler(Events.STARTED, lambda e: timing.setdefault("start", time.perf_counter()))
        trainer.add_event_handler(Events.COMPLETED, lambda e: timing.setdefault("end", time.perf_counter()))

    _run_workflow(parser, attach)
    net = parser.get_parsed_content("network")
    return {
        "curve": curve,
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "wall_s": timing.get("end", 0.0) - timing.get("start", 0.0),
    }


def _networks(args):
    """Fresh (mask, EM) generators as the bundle's ``inference.json`` defines them, at ``--resolution``."""
    from monai.bundle import ConfigParser

    from emgan_monai.bundle_utils import config_files

    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "resolution": args.resolution, "device": "$torch.device('cpu')"})
    return (
        parser.get_parsed_content("mask_network_def"),
        parser.get_parsed_content("em_network_def"),
        parser.get_parsed_content("latent_shape"),
    )


# ---------------------------------------------------------------------------------------------------------------
# reporting


def _plot_curves(result: dict, path: Path, stage: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if stage == "stage1":
        panels = [
            ("morphology_distance", "morphology distance (lower = closer to real)", None),
            ("hole_fraction", "fraction of mitochondria with holes", "real_hole_fraction"),
            ("n_mitochondria", "mitochondria per image", "real_n_mitochondria"),
            ("mito_area_wasserstein", "mito-area Wasserstein (px)", None),
            ("membrane_components", "membrane skeleton components", "real_membrane_components"),
            ("diversity", "pairwise mask difference (diversity)", "real_diversity"),
        ]
    else:
        panels = [
            ("val_ssim", "validation SSIM", None),
            ("val_psnr", "validation PSNR (dB)", None),
            ("val_mse", "validation MSE", None),
        ]
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (key, title, ref) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ref_value = None
        for kind, res in result["kinds"].items():
            curve = res[stage]["curve"]
            if not curve:
                continue
            ax.plot([r["epoch"] for r in curve], [r.get(key, np.nan) for r in curve], marker=".", label=kind)
            if ref is not None:
                ref_value = curve[-1].get(ref)
        if ref_value is not None:
            ax.axhline(ref_value, color="k", linestyle="--", linewidth=1, label="real")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{'Stage 1: noise -> mask' if stage == 'stage1' else 'Stage 2: mask -> EM'} "
        f"(resolution {result['settings']['resolution']}, seed {result['settings']['seed']})"
    )
    fig.tight_layout()
    fig.savefig(path)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    return f"{v:.4g}"


def table_rows(result: dict) -> list[tuple[str, str, list]]:
    """``(metric, better, [value per kind])`` rows of the ablation table."""
    kinds = list(result["kinds"])
    rows: list[tuple[str, str, list]] = []

    def add(name: str, better: str, getter) -> None:
        vals = []
        for k in kinds:
            try:
                vals.append(getter(result["kinds"][k]))
            except (KeyError, IndexError, TypeError):
                vals.append(None)
        rows.append((name, better, vals))

    real = result.get("real_reference", {})
    s1 = lambda r: r["final"]["stage1_morphology"]  # noqa: E731
    add(
        f"stage 1: mitochondria with holes, fraction (real {_fmt(real.get('hole_fraction'))})",
        "closer to real",
        lambda r: s1(r)["hole_fraction"]["fake"],
    )
    add(
        f"stage 1: mitochondria per image (real {_fmt(real.get('n_mitochondria'))})",
        "closer to real",
        lambda r: s1(r)["n_mitochondria"]["fake"],
    )
    add("stage 1: mito area Wasserstein distance (px)", "lower", lambda r: s1(r)["mito_area"]["wasserstein"])
    add(
        f"stage 1: mean mitochondrion area, px (real {_fmt(real.get('mean_mito_area'))})",
        "closer to real",
        lambda r: s1(r)["mito_area"]["fake_mean"],
    )
    add(
        f"stage 1: membrane pixel fraction (real {_fmt(real.get('membrane_fraction'))})",
        "closer to real",
        lambda r: s1(r)["membrane_fraction"]["fake"],
    )
    add(
        f"stage 1: membrane skeleton components (real {_fmt(real.get('membrane_components'))})",
        "closer to real",
        lambda r: s1(r)["membrane_components"]["fake"],
    )
    add(
        f"stage 1: largest membrane component fraction (real {_fmt(real.get('membrane_largest_fraction'))})",
        "closer to real",
        lambda r: s1(r)["membrane_largest_fraction"]["fake"],
    )
    add("stage 1: morphology distance (final)", "lower", lambda r: r["final"]["morphology_distance"])
    add(
        f"stage 1: mask diversity (real {_fmt(real.get('diversity'))})",
        "closer to real",
        lambda r: r["final"]["diversity"],
    )
    add(
        "stage 1: epochs to 90 % of the morphology-distance improvement",
        "lower",
        lambda r: r["convergence"]["stage1_epochs_to_90pct_improvement"],
    )
    add("stage 2: best validation SSIM (during training)", "higher", lambda r: r["convergence"]["stage2_best_val_ssim"])
    add(
        "stage 2: epochs to 90 % of the best val SSIM",
        "lower",
        lambda r: r["convergence"]["stage2_epochs_to_90pct_best_ssim"],
    )
    q = lambda r: r["final"]["stage2_quality_heldout"]  # noqa: E731
    add("stage 2: held-out SSIM (final generator)", "higher", lambda r: q(r)["ssim"])
    add("stage 2: held-out PSNR, dB", "higher", lambda r: q(r)["psnr"])
    add("stage 2: held-out MSE", "lower", lambda r: q(r)["mse"])
    f = lambda r: r["final"]["stage2_fcn_score"]  # noqa: E731
    add(
        f"FCN-score: Dice on generated EM from held-out masks (real EM: {_fmt(real.get('dice_real_heldout'))})",
        "higher",
        lambda r: f(r)["dice_generated_from_heldout_masks"]["mean"],
    )
    add(
        "FCN-score: Dice on EM from generated masks (full noise -> mask -> EM)",
        "higher",
        lambda r: f(r)["dice_generated_from_generated_masks"]["mean"],
    )
    d = lambda r: r["final"]["stage2_feature_distances"]  # noqa: E731
    add("segmenter-feature Frechet distance, generated vs real EM", "lower", lambda r: d(r)["frechet"])
    add(
        f"segmenter-feature kernel distance (KID; real vs real: {_fmt(real.get('kid_real_vs_real'))})",
        "lower",
        lambda r: d(r)["kernel_mean"],
    )
    add("training wall time, stage 1 + stage 2 (s)", "", lambda r: r["stage1"]["wall_s"] + r["stage2"]["wall_s"])
    return rows


def write_markdown(result: dict, path: Path) -> None:
    kinds = list(result["kinds"])
    st = result["settings"]
    lines = [
        "# Discriminator ablation (drosophila_skip_patch)",
        "",
        f"One run of `scripts/ablation_discriminators.py`: resolution {st['resolution']}, seed {st['seed']}, "
        f"{st['epochs_mask']} stage-1 epochs and {st['epochs_em']} stage-2 epochs of {st['n_train']} training "
        f"sections each (batch 1), evaluation every {st['eval_every']} epochs, the bundle's configs otherwise "
        f"unchanged; {st['num_generated']} generated masks per kind for the final morphology, "
        f"{st['n_val']} held-out sections for SSIM/PSNR/MSE; total wall time {st.get('wall_s', 0) / 60:.1f} min "
        f"on `{st['device']}`.",
        "",
        "| metric | better | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for name, better, vals in table_rows(result):
        lines.append(f"| {name} | {better} | " + " | ".join(_fmt(v) for v in vals) + " |")
    lines += [
        "",
        "Curves: `curves_stage1.png`, `curves_stage2.png`; generated masks: `masks_<kind>.png`; "
        "PCA of real vs generated masks: `pca_masks_<kind>.png`; held-out mask | generated EM | real EM: "
        "`heldout_<kind>.png`. Raw numbers: `ablation.json`.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


# ---------------------------------------------------------------------------------------------------------------


def run_ablation(args) -> dict:
    from emgan_monai.data.drosophila import drosophila_datalist, load_sections, split_sections
    from emgan_monai.data.drosophila_synthesis import generate
    from emgan_monai.evaluation.drosophila import evaluate
    from emgan_monai.io import write_image
    from emgan_monai.metrics.fcn_score import train_segmenter
    from emgan_monai.metrics.morphology import mask_morphology
    from emgan_monai.visualize import montage, onehot_to_rgb

    t0 = time.perf_counter()
    for kind in args.kinds:
        if kind not in KINDS:
            raise ValueError(f"--kinds: unknown discriminator kind {kind!r}; expected some of {KINDS}")
    out = Path(args.output_dir)
    if (out / "ablation.json").exists() and not args.overwrite:
        raise FileExistsError(f"{out / 'ablation.json'} already exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="ablation_"))
    work.mkdir(parents=True, exist_ok=True)
    logger.info("checkpoints and logs in %s", work)

    stack = Path(args.dataset_dir) / args.stack
    train, val = split_sections(drosophila_datalist(stack), n_train=args.n_train, n_val=args.n_val)
    tr_masks, tr_em = load_sections(train, args.resolution)
    real_stats = [mask_morphology(m.numpy()) for m in tr_masks]
    real_div = mask_diversity(tr_masks, seed=args.seed)

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result: dict = {"settings": settings, "kinds": {}}
    # one segmenter for every kind so that FCN-scores and feature distances are comparable
    segmenter = train_segmenter(
        tr_em,
        tr_masks,
        steps=args.segmenter_steps,
        seed=args.seed,
        patch_size=min(128, args.resolution),
        device=args.device,
    )

    for kind in args.kinds:
        logger.info("=== %s: stage 1 (%d epochs)", kind, args.epochs_mask)
        s1 = train_stage1(args, kind, work, real_stats, real_div)
        logger.info("=== %s: stage 2 (%d epochs)", kind, args.epochs_em)
        s2 = train_stage2(args, kind, work)
        mask_net, em_net, latent_shape = _networks(args)
        mask_net.load_state_dict(s1.pop("state_dict"))
        em_net.load_state_dict(s2.pop("state_dict"))
        ev_dir = work / f"eval_{kind}"
        if ev_dir.exists():
            shutil.rmtree(ev_dir)
        final = evaluate(
            mask_net,
            em_net,
            stack,
            ev_dir,
            resolution=args.resolution,
            n_train=args.n_train,
            n_val=args.n_val,
            num_generated=args.num_generated,
            latent_shape=latent_shape,
            seed=args.seed,
            device=args.device,
            segmenter=segmenter,
        )
        fake, _ = generate(mask_net, None, args.num_generated, latent_shape, seed=args.seed, device=args.device)
        final["morphology_distance"] = morphology_distance(final["stage1_morphology"])
        final["diversity"] = mask_diversity(fake, seed=args.seed)
        final["stage1_morphology"].pop("area_hist", None)
        for k in final["stage1_morphology"]:
            if isinstance(final["stage1_morphology"][k], dict):
                final["stage1_morphology"][k].pop("areas", None)
        # pictures a person can check
        write_image(
            out / f"masks_{kind}.png", montage([onehot_to_rgb(m.numpy()) for m in fake[:16]], ncols=4), overwrite=True
        )
        for src, dst in (("pca_masks.png", f"pca_masks_{kind}.png"), ("heldout_montage.png", f"heldout_{kind}.png")):
            if (ev_dir / src).exists():
                shutil.copyfile(ev_dir / src, out / dst)
        c1, c2 = s1["curve"], s2["curve"]
        ssim = [r.get("val_ssim", np.nan) for r in c2]
        conv = {
            "stage1_epochs_to_90pct_improvement": epochs_to_fraction_of_improvement(
                [r["epoch"] for r in c1], [r["morphology_distance"] for r in c1]
            ),
            "stage1_best_morphology_distance": float(np.nanmin([r["morphology_distance"] for r in c1])) if c1 else None,
            "stage2_epochs_to_90pct_best_ssim": epochs_to_fraction_of_best([r["epoch"] for r in c2], ssim),
            "stage2_best_val_ssim": float(np.nanmax(ssim)) if c2 else None,
        }
        result["kinds"][kind] = {"stage1": s1, "stage2": s2, "final": final, "convergence": conv}
        logger.info("=== %s done: %s", kind, conv)
        # write partial results after each kind, so a long run can be inspected while it goes on
        _finish(result, out, real_stats, real_div, t0)
    return result


def _finish(result: dict, out: Path, real_stats: list[dict], real_div: float, t0: float) -> None:
    any_kind = next(iter(result["kinds"].values()))
    morph = any_kind["final"]["stage1_morphology"]
    fcn = any_kind["final"]["stage2_fcn_score"]
    result["real_reference"] = {
        "hole_fraction": morph["hole_fraction"]["real"],
        "n_mitochondria": morph["n_mitochondria"]["real"],
        "mean_mito_area": morph["mito_area"]["real_mean"],
        "membrane_fraction": morph["membrane_fraction"]["real"],
        "membrane_components": morph["membrane_components"]["real"],
        "membrane_largest_fraction": morph["membrane_largest_fraction"]["real"],
        "diversity": real_div,
        "dice_real_heldout": fcn["dice_real_heldout"]["mean"],
        "kid_real_vs_real": any_kind["final"]["stage2_feature_distances"]["kernel_real_train_vs_heldout"],
    }
    result["settings"]["wall_s"] = time.perf_counter() - t0
    with open(out / "ablation.json", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2, default=_jsonable)
    write_markdown(result, out / "ablation.md")
    _plot_curves(result, out / "curves_stage1.png", "stage1")
    _plot_curves(result, out / "curves_stage2.png", "stage2")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset_dir", required=True, help="folder containing the stack folder (e.g. stack1/)")
    p.add_argument("--stack", default="stack1")
    p.add_argument("--output_dir", required=True, help="where ablation.json/.md and PNGs go (small files only)")
    p.add_argument("--work_dir", default=None, help="checkpoints and TensorBoard logs (default: a new temp folder)")
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--epochs_mask", type=int, default=30, help="stage-1 epochs per kind")
    p.add_argument("--epochs_em", type=int, default=30, help="stage-2 epochs per kind")
    p.add_argument("--eval_every", type=int, default=2, help="epochs between curve points (both stages)")
    p.add_argument("--eval_samples", type=int, default=16, help="generated masks per stage-1 curve point")
    p.add_argument("--num_generated", type=int, default=64, help="generated masks for the final evaluation")
    p.add_argument("--segmenter_steps", type=int, default=300, help="training steps of the FCN-score segmenter")
    p.add_argument("--n_train", type=int, default=16)
    p.add_argument("--n_val", type=int, default=4)
    p.add_argument("--discriminator_channels", type=int, default=0, help="0: the configs' default (64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ablation.json")
    args = p.parse_args(argv)
    if args.resolution < 64 or args.resolution & (args.resolution - 1):
        p.error(f"--resolution must be a power of two >= 64 (the mask generator upsamples 64x), got {args.resolution}")
    if min(args.epochs_mask, args.epochs_em, args.eval_every) < 1:
        p.error("--epochs_mask, --epochs_em and --eval_every must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    result = run_ablation(args)
    print(Path(args.output_dir) / "ablation.md")
    print((Path(args.output_dir) / "ablation.md").read_text(encoding="utf-8"))
    return 0 if result["kinds"] else 1


if __name__ == "__main__":
    sys.exit(main())
