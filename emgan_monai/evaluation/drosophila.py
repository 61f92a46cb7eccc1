"""Evaluation of the ``drosophila_skip_patch`` bundle: both stages of noise -> mask -> EM against real sections.

The bundle's ``evaluate.json`` runs it as named steps (sections loaded by
:func:`emgan_monai.data.drosophila.load_sections`, samples drawn by
:func:`emgan_monai.data.drosophila_synthesis.generate`, then :func:`prepare_output_dir`, :func:`evaluate_stage1`,
:func:`evaluate_stage2`, ``train_segmenter``, :func:`fcn_scores`, :func:`feature_distances`, :func:`texture_scores`,
:func:`heldout_montage`, :func:`two_sample_sets` with :func:`~emgan_monai.metrics.two_sample.two_sample_table`,
:func:`downstream_segmentation`, :func:`save_metrics`); :func:`evaluate` chains the same steps for scripts, without
the judge and the downstream segmenters. The result, ``metrics.json`` and ``metrics.md``, holds:

* the headline, a judge that learns what gives a fake away (:func:`two_sample_sets`, ``"c2st"``): a classifier
  two-sample test of the real held-out sections against generated EM and against reference points built in the same
  run (real vs real: the floor; blurred and noisy real sections; a naive painting of the held-out masks: the ceiling;
  a non-learned patch synthesis from the training sections' texture);
* the paper's purpose (:func:`downstream_segmentation`, ``"downstream_segmentation"``): a segmenter trained on
  generated pairs only, on the real training sections only and on both, scored on the real held-out sections;
* stage 1 (:func:`evaluate_stage1`): morphology, periodicity and diversity of generated vs real masks;
* stage 2 (:func:`evaluate_stage2`): paired SSIM / PSNR / MSE / NRMSE of EM generated from held-out masks;
  the FCN-score and segmenter-feature distances (a small U-Net trained on the real training sections);
* diagnostics, not a judge: stage 2 texture (:func:`evaluate_texture`): hand-made texture features of tiles
  (:mod:`emgan_monai.metrics.texture`) of generated EM and of baselines computed in the same run (real training
  sections, blurred and noisy real sections, masks painted with class grey levels), each against the real
  held-out sections, with the high-frequency power relative to theirs. The paired scores and the segmenter's
  features reward the right layout and do not see whether the grain of real ssTEM is there; these rows do, but only
  for the statistics they compute, which the stage-2 recipe also trains on (spectrum, grey-value and gradient
  distributions): a generator can match them and still be told apart at once.

Masks are ``(N, 3, H, W)`` one-hot (0 mitochondria, 1 membrane, 2 background), EM ``(N, 1, H, W)`` in [0, 1]; a
"sections" argument is the pair ``(masks, em)`` that :func:`~emgan_monai.data.drosophila.load_sections` returns.
Stage 2 may be stochastic (noise from torch's global generator inside ``forward``): every draw is made under a
fixed seed, so results are reproducible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..data.drosophila import load_sections
from ..data.drosophila_patch_synthesis import class_grey_levels, paint_masks, quilt_em
from ..data.drosophila_synthesis import default_latent_shape, generate, seeded
from ..io import write_image
from ..metrics.texture import high_frequency_power, texture_distance, texture_features
from ..visualize import montage, onehot_to_rgb, to_uint8

__all__ = [
    "C2ST_LABELS",
    "C2ST_SETS",
    "TEXTURE_SETS",
    "downstream_segmentation",
    "evaluate",
    "evaluate_stage1",
    "evaluate_stage2",
    "evaluate_texture",
    "heldout_draws_set",
    "fcn_scores",
    "feature_distances",
    "heldout_montage",
    "metrics_markdown",
    "prepare_output_dir",
    "save_metrics",
    "stage2_draws",
    "texture_scores",
    "two_sample_sets",
]

logger = logging.getLogger(__name__)

#: rows of the texture table, in order: real references, degraded references, the naive method, the model
TEXTURE_SETS = (
    "real_train",
    "blurred_real",
    "noisy_real",
    "painted_masks",
    "generated_from_heldout_masks",
    "generated_from_generated_masks",
)
#: degradations of the real training sections in the texture table
BLUR_SIGMA, NOISE_SD, PAINT_SIGMA = 2.0, 0.15, 1.5
#: radial frequency (cycles / pixel) above which power counts as high-frequency
HF_CUTOFF = 0.25
#: rows of the classifier two-sample table (the headline), in order: the floor, degraded real sections, the naive
#: painting (the ceiling), the non-learned patch synthesis, the model (noise -> mask -> EM, then stage 2 alone)
C2ST_SETS = (
    "real_vs_real",
    "real_blurred",
    "real_noisy",
    "naive_painting",
    "patch_synthesis",
    "generated_noise_mask_em",
    "generated_from_heldout_masks",
)
#: degradations of the real sections and noise of the naive painting in the two-sample table
C2ST_BLUR, C2ST_NOISE = 0.7, 0.08
#: one-line description of each row of :data:`C2ST_SETS` (metrics.md)
C2ST_LABELS = {
    "real_vs_real": "real vs real (floor): training sections, first half vs second half",
    "real_blurred": f"real, blurred (Gaussian sigma {C2ST_BLUR} px)",
    "real_noisy": f"real + Gaussian noise (sd {C2ST_NOISE})",
    "naive_painting": f"naive painting of the held-out masks (class grey levels, blur {PAINT_SIGMA} px, noise sd "
    f"{C2ST_NOISE}): ceiling",
    "patch_synthesis": "patch synthesis of the held-out masks (quilting of training EM; non-learned)",
    "generated_noise_mask_em": "generated: noise -> mask -> EM",
    "generated_from_heldout_masks": "generated: EM from the held-out real masks (stage 2)",
}


def _tiles(x: torch.Tensor, tile: int) -> torch.Tensor:
    """Non-overlapping ``tile`` x ``tile`` tiles of ``(N, C, H, W)`` -> ``(N * k, C, tile, tile)``."""
    n, c, h, w = x.shape
    x = x[:, :, : h - h % tile, : w - w % tile]
    x = x.unfold(2, tile, tile).unfold(3, tile, tile)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, tile, tile)


def evaluate_stage1(
    real_masks: torch.Tensor, fake_masks: torch.Tensor, output_dir: Path | None = None, area_hist: bool = True
) -> dict:
    """Morphology, periodicity and diversity of generated vs real masks (plus a PCA scatter PNG, an area histogram
    and a montage of generated masks when ``output_dir`` is given); ``area_hist=False`` leaves the histogram of
    mitochondrion areas out of the result.

    The result holds :func:`~emgan_monai.metrics.morphology.compare_morphology`'s table and ``"periodicity"``
    (:func:`~emgan_monai.metrics.mask_structure.compare_periodicity`: strongest off-origin spectral peak over its
    radial mean and strongest off-origin autocorrelation, mean and max over masks; pixel disagreement between
    samples and the sd of the mitochondria count).
    """
    from ..metrics.mask_structure import compare_periodicity
    from ..metrics.morphology import compare_morphology, mask_morphology
    from ..metrics.pca_plot import pca_scatter

    real_stats = [mask_morphology(m.numpy()) for m in real_masks]
    fake_stats = [mask_morphology(m.numpy()) for m in fake_masks]
    result = compare_morphology(real_stats, fake_stats)
    result["periodicity"] = compare_periodicity([m.numpy() for m in real_masks], [m.numpy() for m in fake_masks])
    if output_dir is not None:
        pca_scatter(
            real_masks.numpy(),
            fake_masks.numpy(),
            Path(output_dir) / "pca_masks.png",
            title="Masks: real (stack 1) vs generated (stage 1)",
        )
        _area_histogram(result, Path(output_dir) / "mito_area_hist.png")
        tiles = [onehot_to_rgb(m.numpy()) for m in fake_masks[:16]]
        write_image(Path(output_dir) / "generated_masks.png", montage(tiles, ncols=4), overwrite=True)
    if not area_hist:
        result.pop("area_hist", None)
    return result


def _area_histogram(morph: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    hist = morph.get("area_hist")
    if not hist or not len(hist.get("edges", [])):
        return
    edges = np.asarray(hist["edges"])
    centres = 0.5 * (edges[1:] + edges[:-1])
    width = 0.4 * (edges[1] - edges[0])
    fig = Figure(figsize=(5, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ax.bar(centres - width / 2, hist["real"], width=width, label="real")
    ax.bar(centres + width / 2, hist["fake"], width=width, label="generated")
    ax.set_xlabel("mitochondrion area (px)")
    ax.set_ylabel("count")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


@torch.no_grad()
def stage2_draws(
    em_net: torch.nn.Module, masks: torch.Tensor, n_draws: int = 1, seed: int = 0, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """``n_draws`` stage-2 outputs per mask: ``(N, 3, H, W)`` -> ``(n_draws, N, 1, H, W)`` in [0, 1] on the CPU.

    Draw ``d`` runs under torch's global generator seeded with ``seed + 1000 + d`` (a generator with noise
    injection gives a different section per draw; a deterministic one the same ``n_draws`` times).
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    em_net.eval().to(device)
    draws = []
    for d in range(n_draws):
        with seeded(seed + 1000 + d):
            draws.append(torch.cat([em_net(m[None].to(device)).clamp(0, 1).cpu() for m in masks]))
    return torch.stack(draws)


