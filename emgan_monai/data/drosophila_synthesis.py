"""Synthetic Drosophila (mask, EM) samples: latent datalists, in-memory draws, and the files ``inference.json`` writes.

- :func:`latent_datalist`: ``num_pairs`` seeded latent grids with their noise seeds and output names, the dataset of
  ``inference.json`` (its ``network_def`` is a
  :class:`~emgan_monai.networks.two_stage_generator.TwoStageGenerator`);
- :func:`check_new_outputs`, :func:`write_montage_and_record`: before and after that run (no silent overwrite; the
  montage of all pairs and ``synthesis.json``);
- :func:`generate`: ``n`` hard masks and EM in memory (evaluation, ablation, scripts);
- :func:`draw_masks`: stage-1 samples decoded and under a random symmetry of the square, one-hot;
- :func:`default_latent_shape`: the latent grid a stage-1 generator needs for a resolution;
- :func:`seeded`: seeds the generators' injected noise without touching the caller's random state;

Masks are one-hot ``(B, 3, H, W)`` (mitochondria, membrane, background), EM ``(B, 1, H, W)`` in [0, 1]. Sample ``i``
of a run with ``seed`` and ``batch_size`` is the same here and in ``inference.json``: its latent is row ``i`` of
``torch.randn((n, *latent_shape), generator=torch.Generator().manual_seed(seed))`` and the noise the generators
inject is drawn after ``torch.manual_seed(seed * 1_000_003 + first index of its batch)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from emgan_monai.networks.two_stage_generator import hard_mask, random_symmetry

__all__ = [
    "NOISE_SEED_STRIDE",
    "check_new_outputs",
    "default_latent_shape",
    "draw_masks",
    "generate",
    "latent_datalist",
    "output_names",
    "seeded",
    "write_montage_and_record",
]

#: the seed of a batch's injected noise is ``seed * NOISE_SEED_STRIDE + index of the batch's first sample``
NOISE_SEED_STRIDE = 1_000_003


@contextmanager
def seeded(seed: int):
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


def draw_masks(mask_net: torch.nn.Module, z: torch.Tensor, symmetrise: bool = True) -> torch.Tensor:
    """One-hot masks ``(B, 3, H, W)`` from latents ``z``: :func:`hard_mask` of ``mask_net(z)``, each under a random
    symmetry of the square when ``symmetrise``, the generator returns distance maps and the masks are square (see
    :func:`~emgan_monai.networks.two_stage_generator.random_symmetry`; softmax generators of the paper's recipe were
    trained without that augmentation and are left as drawn). Uses torch's global generator for the generator's
    injected noise and the symmetries; :meth:`TwoStageGenerator.masks` does the same."""
    out = mask_net(z)
    mask = hard_mask(out)
    return random_symmetry(mask) if symmetrise and out.shape[1] == 2 and mask.shape[-1] == mask.shape[-2] else mask


@torch.no_grad()
def generate(
    mask_net: torch.nn.Module,
    em_net: torch.nn.Module | None,
    n: int,
    latent_shape: Sequence[int],
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
):
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
        with seeded(int(seed) * NOISE_SEED_STRIDE + start):  # the generators' injected noise
            m = draw_masks(mask_net, z)
            if em_net is not None:
                ems.append(em_net(m).clamp(0, 1).cpu())
        masks.append(m.cpu())
    return torch.cat(masks), (torch.cat(ems) if ems else None)


def output_names(index: int) -> dict[str, str]:
    """File stems of pair ``index``: ``{"em": "em_0003", "mask": "mask_0003"}``."""
    return {"em": f"em_{index:04d}", "mask": f"mask_{index:04d}"}


def latent_datalist(
    num_pairs: int, latent_shape: Sequence[int], seed: int = 0, batch_size: int = 4, pixel_size: float | None = None
) -> list[dict]:
    """The dataset of ``inference.json``: one item per pair.

    Item ``i``: ``"image"`` ``latent_shape`` float32 (row ``i`` of one seeded ``torch.randn`` draw; the key MONAI's
    default ``prepare_batch`` feeds to the network), ``"noise_seed"`` (``seed * NOISE_SEED_STRIDE + i - i %
    batch_size``: one seed per batch of ``batch_size``, read by :class:`~emgan_monai.handlers.BatchSeed`),
    ``"em_meta"`` / ``"mask_meta"`` (``{"filename_or_obj": stem}`` for the savers, :func:`output_names`; with
    ``pixel_size`` (nm) also ``"affine"`` ``diag(pixel_size, pixel_size, 1)`` and ``"unit": "nm"``, which the TIFF
    writer stores as the files' pixel size).
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    z = torch.randn(
        (int(num_pairs), *[int(s) for s in latent_shape]), generator=torch.Generator().manual_seed(int(seed))
    )
    scale: dict = {}
    if pixel_size is not None:
        if not float(pixel_size) > 0:
            raise ValueError(f"pixel_size must be a positive size in nm, got {pixel_size}")
        scale = {"affine": np.diag([float(pixel_size), float(pixel_size), 1.0]), "unit": "nm"}
    items = []
    for i in range(int(num_pairs)):
        names = output_names(i)
        items.append(
            {
                "image": z[i],
                "noise_seed": int(seed) * NOISE_SEED_STRIDE + i - i % int(batch_size),
                "em_meta": {"filename_or_obj": names["em"], **scale},
                "mask_meta": {"filename_or_obj": names["mask"], **scale},
            }
        )
    return items


def _planned(output_dir: Path, num_pairs: int) -> list[Path]:
    files = [output_dir / "montage.png"]
    for i in range(num_pairs):
        names = output_names(i)
        files += [
            output_dir / f"{names['mask']}.png",
            output_dir / f"{names['mask']}.tif",
            output_dir / f"{names['em']}.png",
            output_dir / f"{names['em']}.tif",
        ]
    return files


def check_new_outputs(output_dir: str | Path, num_pairs: int, overwrite: bool = False) -> str:
    """Refuse to start when a file of the run (pairs, montage) exists in ``output_dir``, unless ``overwrite``.

    ``synthesis.json`` is the record of the last run and is rewritten by every run. Returns ``output_dir``.

    Raises
    ------
    FileExistsError
        naming the first existing file and how many there are.
    """
    out = Path(output_dir)
    if not overwrite:
        existing = [str(p) for p in _planned(out, int(num_pairs)) if p.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} already exists ({len(existing)} output files in {out} would be replaced); "
                "choose another output_dir or set overwrite=True (--overwrite true)"
            )
    return str(out)


