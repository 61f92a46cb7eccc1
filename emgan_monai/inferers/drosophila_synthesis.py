"""Drosophila skip-patch GAN inference: noise -> mask -> EM, as called by the bundle's ``inference.json``.

- :func:`synthesize_pairs` (``inference.json``): ``num_pairs`` synthetic (mask, EM) pairs written as PNG / TIFF, a
  montage and ``synthesis.json``;
- :func:`generate`: ``n`` hard masks and EM in memory (evaluation, ablation, scripts);
- :func:`hard_mask`: stage-1 output (soft mask or distance maps) -> one-hot mask, what stage 2 was trained on;
- :func:`random_symmetry`, :func:`draw_masks`: stage-1 samples under a random symmetry of the square, one-hot;
- :func:`default_latent_shape`: the latent grid a stage-1 generator needs for a resolution;
- :func:`_seeded`: seeds the generators' injected noise without touching the caller's random state.

The evaluation of the bundle (``evaluate.json``) lives in :mod:`emgan_monai.evaluation.drosophila`; the sections it
loads come from :func:`emgan_monai.data.drosophila.load_sections`.

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
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from emgan_monai.io import write_image
from emgan_monai.visualize import montage, onehot_to_rgb, to_uint8

__all__ = ["default_latent_shape", "draw_masks", "generate", "hard_mask", "load_ema_generator", "random_symmetry",
           "synthesize_pairs"]

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


#: mitochondria under this many pixels are dropped when distance maps are decoded (:func:`hard_mask`): the annotated
#: mitochondria of the Drosophila stack at the training scale (256 px sections) are 21 px or more but one of 384 (13
#: px); generated maps leave specks of a few pixels where the mitochondria map grazes zero.
MIN_MITO_SIZE = 20


def hard_mask(soft: torch.Tensor, close_membranes: bool = True, min_mito_size: int = MIN_MITO_SIZE) -> torch.Tensor:
    """Stage-1 output -> one-hot mask ``(B, 3, H, W)`` float (mitochondria, membrane, background), as fed to stage 2.

    ``(B, 3, H, W)`` class probabilities: arg-max. ``(B, 2, H, W)`` signed-distance maps (mitochondria, membrane;
    a generator with ``output="tanh"`` trained on :class:`~emgan_monai.transforms.OneHotToDistanceMap` masks):
    :class:`~emgan_monai.transforms.DistanceMapToOneHot`, with the membrane outlines closed by a watershed when
    ``close_membranes`` and mitochondria smaller than ``min_mito_size`` px dropped (:data:`MIN_MITO_SIZE`; 0 keeps
    them).
    """
    if soft.shape[1] == 2:
        from emgan_monai.transforms.mask_distance import DistanceMapToOneHot

        return DistanceMapToOneHot(close_channel=1 if close_membranes else None,
                                   min_size=[int(min_mito_size), 0])(soft, batched=True)
    if soft.shape[1] != 3:
        raise ValueError(f"hard_mask: expected 3 class probabilities or 2 distance maps, got shape {tuple(soft.shape)}.")
    return torch.nn.functional.one_hot(soft.argmax(1), soft.shape[1]).movedim(-1, 1).to(soft.dtype)


def random_symmetry(x: torch.Tensor) -> torch.Tensor:
    """Each sample of ``x`` ``(B, C, H, W)`` (``H == W``) under one of the 8 symmetries of the square, drawn from torch's
    global generator (seed it, e.g. with :func:`_seeded`, for reproducible samples).

    The few-shot recipe shows the discriminator every real and fake under a random flip / 90-degree rotation
    (DiffAugment ``flip_rot``), so the generator's distribution is learned only up to these symmetries: it may draw
    every sample in one orientation. The real data are symmetric under them (training augments with them too), so
    applying a random one to each sample draws from the symmetrised distribution the discriminator judged.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"random_symmetry needs square images, got {tuple(x.shape)}.")
    k = torch.randint(0, 4, (x.shape[0],))
    flip = torch.randint(0, 2, (x.shape[0],))
    out = [torch.rot90(xi.flip(-1) if f else xi, int(r), dims=(-2, -1)) for xi, r, f in zip(x, k, flip)]
    return torch.stack(out)


def draw_masks(mask_net: torch.nn.Module, z: torch.Tensor, symmetrise: bool = True) -> torch.Tensor:
    """One-hot masks ``(B, 3, H, W)`` from latents ``z``: :func:`hard_mask` of ``mask_net(z)``, each under a random
    symmetry of the square when ``symmetrise``, the generator returns distance maps and the masks are square (see
    :func:`random_symmetry`;
    softmax generators of the paper's recipe were trained without that augmentation and are left as drawn). Uses
    torch's global generator for the generator's injected noise and the symmetries."""
    out = mask_net(z)
    mask = hard_mask(out)
    return random_symmetry(mask) if symmetrise and out.shape[1] == 2 and mask.shape[-1] == mask.shape[-2] else mask


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
        with _seeded(seed * 1_000_003 + done):  # the generators' injected noise
            mask = draw_masks(mask_net, noise) if harden_masks else mask_net(noise)
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


@torch.no_grad()
def generate(mask_net: torch.nn.Module, em_net: torch.nn.Module | None, n: int, latent_shape: Sequence[int],
             seed: int = 0, device: str | torch.device = "cpu", batch_size: int = 8):
    """``n`` synthetic masks ``(n, 3, H, W)`` (hard one-hot) and, if ``em_net`` is given, EM ``(n, 1, H, W)``.

    The noise both generators may inject is drawn under a seed derived from ``seed`` and the batch start.
    """
    device = torch.device(device)
    mask_net.eval().to(device)
    if em_net is not None:
        em_net.eval().to(device)
    gen = torch.Generator().manual_seed(int(seed))
    masks, ems = [], []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        z = torch.randn((b, *latent_shape), generator=gen).to(device)
        with _seeded(int(seed) * 1_000_003 + start):  # the generators' injected noise
            m = draw_masks(mask_net, z)
            if em_net is not None:
                ems.append(em_net(m).clamp(0, 1).cpu())
        masks.append(m.cpu())
    return torch.cat(masks), (torch.cat(ems) if ems else None)


def load_ema_generator(config: dict, ckpt: str | Path, recalibrate: bool = True) -> torch.nn.Module:
    """The EMA generator of a full training checkpoint (or a plain generator state dict), in ``eval()`` mode.

    ``config`` is a training config's content (``train_mask.json`` for stage 1, ``train.json`` for stage 2); the
    network is its ``network_def``; a full checkpoint gives its ``g_ema`` entry, one without EMA its ``generator``.

    With ``recalibrate`` (and a full checkpoint) the batch-norm statistics are recomputed for the averaged weights
    (:func:`~emgan_monai.networks.mask_generator.recalibrate_batchnorm`), as for the shipped weights.
    """
    from monai.bundle import ConfigParser

    from emgan_monai.handlers.ema import averaged_model_state
    from emgan_monai.networks.mask_generator import recalibrate_batchnorm

    parser = ConfigParser(config)
    net = parser.get_parsed_content("network_def")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    full = "g_ema" in state
    if full:
        state = averaged_model_state(state["g_ema"])
    elif "generator" in state:
        state = state["generator"]
    net.load_state_dict(state)
    if full and recalibrate:
        recalibrate_batchnorm(net, parser.get_parsed_content("latent_shape"), seed=0)
    return net.eval()
