"""Drosophila skip-patch GAN: noise -> mask -> EM synthesis, as called by the bundle's ``inference.json``.

Stage 1 (``mask_net``) maps a Gaussian latent grid (e.g. ``(B, 16, H/16, W/16)`` for
:class:`~emgan_monai.networks.mask_generator.LatentGridMaskGenerator`) to a soft 3-channel mask ``(B, 3, H, W)``
(mitochondria, membrane, background); stage 2 (``em_net``) maps that mask to an EM image ``(B, 1, H, W)`` in (0, 1).
Generators with noise injection draw their noise from torch's global generator: the functions here seed it from
``seed`` inside ``torch.random.fork_rng`` (the caller's random state is left untouched), so samples are
reproducible.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from emgan_monai.io import write_image
from emgan_monai.visualize import montage, onehot_to_rgb, to_uint8

__all__ = ["evaluate", "evaluate_stage1", "evaluate_stage2", "generate", "hard_mask", "load_sections", "metrics_markdown", "synthesize_pairs"]

logger = logging.getLogger(__name__)


@contextmanager
def _seeded(seed: int):
    """Run the block with torch's global generator seeded by ``seed``; restore the previous state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def default_latent_shape(mask_net: torch.nn.Module, resolution: int) -> list[int]:
    """Latent shape ``[C, R / f, R / f]`` for a generator with ``latent_channels`` and ``upsampling_factor``."""
    f = int(getattr(mask_net, "upsampling_factor", 64))
    c = int(getattr(mask_net, "latent_channels", 8))
    if resolution % f:
        raise ValueError(f"resolution {resolution} is not a multiple of the generator's upsampling factor {f}")
    return [c, resolution // f, resolution // f]


def hard_mask(soft: torch.Tensor) -> torch.Tensor:
    """One-hot arg-max of a soft mask ``(B, 3, H, W)`` -> ``(B, 3, H, W)`` float, as fed to stage 2."""
    return torch.nn.functional.one_hot(soft.argmax(1), soft.shape[1]).movedim(-1, 1).to(soft.dtype)


@torch.no_grad()
def synthesize_pairs(
    mask_net: torch.nn.Module,
    em_net: torch.nn.Module,
    output_dir: str | Path,
    num_pairs: int = 16,
    latent_shape: Sequence[int] = (8, 8, 8),
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 4,
    harden_masks: bool = True,
    formats: Sequence[str] = ("png", "tif"),
    montage_cols: int = 4,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate ``num_pairs`` synthetic (mask, EM) pairs and a montage.

    Writes ``mask_XXXX.png`` (RGB: mitochondria red, membrane green, background blue), ``em_XXXX.png`` (8-bit) and
    ``em_XXXX.tif`` (16-bit, full precision of the (0, 1) output scaled to 0..65535), ``mask_XXXX.tif`` (uint8
    labels 0 mitochondria, 1 membrane, 2 background), ``montage.png`` (mask | EM per pair) and ``synthesis.json``.

    Parameters
    ----------
    mask_net, em_net
        stage-1 generator ``(B, *latent_shape) -> (B, 3, H, W)`` and stage-2 generator ``(B, 3, H, W) -> (B, 1, H, W)``.
    harden_masks
        feed the arg-max one-hot mask to stage 2 (what it was trained on) instead of the soft mask.
    overwrite
        existing files are never replaced unless this is ``True`` (``FileExistsError`` naming the first one).

    Returns
    -------
    dict
        ``{"pairs": [{"mask": path, "em": path}, ...], "montage": path}``
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    planned = [out / "montage.png", out / "synthesis.json"]
    for i in range(num_pairs):
        planned += [out / f"mask_{i:04d}.png", out / f"mask_{i:04d}.tif"]
        planned += [out / f"em_{i:04d}.{ext}" for ext in formats]
    if not overwrite:
        existing = [str(p) for p in planned if p.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists ({len(existing)} output files in {out} would be replaced); "
                "choose another output_dir or set overwrite=True (--overwrite true)"
            )
    device = torch.device(device)
    mask_net.eval().to(device)
    em_net.eval().to(device)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    tiles: list[np.ndarray] = []
    pairs = []
    done = 0
    bar = tqdm(total=num_pairs, desc="synthesising pairs", disable=not progress)
    while done < num_pairs:
        b = min(batch_size, num_pairs - done)
        noise = torch.randn((b, *latent_shape), generator=gen).to(device)
        with _seeded(seed * 1_000_003 + done):  # the generator's injected noise
            soft = mask_net(noise)
        mask = hard_mask(soft) if harden_masks else soft
        em = em_net(mask).clamp(0, 1)
        for j in range(b):
            i = done + j
            m = mask[j].float().cpu().numpy()
            e = em[j, 0].float().cpu().numpy()
            rgb = onehot_to_rgb(m)
            e8 = to_uint8(e)
            write_image(out / f"mask_{i:04d}.png", rgb, overwrite=overwrite)
            write_image(out / f"mask_{i:04d}.tif", np.argmax(m, 0).astype(np.uint8), overwrite=overwrite)
            entry = {"mask": str(out / f"mask_{i:04d}.png")}
            for ext in formats:
                arr = e8 if ext == "png" else np.round(e * 65535).astype(np.uint16)
                write_image(out / f"em_{i:04d}.{ext}", arr, overwrite=overwrite)
                entry[f"em_{ext}"] = str(out / f"em_{i:04d}.{ext}")
            pairs.append(entry)
            tiles += [rgb, e8]
        done += b
        bar.update(b)
    bar.close()
    cols = 2 * max(1, montage_cols)
    write_image(out / "montage.png", montage(tiles, ncols=cols), overwrite=overwrite)
    record = {"num_pairs": num_pairs, "seed": seed, "latent_shape": list(latent_shape), "pairs": pairs,
              "montage": str(out / "montage.png")}
    with open(out / "synthesis.json", "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    logger.info("wrote %d pairs and %s", num_pairs, out / "montage.png")
    return record


# --------------------------------------------------------------------------------------------------------------
# data loading shared by evaluation and the ablation


def load_sections(datalist: Sequence[dict], resolution: int, em_max: float = 255.0,
                  mask_transform: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load sections of the stack layout at ``resolution``: one-hot masks and EM.

    Parameters
    ----------
    mask_transform
        The mask pipeline of the bundle config (e.g. ``train_mask.json``'s ``mask_preprocessing`` as a ``Compose``):
        maps a datalist item to a dict whose ``"label"`` is the ``(3, R, R)`` one-hot mask. Passing the config's
        transforms keeps evaluation and training on identical masks. ``None`` uses the same pipeline built here:
        one-hot at full size, area downsampling of each class channel, argmax back to one-hot (thin membranes
        survive; nearest-neighbour downsampling breaks them).

    Returns
    -------
    masks, em
        ``(N, 3, R, R)`` one-hot masks and ``(N, 1, R, R)`` EM in [0, 1] (area resize).
    """
    from monai.transforms import (AsDiscreted, Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized,
                                  ScaleIntensityRanged)

    from emgan_monai.transforms import MaskToOneHotd

    if mask_transform is None:
        mask_transform = Compose([
            LoadImaged(keys=["mito", "membrane"], image_only=True),
            EnsureChannelFirstd(keys=["mito", "membrane"]),
            MaskToOneHotd(keys=["mito", "membrane"], output_key="label", delete_keys=True),
            Resized(keys="label", spatial_size=[resolution, resolution], mode="area"),
            AsDiscreted(keys="label", argmax=True, to_onehot=3),
            EnsureTyped(keys="label", dtype=torch.float32, track_meta=False),
        ])
    em_tf = Compose([
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        ScaleIntensityRanged(keys="image", a_min=0.0, a_max=em_max, b_min=0.0, b_max=1.0, clip=True),
        Resized(keys="image", spatial_size=[resolution, resolution], mode="area"),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
    ])
    masks, ems = [], []
    for d in datalist:
        m = torch.as_tensor(mask_transform({k: v for k, v in d.items() if k != "image"})["label"]).float()
        if tuple(m.shape[1:]) != (resolution, resolution):
            raise ValueError(f"mask_transform gave masks of shape {tuple(m.shape)}, expected (3, {resolution}, "
                             f"{resolution}): set the config's section size to the evaluation resolution")
        masks.append(m)
        ems.append(torch.as_tensor(em_tf({"image": d["image"]})["image"]).float())
    return torch.stack(masks), torch.stack(ems)


@torch.no_grad()
def generate(mask_net: torch.nn.Module, em_net: torch.nn.Module | None, n: int, latent_shape: Sequence[int],
             seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8):
    """``n`` synthetic masks ``(n, 3, H, W)`` (hard one-hot) and, if ``em_net`` is given, EM ``(n, 1, H, W)``."""
    device = torch.device(device)
    mask_net.eval().to(device)
    if em_net is not None:
        em_net.eval().to(device)
    gen = torch.Generator().manual_seed(int(seed))
    masks, ems = [], []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = torch.randn((b, *latent_shape), generator=gen).to(device)
        with _seeded(int(seed) * 1_000_003 + start):  # the generator's injected noise
            m = hard_mask(mask_net(z))
        masks.append(m.cpu())
        if em_net is not None:
            ems.append(em_net(m).clamp(0, 1).cpu())
    return torch.cat(masks), (torch.cat(ems) if ems else None)


def _tiles(x: torch.Tensor, tile: int) -> torch.Tensor:
    """Non-overlapping ``tile`` x ``tile`` tiles of ``(N, C, H, W)`` -> ``(N * k, C, tile, tile)``."""
    n, c, h, w = x.shape
    x = x[:, :, : h - h % tile, : w - w % tile]
    x = x.unfold(2, tile, tile).unfold(3, tile, tile)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, tile, tile)


# --------------------------------------------------------------------------------------------------------------
# evaluation


def evaluate_stage1(real_masks: torch.Tensor, fake_masks: torch.Tensor, output_dir: Path | None = None) -> dict:
    """Morphology, periodicity and diversity of generated vs real masks (plus a PCA scatter PNG, an area histogram
    and a montage of generated masks when ``output_dir`` is given).

    The result holds :func:`~emgan_monai.metrics.morphology.compare_morphology`'s table and ``"periodicity"``
    (:func:`~emgan_monai.metrics.mask_structure.compare_periodicity`: strongest off-origin spectral peak over its
    radial mean and strongest off-origin autocorrelation, mean and max over masks; pixel disagreement between
    samples and the sd of the mitochondria count).
    """
    from emgan_monai.metrics.mask_structure import compare_periodicity
    from emgan_monai.metrics.morphology import compare_morphology, mask_morphology
    from emgan_monai.metrics.pca_plot import pca_scatter

    real_stats = [mask_morphology(m.numpy()) for m in real_masks]
    fake_stats = [mask_morphology(m.numpy()) for m in fake_masks]
    result = compare_morphology(real_stats, fake_stats)
    result["periodicity"] = compare_periodicity([m.numpy() for m in real_masks], [m.numpy() for m in fake_masks])
    if output_dir is not None:
        pca_scatter(real_masks.numpy(), fake_masks.numpy(), Path(output_dir) / "pca_masks.png",
                    title="Masks: real (stack 1) vs generated (stage 1)")
        _area_histogram(result, Path(output_dir) / "mito_area_hist.png")
        tiles = [onehot_to_rgb(m.numpy()) for m in fake_masks[:16]]
        write_image(Path(output_dir) / "generated_masks.png", montage(tiles, ncols=4), overwrite=True)
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


def evaluate_stage2(em_net: torch.nn.Module, val_masks: torch.Tensor, val_em: torch.Tensor,
                    device: str | torch.device = "cpu") -> tuple[dict, torch.Tensor]:
    """Paired SSIM / PSNR / MSE / NRMSE of ``em_net(val_masks)`` against the real held-out EM (data range 1)."""
    from emgan_monai.metrics.image_quality import image_quality

    em_net.eval().to(device)
    with torch.no_grad():
        pred = torch.cat([em_net(m[None].to(device)).clamp(0, 1).cpu() for m in val_masks])
    per = [image_quality(p[0].numpy(), t[0].numpy(), data_range=1.0) for p, t in zip(pred, val_em)]
    keys = per[0].keys()
    return {k: float(np.mean([q[k] for q in per])) for k in keys} | {"per_section": per}, pred


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
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    segmenter: torch.nn.Module | None = None,
    mask_transform: Callable | None = None,
) -> dict:
    """Evaluate both stages; write ``metrics.json``, ``metrics.md`` and plots into ``output_dir``.

    Stage 1: morphology of ``num_generated`` generated masks vs the real masks of all sections (mitochondria per
    image, area distribution, hole fraction, membrane fraction and connectivity) and a PCA scatter.
    Stage 2: paired SSIM / PSNR / MSE / NRMSE on the held-out sections; FCN-score (a small U-Net segmenter trained
    on the real training sections, its Dice on generated EM against the conditioning mask next to its Dice on the
    real held-out EM) and Frechet / kernel distances between segmenter features of generated and real EM tiles.
    """
    from emgan_monai.data.drosophila import drosophila_datalist, split_sections
    from emgan_monai.metrics.distances import frechet_distance, kernel_distance
    from emgan_monai.metrics.fcn_score import segmentation_dice, segmenter_features, train_segmenter

    out = Path(output_dir)
    if (out / "metrics.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'metrics.json'} already exists; choose another output_dir or --overwrite true")
    out.mkdir(parents=True, exist_ok=True)
    latent_shape = list(latent_shape or default_latent_shape(mask_net, resolution))
    datalist = drosophila_datalist(dataset_dir)
    train, val = split_sections(datalist, n_train=n_train, n_val=n_val)
    tr_masks, tr_em = load_sections(train, resolution, mask_transform=mask_transform)
    va_masks, va_em = load_sections(val, resolution, mask_transform=mask_transform)
    all_masks = torch.cat([tr_masks, va_masks])

    fake_masks, fake_em = generate(mask_net, em_net, num_generated, latent_shape, seed=seed, device=device)
    stage1 = evaluate_stage1(all_masks, fake_masks, out)
    stage1_heldout = evaluate_stage1(va_masks, fake_masks)
    stage1_heldout.pop("area_hist", None)
    quality, va_pred = evaluate_stage2(em_net, va_masks, va_em, device=device)

    if segmenter is None:
        patch = min(128, resolution)
        segmenter = train_segmenter(tr_em, tr_masks, steps=segmenter_steps, seed=seed, patch_size=patch,
                                    device=device)
    roi = min(128, resolution)
    fcn = {
        "dice_real_heldout": segmentation_dice(segmenter, va_em, va_masks, roi_size=roi),
        "dice_generated_from_heldout_masks": segmentation_dice(segmenter, va_pred, va_masks, roi_size=roi),
        "dice_generated_from_generated_masks": segmentation_dice(segmenter, fake_em, fake_masks, roi_size=roi),
    }
    tile = min(feature_tile, resolution)
    real_feat = segmenter_features(segmenter, _tiles(torch.cat([tr_em, va_em]), tile))
    fake_feat = segmenter_features(segmenter, _tiles(fake_em, tile))
    kid = kernel_distance(real_feat, fake_feat, subsets=50, subset_size=min(len(real_feat), len(fake_feat), 100),
                          seed=seed)
    distances = {
        "frechet": frechet_distance(real_feat, fake_feat),
        "kernel_mean": float(kid.mean),
        "kernel_std": float(kid.std),
        "n_real_tiles": int(len(real_feat)),
        "n_generated_tiles": int(len(fake_feat)),
        "tile": tile,
    }
    # a reference point for the distances: held-out real tiles vs training real tiles
    ref_feat_a = segmenter_features(segmenter, _tiles(tr_em, tile))
    ref_feat_b = segmenter_features(segmenter, _tiles(va_em, tile))
    distances["kernel_real_train_vs_heldout"] = float(
        kernel_distance(ref_feat_a, ref_feat_b, subsets=50, subset_size=min(len(ref_feat_a), len(ref_feat_b)),
                        seed=seed).mean
    )

    # a montage a person can check: conditioning mask | generated EM | real EM for each held-out section
    tiles = []
    for m, p, t in zip(va_masks, va_pred, va_em):
        tiles += [onehot_to_rgb(m.numpy()), to_uint8(p[0].numpy()), to_uint8(t[0].numpy())]
    write_image(out / "heldout_montage.png", montage(tiles, ncols=3), overwrite=overwrite)

    metrics = {
        "resolution": resolution,
        "sections": {"train": [d["section"] for d in train], "val": [d["section"] for d in val]},
        "num_generated": num_generated,
        "seed": seed,
        "stage1_morphology": stage1,
        "stage1_morphology_vs_heldout": stage1_heldout,
        "stage2_quality_heldout": quality,
        "stage2_fcn_score": fcn,
        "stage2_feature_distances": distances,
    }
    with open(out / "metrics.json", "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2, default=_jsonable)
    (out / "metrics.md").write_text(metrics_markdown(metrics), encoding="utf-8")
    logger.info("evaluation written to %s", out)
    return metrics


def _jsonable(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _fmt(v) -> str:
    return "nan" if v is None else f"{v:.4g}" if isinstance(v, (float, int, np.floating)) else str(v)


def metrics_markdown(m: dict) -> str:
    """A markdown summary of :func:`evaluate`'s metrics."""
    lines = ["## Stage 1: mask morphology (real = all sections, generated = stage-1 samples)", "",
             "| statistic | real | generated |", "|---|---|---|"]
    for k, v in m["stage1_morphology"].items():
        if isinstance(v, dict) and "real" in v and "fake" in v and np.ndim(v["real"]) == 0:
            lines.append(f"| {k} | {_fmt(v['real'])} | {_fmt(v['fake'])} |")
    area = m["stage1_morphology"].get("mito_area", {})
    if area:
        lines.append(f"| mitochondrion area, pooled mean | {_fmt(area.get('real_mean'))} | {_fmt(area.get('fake_mean'))} |")
        lines.append(f"| mitochondrion area: Wasserstein distance real vs generated | | {_fmt(area.get('wasserstein'))} |")
    n_mito = m["stage1_morphology"].get("n_mitochondria", {})
    if n_mito:
        lines.append(f"| sd of mitochondria per image | {_fmt(n_mito.get('real_std'))} | {_fmt(n_mito.get('fake_std'))} |")
    per = m["stage1_morphology"].get("periodicity")
    if per:
        lines += ["", "## Stage 1: periodicity and diversity (mean over masks; max in brackets)", "",
                  "| statistic | real | generated |", "|---|---|---|"]
        for key, name in (("spectral_peak", "strongest off-origin spectral peak / radial mean"),
                          ("autocorr_peak", "strongest autocorrelation outside the central lobe")):
            v = per[key]
            lines.append(f"| {name} | {_fmt(v['real'])} ({_fmt(v['real_max'])}) | {_fmt(v['fake'])} "
                         f"({_fmt(v['fake_max'])}) |")
        for key, v in per["diversity"].items():
            lines.append(f"| {key.replace('_', ' ')} | {_fmt(v['real'])} | {_fmt(v['fake'])} |")
    q = m["stage2_quality_heldout"]
    lines += ["", "## Stage 2: generated EM from held-out masks vs real held-out EM", "",
              "| SSIM | PSNR (dB) | MSE | NRMSE |", "|---|---|---|---|",
              f"| {_fmt(q['ssim'])} | {_fmt(q['psnr'])} | {_fmt(q['mse'])} | {_fmt(q['nrmse'])} |", "",
              "## FCN-score (segmenter trained on real training sections; Dice against the conditioning mask)", "",
              "| EM given to the segmenter | Dice mito | Dice membrane | mean |", "|---|---|---|---|"]
    for name, d in m["stage2_fcn_score"].items():
        lines.append(f"| {name} | {_fmt(d['mito'])} | {_fmt(d['membrane'])} | {_fmt(d['mean'])} |")
    dist = m["stage2_feature_distances"]
    lines += ["", "## Segmenter-feature distances, generated vs real EM tiles", "",
              "| Frechet | kernel (KID) | KID real train vs real held-out (reference) |", "|---|---|---|",
              f"| {_fmt(dist['frechet'])} | {_fmt(dist['kernel_mean'])} +- {_fmt(dist['kernel_std'])} | "
              f"{_fmt(dist['kernel_real_train_vs_heldout'])} |", ""]
    return "\n".join(lines)