def write_montage_and_record(
    output_dir: str | Path,
    num_pairs: int,
    seed: int,
    latent_shape: Sequence[int],
    overwrite: bool = False,
    montage_cols: int = 4,
    pixel_size: float | None = None,
) -> dict:
    """After ``inference.json``'s evaluator: ``montage.png`` (mask | EM per pair, ``montage_cols`` pairs a row, read
    back from the written PNGs) and ``synthesis.json`` (rewritten every run, whatever an earlier run left; with the
    ``pixel_size`` in nm when given). Returns the record."""
    from emgan_monai.io import read_image, write_image
    from emgan_monai.visualize import montage

    out = Path(output_dir)
    tiles, pairs = [], []
    for i in range(int(num_pairs)):
        names = output_names(i)
        files = {
            "mask": out / f"{names['mask']}.png",
            "mask_tif": out / f"{names['mask']}.tif",
            "em_png": out / f"{names['em']}.png",
            "em_tif": out / f"{names['em']}.tif",
        }
        tiles += [read_image(files["mask"])[0], read_image(files["em_png"])[0]]
        pairs.append({k: str(v) for k, v in files.items()})
    write_image(out / "montage.png", montage(tiles, ncols=2 * max(1, int(montage_cols))), overwrite=overwrite)
    record = {
        "num_pairs": int(num_pairs),
        "seed": int(seed),
        "latent_shape": [int(s) for s in latent_shape],
        **({"pixel_size_nm": float(pixel_size)} if pixel_size is not None else {}),
        "pairs": pairs,
        "montage": str(out / "montage.png"),
    }
    (out / "synthesis.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return record