def evaluate_stage2(
    em_net: torch.nn.Module,
    val_masks: torch.Tensor,
    val_em: torch.Tensor,
    device: str | torch.device = "cpu",
    n_draws: int = 1,
    seed: int = 0,
) -> tuple[dict, torch.Tensor]:
    """Paired SSIM / PSNR / MSE / NRMSE of draw 0 of ``em_net(val_masks)`` against the real held-out EM.

    Returns
    -------
    quality, draws
        Means over sections (data range 1) with ``"per_section"``, and all draws ``(n_draws, N, 1, H, W)``
        (:func:`stage2_draws`).
    """
    from ..metrics.image_quality import image_quality

    draws = stage2_draws(em_net, val_masks, n_draws, seed=seed, device=device)
    per = [image_quality(p[0].numpy(), t[0].numpy(), data_range=1.0) for p, t in zip(draws[0], val_em)]
    keys = per[0].keys()
    return {k: float(np.mean([q[k] for q in per])) for k in keys} | {"per_section": per}, draws


def evaluate_texture(
    tr_masks: torch.Tensor,
    tr_em: torch.Tensor,
    va_masks: torch.Tensor,
    va_em: torch.Tensor,
    heldout_draws: torch.Tensor,
    generated_em: torch.Tensor | None = None,
    tile: int = 128,
    stride: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Texture of generated EM and of same-run baselines against the real held-out sections ``va_em``.

    Sets (:data:`TEXTURE_SETS`): ``real_train`` (the real training sections ``tr_em``: the real-vs-real
    reference), ``blurred_real`` (``tr_em`` blurred, Gaussian sigma 2 px), ``noisy_real`` (``tr_em`` plus Gaussian
    noise of sd 0.15, clipped to [0, 1], seeded by ``seed``), ``painted_masks`` (``va_masks`` painted with the mean
    grey level of each class on the training sections, then Gaussian sigma 1.5 px: the naive method),
    ``generated_from_heldout_masks`` (all draws of ``heldout_draws``) and ``generated_from_generated_masks``.

    Per set: ``texture_frechet`` = :func:`~emgan_monai.metrics.texture.texture_distance` of the held-out tiles and
    the set's tiles, z-scored with the real training tiles (one scale for all rows); ``hf_power_ratio`` = its
    :func:`~emgan_monai.metrics.texture.high_frequency_power` over that of ``va_em``; ``n_tiles``.

    Parameters
    ----------
    tr_masks, tr_em
        Training masks ``(N_t, 3, H, W)`` and EM ``(N_t, 1, H, W)``.
    va_masks, va_em
        Held-out masks ``(N_v, 3, H, W)`` and EM ``(N_v, 1, H, W)``.
    heldout_draws
        Stage-2 outputs on ``va_masks``, ``(D, N_v, 1, H, W)`` (:func:`stage2_draws`).
    generated_em
        EM of generated masks ``(N_g, 1, H, W)``; ``None`` leaves that row out.
    tile, stride
        Tiles of :func:`~emgan_monai.metrics.texture.texture_features`.

    Returns
    -------
    dict
        ``{"sets": {name: {"texture_frechet", "hf_power_ratio", "n_tiles"}}, "draw_diversity", "ratios", ...}``;
        ``draw_diversity`` is the mean absolute difference of draws 0 and 1 (``None`` for a single draw), ``ratios``
        the generated-from-held-out-masks distance over the ``real_train`` and ``painted_masks`` distances.
    """
    tr, va = tr_em.numpy().astype(np.float64), va_em.numpy().astype(np.float64)
    class_means = class_grey_levels(tr_masks, tr)  # (3,)
    noise = np.random.default_rng(seed).normal(0.0, NOISE_SD, tr.shape)
    draws = heldout_draws.numpy()
    sets = {
        "real_train": tr,
        "blurred_real": gaussian_filter(tr, sigma=(0, 0, BLUR_SIGMA, BLUR_SIGMA)),
        "noisy_real": np.clip(tr + noise, 0.0, 1.0),
        "painted_masks": paint_masks(va_masks, class_means, PAINT_SIGMA).numpy(),
        "generated_from_heldout_masks": draws.reshape(-1, *draws.shape[2:]),
    }
    if generated_em is not None:
        sets["generated_from_generated_masks"] = generated_em.numpy()
    ref_feats = texture_features(va, tile, stride)
    scale_feats = texture_features(tr, tile, stride)
    ref_hf = high_frequency_power(va, HF_CUTOFF)
    rows: dict[str, dict[str, Any]] = {}
    for name in (n for n in TEXTURE_SETS if n in sets):
        feats = scale_feats if name == "real_train" else texture_features(sets[name], tile, stride)
        rows[name] = {
            "texture_frechet": texture_distance(ref_feats, feats, scale_from=scale_feats),
            "hf_power_ratio": high_frequency_power(sets[name], HF_CUTOFF) / ref_hf if ref_hf > 0 else None,
            "n_tiles": int(len(feats)),
        }
    generated = rows["generated_from_heldout_masks"]["texture_frechet"]
    ratios = {
        f"generated_over_{ref}": generated / rows[ref]["texture_frechet"] if rows[ref]["texture_frechet"] > 0 else None
        for ref in ("real_train", "painted_masks")
    }
    return {
        "sets": rows,
        "draw_diversity": float(np.abs(draws[0] - draws[1]).mean()) if len(draws) > 1 else None,
        "ratios": ratios,
        "n_draws": int(len(draws)),
        "class_means": {
            "mito": float(class_means[0]),
            "membrane": float(class_means[1]),
            "background": float(class_means[2]),
        },
        "tile": tile,
        "stride": stride,
        "hf_cutoff": HF_CUTOFF,
        "n_heldout_tiles": int(len(ref_feats)),
    }


def heldout_draws_set(
    train_em: torch.Tensor, val_em: torch.Tensor, draws: Sequence[torch.Tensor] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row of the two-sample table for ``D`` draws on the held-out masks (``(D, N_v, 1, H, W)`` or a list of
    ``(N_v, 1, H, W)``): the training sections against the first half of the draws, then the held-out sections against
    the other half (``generated_from_heldout_masks`` and the non-learned syntheses of :func:`two_sample_sets`)."""
    draws = list(draws)
    half = len(draws) // 2
    if half < 1:
        raise ValueError(f"a held-out two-sample row needs at least 2 draws per mask, got {len(draws)}")
    return train_em, torch.cat(draws[:half]), val_em, torch.cat(draws[half:])


def two_sample_sets(
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    heldout_draws: torch.Tensor,
    generated_em: torch.Tensor,
    seed: int = 0,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The images of the classifier two-sample table (:data:`C2ST_SETS`), for
    :func:`~emgan_monai.metrics.two_sample.two_sample_table`: per row ``(real_train, fake_train, real_test,
    fake_test)``, EM ``(N, 1, H, W)``. The judge never sees a held-out section in training.

    - ``real_vs_real`` (the floor), ``real_blurred`` (Gaussian sigma :data:`C2ST_BLUR`), ``real_noisy`` (+ noise of sd
      :data:`C2ST_NOISE`, clipped): the first half of the training sections against the second half (as it is, or
      degraded); tested on the first half of the held-out sections against the second half (as it is, or degraded);
    - ``naive_painting`` (:func:`~emgan_monai.data.drosophila_patch_synthesis.paint_masks` of the held-out masks with
      the training sections' class grey levels, blur 1.5 px, noise sd :data:`C2ST_NOISE`), ``patch_synthesis``
      (:func:`~emgan_monai.data.drosophila_patch_synthesis.quilt_em` of the held-out masks from the training
      sections), ``generated_from_heldout_masks`` (``heldout_draws``): all training sections against the first half of
      the ``D`` draws per held-out mask, tested on the held-out sections against the other half (each non-learned
      synthesis is drawn ``D`` times too, with seeds ``seed .. seed + D - 1``);
    - ``generated_noise_mask_em``: all training sections against the first half of ``generated_em``, tested on the
      held-out sections against the second half.

    Parameters
    ----------
    train, val
        ``(masks, em)`` of the training and held-out sections: one-hot ``(N, 3, H, W)`` and EM ``(N, 1, H, W)``; at
        least 2 sections each.
    heldout_draws
        Stage-2 outputs on the held-out masks, ``(D, N_v, 1, H, W)`` with ``D >= 2`` (:func:`stage2_draws`).
    generated_em
        EM of noise -> mask -> EM samples ``(N_g, 1, H, W)``, ``N_g >= 2``.
    seed
        Seeds the noise and the patch synthesis.
    """
    (tr_masks, tr_em), (va_masks, va_em) = train, val
    n_t, n_v, n_draws, n_g = len(tr_em) // 2, len(va_em) // 2, len(heldout_draws), len(generated_em) // 2
    if min(n_t, n_v, n_g) < 1 or n_draws < 2:
        raise ValueError(
            "the two-sample table needs at least 2 training and 2 held-out sections, 2 draws per held-out mask "
            f"(n_draws) and 2 generated samples; got {len(tr_em)}, {len(va_em)}, {n_draws} and {len(generated_em)}"
        )
    rng = np.random.default_rng(seed)

    def blurred(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(gaussian_filter(x.numpy(), sigma=(0, 0, C2ST_BLUR, C2ST_BLUR)))

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return (x + torch.from_numpy(rng.normal(0.0, C2ST_NOISE, x.shape)).float()).clamp(0, 1)

    def split(draws: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return heldout_draws_set(tr_em, va_em, draws)

    levels = class_grey_levels(tr_masks, tr_em)
    sets = {
        name: (tr_em[:n_t], fn(tr_em[n_t:]), va_em[:n_v], fn(va_em[n_v:]))
        for name, fn in (("real_vs_real", lambda x: x), ("real_blurred", blurred), ("real_noisy", noisy))
    }
    sets["naive_painting"] = split(
        [paint_masks(va_masks, levels, PAINT_SIGMA, C2ST_NOISE, seed + d).float() for d in range(n_draws)]
    )
    sets["patch_synthesis"] = split([quilt_em(va_masks, tr_masks, tr_em, seed=seed + d)[0] for d in range(n_draws)])
    sets["generated_noise_mask_em"] = (tr_em, generated_em[:n_g], va_em, generated_em[n_g:])
    sets["generated_from_heldout_masks"] = split(list(heldout_draws))
    return {name: (a.float(), b.float(), c.float(), d.float()) for name, (a, b, c, d) in sets.items()}


def downstream_segmentation(
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    generated: Sequence[torch.Tensor],
    steps: int = 600,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n_seeds: int = 1,
) -> dict[str, Any]:
    """Downstream utility of the generated pairs: a segmenter (mitochondria + membranes,
    :func:`~emgan_monai.metrics.fcn_score.train_segmenter`: MONAI ``UNet``, batches of 4 crops) trained four ways,
    each scored on the real held-out sections.

    - ``synthetic_only``: the generated pairs ``generated`` (masks, EM) alone (noise -> mask -> EM), ``steps``;
    - ``real_only``: the real training sections ``train`` alone, ``steps``;
    - ``real_and_synthetic``: both, the real sections repeated to about as many as the generated pairs (about half
      of the crops real), trained for ``steps / real share`` steps: it sees as many real crops as ``real_only``,
      and the generated ones on top (the generated pairs added to a training set, trained for as many epochs);
    - ``real_only_same_compute``: the real sections alone for as many steps as ``real_and_synthetic``, the control
      that tells whether the generated pairs do more than the extra steps would with real crops only.

    A segmenter trained on real sections alone still gains from 600 to 1,200 steps (mean Dice 0.841 -> 0.858 on the
    Drosophila stack), so a mixed set trained for as many steps as ``real_only`` would see half as many real crops and
    measure the budget rather than the data (the protocol of 0.9.0 and before: real + synthetic -0.02).

    Parameters
    ----------
    train, val, generated
        ``(masks, em)``: one-hot ``(N, 3, H, W)`` and EM ``(N, 1, H, W)``, all of one size.
    steps, seed, device
        Training of the ``synthetic_only`` and ``real_only`` segmenters (batches of 4 random crops of
        ``min(128, H)`` px); the other two train ``steps / real share`` steps.
    n_seeds
        Each way is trained with seeds ``seed .. seed + n_seeds - 1`` (initialisation and crops); a segmenter's Dice
        moves by about 0.01 between seeds, as much as the differences between the ways.

    Returns
    -------
    dict
        ``{"dice": {way: {"mito", "membrane", "mean"}}`` (means over the seeds), ``"per_seed": {way: [mean Dice]}``,
        ``"mean_sd": {way: sd over seeds}``, ``"steps_per_way": {way: steps}``, ``"both_minus_real"`` (real + synthetic
        minus real only, the same real crops) and ``"both_minus_real_same_compute"`` (minus the same-compute
        control), each ``{"mean", "sd", "per_seed"}`` paired by seed, ``"synthetic_over_real", "both_over_real"``
        (ratios of the mean Dice to ``real_only``), ``"real_share", "steps", "seeds", "n_real", "n_generated"}``.
    """
    from ..metrics.fcn_score import segmentation_dice, train_segmenter

    if int(n_seeds) < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}.")
    (tr_masks, tr_em), (va_masks, va_em), (g_masks, g_em) = train, val, generated
    reps = max(1, round(len(g_em) / len(tr_em)))
    real_share = reps * len(tr_em) / (reps * len(tr_em) + len(g_em))
    long_steps = max(1, round(int(steps) / real_share))
    ways = {
        "synthetic_only": (g_em, g_masks, int(steps)),
        "real_only": (tr_em, tr_masks, int(steps)),
        "real_and_synthetic": (
            torch.cat([tr_em.repeat(reps, 1, 1, 1), g_em]),
            torch.cat([tr_masks.repeat(reps, 1, 1, 1), g_masks]),
            long_steps,
        ),
        "real_only_same_compute": (tr_em, tr_masks, long_steps),
    }
    size = min(128, int(tr_em.shape[-1]))
    seeds = [int(seed) + i for i in range(int(n_seeds))]
    runs: dict[str, list[dict[str, float]]] = {}
    for way, (x, y, n_steps) in ways.items():
        runs[way] = []
        for s in seeds:
            net = train_segmenter(x, y, steps=n_steps, seed=s, patch_size=size, device=device)
            runs[way].append(segmentation_dice(net, va_em, va_masks, roi_size=size))
            logger.info("downstream segmenter trained on %s, seed %d: mean Dice %.3f", way, s, runs[way][-1]["mean"])
    dice = {
        way: {k: float(np.mean([r[k] for r in rs])) for k in ("mito", "membrane", "mean")} for way, rs in runs.items()
    }
    per_seed = {way: [float(r["mean"]) for r in rs] for way, rs in runs.items()}

    def sd(values: Sequence[float]) -> float:
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def paired(a: str, b: str) -> dict[str, Any]:
        gain = np.asarray(per_seed[a]) - np.asarray(per_seed[b])
        return {"mean": float(gain.mean()), "sd": sd(list(gain)), "per_seed": [float(g) for g in gain]}

    real = dice["real_only"]["mean"]
    return {
        "dice": dice,
        "per_seed": per_seed,
        "mean_sd": {way: sd(v) for way, v in per_seed.items()},
        "steps_per_way": {way: n for way, (_, _, n) in ways.items()},
        "both_minus_real": paired("real_and_synthetic", "real_only"),
        "both_minus_real_same_compute": paired("real_and_synthetic", "real_only_same_compute"),
        "synthetic_over_real": dice["synthetic_only"]["mean"] / real if real > 0 else None,
        "both_over_real": dice["real_and_synthetic"]["mean"] / real if real > 0 else None,
        "real_share": float(real_share),
        "steps": int(steps),
        "seeds": seeds,
        "n_real": int(len(tr_em)),
        "n_generated": int(len(g_em)),
    }


def prepare_output_dir(output_dir: str | Path, overwrite: bool = False) -> Path:
    """Create ``output_dir``; refuse (``FileExistsError``) when it holds a ``metrics.json`` and not ``overwrite``."""
    out = Path(output_dir)
    if (out / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'metrics.json'} already exists; choose another output_dir or --overwrite true")
    out.mkdir(parents=True, exist_ok=True)
    return out


def fcn_scores(
    segmenter: torch.nn.Module,
    val: Sequence[torch.Tensor],
    heldout_pred: torch.Tensor,
    generated: Sequence[torch.Tensor],
    roi_size: int = 128,
) -> dict:
    """FCN-score: Dice of ``segmenter`` (trained on real training sections) against the conditioning masks, on the
    real held-out EM, on EM generated from the held-out masks ``heldout_pred`` ``(N_v, 1, H, W)`` and on the
    generated pairs ``generated`` (masks, EM)."""
    from ..metrics.fcn_score import segmentation_dice

    va_masks, va_em = val
    fake_masks, fake_em = generated
    return {
        "dice_real_heldout": segmentation_dice(segmenter, va_em, va_masks, roi_size=roi_size),
        "dice_generated_from_heldout_masks": segmentation_dice(segmenter, heldout_pred, va_masks, roi_size=roi_size),
        "dice_generated_from_generated_masks": segmentation_dice(segmenter, fake_em, fake_masks, roi_size=roi_size),
    }


def feature_distances(
    segmenter: torch.nn.Module,
    train_em: torch.Tensor,
    val_em: torch.Tensor,
    generated_em: torch.Tensor,
    tile: int = 128,
    seed: int = 0,
) -> dict:
    """Frechet and kernel distances between segmenter features of ``tile``-px tiles of generated EM and of all real
    EM (training + held-out), with the kernel distance of real training vs real held-out tiles as a reference."""
    from ..metrics.distances import frechet_distance, kernel_distance
    from ..metrics.fcn_score import segmenter_features

    real_feat = segmenter_features(segmenter, _tiles(torch.cat([train_em, val_em]), tile))
    fake_feat = segmenter_features(segmenter, _tiles(generated_em, tile))
    kid = kernel_distance(
        real_feat, fake_feat, subsets=50, subset_size=min(len(real_feat), len(fake_feat), 100), seed=seed
    )
    distances = {
        "frechet": frechet_distance(real_feat, fake_feat),
        "kernel_mean": float(kid.mean),
        "kernel_std": float(kid.std),
        "n_real_tiles": int(len(real_feat)),
        "n_generated_tiles": int(len(fake_feat)),
        "tile": tile,
    }
    ref_feat_a = segmenter_features(segmenter, _tiles(train_em, tile))
    ref_feat_b = segmenter_features(segmenter, _tiles(val_em, tile))
    distances["kernel_real_train_vs_heldout"] = float(
        kernel_distance(
            ref_feat_a, ref_feat_b, subsets=50, subset_size=min(len(ref_feat_a), len(ref_feat_b)), seed=seed
        ).mean
    )
    return distances


def texture_scores(
    train: Sequence[torch.Tensor],
    val: Sequence[torch.Tensor],
    heldout_draws: torch.Tensor,
    generated_em: torch.Tensor | None = None,
    tile: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`evaluate_texture` of training / held-out sections ``(masks, em)`` on ``tile``-px tiles every quarter
    tile."""
    return evaluate_texture(
        train[0], train[1], val[0], val[1], heldout_draws, generated_em, tile=tile, stride=max(1, tile // 4), seed=seed
    )


def heldout_montage(
    val: Sequence[torch.Tensor], heldout_pred: torch.Tensor, output_dir: str | Path, overwrite: bool = False
) -> str:
    """``heldout_montage.png``: conditioning mask | generated EM | real EM for each held-out section."""
    tiles = []
    for m, p, t in zip(val[0], heldout_pred, val[1]):
        tiles += [onehot_to_rgb(m.numpy()), to_uint8(p[0].numpy()), to_uint8(t[0].numpy())]
    path = Path(output_dir) / "heldout_montage.png"
    write_image(path, montage(tiles, ncols=3), overwrite=overwrite)
    return str(path)


def save_metrics(metrics: dict, output_dir: str | Path) -> dict:
    """Write ``metrics.json`` and ``metrics.md`` (:func:`metrics_markdown`) into ``output_dir``; returns ``metrics``."""
    out = Path(output_dir)
    with open(out / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, default=_jsonable)
    (out / "metrics.md").write_text(metrics_markdown(metrics), encoding="utf-8")
    logger.info("evaluation written to %s", out)
    return metrics


def evaluate(
    mask_net: torch.nn.Module,
    em_net: torch.nn.Module,
    dataset_dir: str | Path,
    output_dir: str | Path,
    resolution: int = 256,
    n_train: int = 16,
    n_val: int = 4,
    num_generated: int = 64,
    latent_shape: Sequence[int] | None = None,
    seed: int = 0,
    segmenter_steps: int = 600,
    feature_tile: int = 128,
    n_draws: int = 4,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    segmenter: torch.nn.Module | None = None,
    mask_transform: Callable | None = None,
) -> dict:
    """The steps of ``evaluate.json`` in one call, for scripts (ablations); writes what ``evaluate.json`` writes.

    Stage 1: morphology of ``num_generated`` generated masks vs the real masks of all sections (mitochondria per
    image, area distribution, hole fraction, membrane fraction and connectivity) and a PCA scatter.
    Stage 2: paired SSIM / PSNR / MSE / NRMSE on the held-out sections (draw 0); FCN-score (a small U-Net segmenter
    trained on the real training sections, its Dice on generated EM against the conditioning mask next to its Dice
    on the real held-out EM) and Frechet / kernel distances between segmenter features of generated and real EM
    tiles; texture realism (:func:`evaluate_texture`, ``"stage2_texture"``) of ``n_draws`` draws per held-out mask,
    of the generated EM and of same-run baselines, on tiles of ``min(feature_tile, resolution // 2)`` px every
    quarter tile.
    """
    from ..data.drosophila import drosophila_datalist, split_sections
    from ..metrics.fcn_score import train_segmenter

    out = prepare_output_dir(output_dir, overwrite)
    latent_shape = list(latent_shape or default_latent_shape(mask_net, resolution))
    train, val = split_sections(drosophila_datalist(dataset_dir), n_train=n_train, n_val=n_val)
    tr = load_sections(train, resolution, mask_transform=mask_transform)
    va = load_sections(val, resolution, mask_transform=mask_transform)
    fake = generate(mask_net, em_net, num_generated, latent_shape, seed=seed, device=device)
    stage1 = evaluate_stage1(torch.cat([tr[0], va[0]]), fake[0], out)
    stage1_heldout = evaluate_stage1(va[0], fake[0], area_hist=False)
    quality, va_draws = evaluate_stage2(em_net, va[0], va[1], device=device, n_draws=n_draws, seed=seed)
    if segmenter is None:
        segmenter = train_segmenter(
            tr[1], tr[0], steps=segmenter_steps, seed=seed, patch_size=min(128, resolution), device=device
        )
    metrics = {
        "resolution": resolution,
        "sections": {"train": [d["section"] for d in train], "val": [d["section"] for d in val]},
        "num_generated": num_generated,
        "seed": seed,
        "stage1_morphology": stage1,
        "stage1_morphology_vs_heldout": stage1_heldout,
        "stage2_quality_heldout": quality,
        "stage2_fcn_score": fcn_scores(segmenter, va, va_draws[0], fake, roi_size=min(128, resolution)),
        "stage2_feature_distances": feature_distances(
            segmenter, tr[1], va[1], fake[1], min(feature_tile, resolution), seed
        ),
        "stage2_texture": texture_scores(tr, va, va_draws, fake[1], min(feature_tile, resolution // 2), seed),
    }
    heldout_montage(va, va_draws[0], out, overwrite)
    return save_metrics(metrics, out)


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _fmt(v) -> str:
    return "nan" if v is None else f"{v:.4g}" if isinstance(v, (float, int, np.floating)) else str(v)


def _headline_markdown(m: dict) -> list[str]:
    """The classifier two-sample table and the downstream-segmentation table of ``m`` (those present)."""
    lines: list[str] = []
    c2st = m.get("c2st")
    if c2st:
        lines += [
            f"## Headline: classifier two-sample test vs real held-out sections ({c2st['patch']}-px patches, "
            f"{c2st['steps']} steps, {len(c2st['seeds'])} judge seeds; 0.5 = indistinguishable)",
            "",
            "| set | accuracy (mean +- sd over seeds) | per seed |",
            "|---|---|---|",
        ]
        for name, row in c2st["rows"].items():
            per_seed = ", ".join(f"{a:.3f}" for a in row["per_seed"])
            lines.append(
                f"| {C2ST_LABELS.get(name, name)} | {row['accuracy']:.3f} +- {row['accuracy_sd']:.3f} | {per_seed} |"
            )
        lines.append("")
    down = m.get("downstream_segmentation")
    if down:
        n = len(down.get("seeds", [0]))
        steps = down.get("steps_per_way", {})
        lines += [
            f"## Downstream: segmenter ({n} seed{'s' if n > 1 else ''}), Dice on the real held-out sections",
            "",
            "| trained on | steps | Dice mito | Dice membrane | mean (sd over seeds) |",
            "|---|---|---|---|---|",
        ]
        for way, d in down["dice"].items():
            spread = down.get("mean_sd", {}).get(way)
            mean = _fmt(d["mean"]) + (f" ({_fmt(spread)})" if spread is not None and n > 1 else "")
            lines.append(
                f"| {way.replace('_', ' ')} | {steps.get(way, down['steps'])} | {_fmt(d['mito'])} | "
                f"{_fmt(d['membrane'])} | {mean} |"
            )
        gains = [
            (down.get("both_minus_real"), "real + synthetic minus real only (the same real crops)"),
            (down.get("both_minus_real_same_compute"), "real + synthetic minus real only for as many steps"),
        ]
        lines += [
            "",
            f"Mean Dice, synthetic only / real only: {_fmt(down['synthetic_over_real'])}; real + synthetic / real "
            f"only: {_fmt(down['both_over_real'])} ({down['n_generated']} generated pairs, {down['n_real']} real "
            "sections)."
            + "".join(
                f" {label.capitalize()}, paired by seed: {g['mean']:+.3f} (sd {g['sd']:.3f})."
                for g, label in gains
                if g and n > 1
            ),
            "",
        ]
    return lines


def metrics_markdown(m: dict) -> str:
    """A markdown summary of :func:`evaluate`'s metrics: the headline (the classifier two-sample test and the
    downstream segmenters, when present) first, the diagnostics after."""
    lines = _headline_markdown(m) + [
        "## Stage 1: mask morphology (real = all sections, generated = stage-1 samples)",
        "",
        "| statistic | real | generated |",
        "|---|---|---|",
    ]
    for k, v in m["stage1_morphology"].items():
        if isinstance(v, dict) and "real" in v and "fake" in v and np.ndim(v["real"]) == 0:
            lines.append(f"| {k} | {_fmt(v['real'])} | {_fmt(v['fake'])} |")
    area = m["stage1_morphology"].get("mito_area", {})
    if area:
        lines.append(
            f"| mitochondrion area, pooled mean | {_fmt(area.get('real_mean'))} | {_fmt(area.get('fake_mean'))} |"
        )
        lines.append(
            f"| mitochondrion area: Wasserstein distance real vs generated | | {_fmt(area.get('wasserstein'))} |"
        )
    n_mito = m["stage1_morphology"].get("n_mitochondria", {})
    if n_mito:
        lines.append(
            f"| sd of mitochondria per image | {_fmt(n_mito.get('real_std'))} | {_fmt(n_mito.get('fake_std'))} |"
        )
    per = m["stage1_morphology"].get("periodicity")
    if per:
        lines += [
            "",
            "## Stage 1: periodicity and diversity (mean over masks; max in brackets)",
            "",
            "| statistic | real | generated |",
            "|---|---|---|",
        ]
        for key, name in (
            ("spectral_peak", "strongest off-origin spectral peak / radial mean"),
            ("autocorr_peak", "strongest autocorrelation outside the central lobe"),
            ("orientation_coherence", "membrane orientation coherence (0 all directions, 1 parallel)"),
        ):
            if key not in per:  # metrics.json of an earlier version
                continue
            v = per[key]
            above = (
                f"; {_fmt(100 * v['fake_above_real_max'])} % above the real max (expected for real masks: "
                f"{_fmt(100 * v['expected_above_real_max'])} %)"
                if "fake_above_real_max" in v
                else ""
            )
            lines.append(
                f"| {name} | {_fmt(v['real'])} ({_fmt(v['real_max'])}) | {_fmt(v['fake'])} "
                f"({_fmt(v['fake_max'])}{above}) |"
            )
        for key, v in per["diversity"].items():
            lines.append(f"| {key.replace('_', ' ')} | {_fmt(v['real'])} | {_fmt(v['fake'])} |")
    q = m["stage2_quality_heldout"]
    lines += [
        "",
        "## Stage 2: generated EM from held-out masks vs real held-out EM",
        "",
        "| SSIM | PSNR (dB) | MSE | NRMSE |",
        "|---|---|---|---|",
        f"| {_fmt(q['ssim'])} | {_fmt(q['psnr'])} | {_fmt(q['mse'])} | {_fmt(q['nrmse'])} |",
        "",
        "## FCN-score (segmenter trained on real training sections; Dice against the conditioning mask)",
        "",
        "| EM given to the segmenter | Dice mito | Dice membrane | mean |",
        "|---|---|---|---|",
    ]
    for name, d in m["stage2_fcn_score"].items():
        lines.append(f"| {name} | {_fmt(d['mito'])} | {_fmt(d['membrane'])} | {_fmt(d['mean'])} |")
    dist = m["stage2_feature_distances"]
    lines += [
        "",
        "## Segmenter-feature distances, generated vs real EM tiles",
        "",
        "| Frechet | kernel (KID) | KID real train vs real held-out (reference) |",
        "|---|---|---|",
        f"| {_fmt(dist['frechet'])} | {_fmt(dist['kernel_mean'])} +- {_fmt(dist['kernel_std'])} | "
        f"{_fmt(dist['kernel_real_train_vs_heldout'])} |",
        "",
    ]
    tex = m.get("stage2_texture")
    if tex:
        lines += [
            f"## Stage 2: texture realism (features of {tex['tile']}-px tiles vs real held-out sections)",
            "",
            "Diagnostics, not a judge: the stage-2 recipe trains on the same kinds of statistics (spectrum, grey-value "
            "and gradient distributions); the classifier two-sample test above is the headline.",
            "",
            "| set | texture Frechet | HF power / real |",
            "|---|---|---|",
        ]
        for name, row in tex["sets"].items():
            lines.append(f"| {name} | {_fmt(row['texture_frechet'])} | {_fmt(row['hf_power_ratio'])} |")
        r = tex["ratios"]
        lines += [
            "",
            f"Texture Frechet in z-scores of the real training tiles; HF power = fraction of spectral power "
            f"above {tex['hf_cutoff']:g} cycles / pixel. Generated from held-out masks ({tex['n_draws']} "
            f"draws per mask) over real train: {_fmt(r['generated_over_real_train'])}; over painted masks: "
            f"{_fmt(r['generated_over_painted_masks'])}. Mean |draw 0 - draw 1|: "
            f"{_fmt(tex['draw_diversity'])} (0 for a deterministic generator).",
            "",
        ]
    relief, grain = m.get("stage2_relief"), m.get("stage2_grain_anisotropy") or {}
    grid, ripple = m.get("stage2_grid_peaks") or {}, m.get("stage2_ripple") or {}
    if relief:
        lines += [
            "## Stage 2: directional artefacts (diagnostics; 0 = none)",
            "",
            "Relief shading: signed grey-level step across the membranes, in image sd (real |r| < 0.03). Grain "
            "direction: log10 power along the x over the y frequency axis (and diagonal over diagonal) above 0.25 "
            "cycles / px. Grid peaks: log10 power at the multiples of 1 / (the generator's grid period) over the power "
            "around them, mean on the frequency axes / over the whole lattice: a hatch locked to the pixel grid. "
            "Ripples: sd of the mean grey level over bands 4-16 px from the membranes inside the cells, in image sd "
            "(contour lines that follow the membranes).",
            "",
            "| set | relief along x | relief along y | grain x / y | grain diagonals | grid peaks axes / lattice "
            "| ripples |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in relief.items():
            g, p, q = grain.get(name), grid.get(name), ripple.get(name)
            cells = f"{g['x_over_y']:+.3f} | {g['diagonals']:+.3f}" if g else "- | -"
            peaks = f"{p['axes_log10']:+.2f} / {p['mean_log10']:+.2f}" if p else "-"
            swing = f"{q['ripple']:.3f}" if q else "-"
            lines.append(f"| {name} | {r['x']:+.3f} | {r['y']:+.3f} | {cells} | {peaks} | {swing} |")
        lines.append("")
    return "\n".join(lines)
