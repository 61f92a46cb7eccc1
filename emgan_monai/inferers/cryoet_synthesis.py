"""Inference of the cryo-ET GAN: density maps -> subtomograms, and their MC-dropout uncertainty.

- :func:`synthesize_subtomograms` (``inference.json``): ``n_samples`` subtomograms per map of a folder, as MRC
  files, a montage and ``synthesis.json``;
- :func:`mc_dropout_subtomograms` (``inference_uncertainty.json``): per-voxel mean and standard deviation of ``k``
  generator passes with dropout active;
- :func:`generate_subtomograms`: ``n_samples`` outputs per map of an in-memory stack (used by the evaluation).

Generators map ``(B, 1, D, H, W)`` maps in ``[-1, 1]`` to subtomograms in ``(-1, 1)``; inputs and outputs are
converted with :mod:`emgan_monai.transforms.cryoet_value_range`, outputs are written in z units of the training
subtomograms. Any ``monai.inferers`` inferer (e.g. ``SlidingWindowInferer`` for maps larger than the box) can wrap
the generator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emgan_monai.bundle_utils import save_json
from emgan_monai.data.batch import failure_reason, report_failure_list
from emgan_monai.data.cryoet import DENSITY_SUFFIXES, density_datalist
from emgan_monai.data.cryoet_density_inputs import density_input, load_density_inputs
from emgan_monai.io import write_image
from emgan_monai.transforms.cryoet_value_range import SUBTOMO_SCALE, density_to_network, network_to_subtomo
from emgan_monai.visualize import central_slices, montage

__all__ = ["generate_subtomograms", "mc_dropout_subtomograms", "synthesize_subtomograms"]

logger = logging.getLogger(__name__)


def _montage(tiles: list[np.ndarray], ncols: int) -> np.ndarray:
    """:func:`~emgan_monai.visualize.montage` of tiles padded (white) to a common size (maps may differ in size)."""
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    padded = [np.pad(t, [(0, h - t.shape[0]), (0, w - t.shape[1])] + [(0, 0)] * (t.ndim - 2), constant_values=255)
              for t in tiles]
    return montage(padded, ncols=ncols, pad=2)


def _write(path: Path, array: np.ndarray, voxel_size: float | None, overwrite: bool) -> str:
    """Write a ``(D, H, W)`` volume (MRC, voxel size in A) or an image; returns the file name."""
    write_image(path, array, voxel_size=voxel_size, overwrite=overwrite)
    return path.name


class _InfererModule(nn.Module):
    """``x -> inferer(x, network)`` as a module (so :func:`mc_dropout` finds the network's dropout layers)."""

    def __init__(self, network: nn.Module, inferer: Any | None) -> None:
        super().__init__()
        self.network = network
        self.inferer = inferer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) if self.inferer is None else self.inferer(x, self.network)


@torch.no_grad()
def synthesize_subtomograms(
    generator: nn.Module,
    input_dir: str | Path,
    output_dir: str | Path,
    n_samples: int = 8,
    voxel_size: float = 10.0,
    box: int = 32,
    iso: float = 0.3,
    sigma: float = 1.0,
    inferer: Any | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    tile_large_maps: bool = False,
) -> dict[str, Any]:
    """Generate ``n_samples`` subtomograms per density map with the D -> S generator.

    Each sample draws new bottleneck noise (noise injection); dropout is off (``eval`` mode). Writes, per map
    ``name``: ``name_input.mrc`` (the shape map fed to the generator), ``name_sample_XX.mrc`` (z units, voxel size
    in the header); plus ``montage.png`` (one row per map: input, then the samples; for each the central slice
    across axis 0 and across axis 1 -- the latter shows the missing wedge) and ``synthesis.json``.

    Parameters
    ----------
    generator
        ``(B, 1, D, H, W) -> (B, 1, D, H, W)`` network in ``(-1, 1)``.
    input_dir
        Folder with ``.mrc``/``.map``/``.pdb`` files.
    n_samples
        Subtomograms per map.
    inferer
        ``monai.inferers`` inferer (e.g. ``SlidingWindowInferer`` so any map size works) or ``None``.
    overwrite
        Existing files raise ``FileExistsError`` unless ``True``.
    tile_large_maps
        Maps whose molecule exceeds ``box`` are generated whole through ``inferer`` (tiles of the box size) instead
        of being refused (see :func:`fit_to_box`); needs a sliding-window ``inferer`` for fixed-size generators.

    Returns
    -------
    dict
        The summary written to ``synthesis.json`` (files, shapes, voxel size).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs, failures = [], []
    items = density_datalist(input_dir, DENSITY_SUFFIXES)
    for item in items:  # every readable map is processed; the others are listed at the end (exit status 1)
        try:
            inputs.append((item["label"], density_input(item["image"], voxel_size, box, iso, sigma, tile_large_maps)))
        except (OSError, ValueError, RuntimeError) as err:
            failures.append((str(item["image"]), failure_reason(err)))
            logger.warning("skipping %s: %s", item["image"], failures[-1][1])
    model = _InfererModule(generator, inferer).to(device).eval()
    torch.manual_seed(seed)
    rows, files = [], []
    for name, m in inputs:
        x = torch.from_numpy(density_to_network(m))[None, None].to(device)
        entry = {"map": name, "input": _write(out / f"{name}_input.mrc", m, voxel_size, overwrite), "samples": []}
        tiles = central_slices(m, 0.0, 1.0)
        for j in range(n_samples):
            sample = network_to_subtomo(model(x))[0, 0]
            entry["samples"].append(_write(out / f"{name}_sample_{j:02d}.mrc", sample, voxel_size, overwrite))
            tiles += central_slices(sample, -SUBTOMO_SCALE, SUBTOMO_SCALE)
        rows.append(tiles)
        files.append(entry)
    if rows:
        png = _montage([t for row in rows for t in row], ncols=len(rows[0]))
        _write(out / "montage.png", png, None, overwrite)
    summary = {
        "generator": "D -> S (density map -> subtomogram)",
        "n_maps": len(inputs),
        "n_samples": n_samples,
        "box": box,
        "voxel_size_A": voxel_size,
        "value_units": "z-score of the training subtomograms (dark = dense)",
        "montage": "rows: maps; columns: input, then samples; each as (central slice across axis 0, across axis 1)",
        "files": files,
        "failed": [{"file": f, "reason": r} for f, r in failures],
    }
    save_json(summary, out / "synthesis.json", overwrite=overwrite)
    logger.info("wrote %d x %d subtomograms to %s", len(inputs), n_samples, out)
    report_failure_list(failures, len(items))
    return summary


@torch.no_grad()
def mc_dropout_subtomograms(
    generator: nn.Module,
    input_dir: str | Path,
    output_dir: str | Path,
    k: int = 20,
    voxel_size: float = 10.0,
    box: int = 32,
    iso: float = 0.3,
    sigma: float = 1.0,
    inferer: Any | None = None,
    fix_noise: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
    tile_large_maps: bool = False,
) -> dict[str, Any]:
    """Monte-Carlo dropout uncertainty: mean and per-voxel standard deviation of ``k`` generator passes.

    Uses :func:`emgan_monai.networks.mc_dropout` (eval mode, dropout layers active). With ``fix_noise`` the
    generator's noise (every tensor of ``sample_noise``) is drawn once per map and reused, so the std map shows the
    dropout (model) uncertainty only; otherwise it also contains the noise-injection variability. A generator without
    dropout layers (the physics-informed one without residual) gives the spread of its ``k`` stochastic samples
    instead (``std_source`` in ``uncertainty.json``). Writes ``name_mean.mrc``,
    ``name_std.mrc`` (z units), ``uncertainty.png`` (rows: maps; columns: input, mean, std, central slices across
    axes 0 and 1; std scaled to the largest std of all maps) and ``uncertainty.json`` (mean std per map).

    ``generator`` maps ``(1, 1, D, H, W)`` maps in ``[-1, 1]`` to ``(1, 1, D, H, W)`` outputs in ``(-1, 1)``; the mean
    and std volumes are ``(D, H, W)`` in z units. Returns the summary written to ``uncertainty.json``.
    """
    from emgan_monai.networks.cyclegan3d import mc_dropout

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = load_density_inputs(input_dir, voxel_size, box, iso, sigma, allow_larger=tile_large_maps)
    generator = generator.to(device)
    model = _InfererModule(generator, inferer)
    has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in generator.modules())
    torch.manual_seed(seed)
    results, files = [], []
    for name, m in inputs:
        x = torch.from_numpy(density_to_network(m))[None, None].to(device)
        if fix_noise and has_dropout and hasattr(generator, "sample_noise"):
            if inferer is not None and tuple(x.shape[2:]) != (box,) * 3:
                raise ValueError("fix_noise needs maps of exactly the box size when an inferer tiles the input")
            mean, std = mc_dropout(generator, x, k=k, noise=generator.sample_noise(x))
        else:
            mean, std = mc_dropout(model, x, k=k)
        mean_z, std_z = network_to_subtomo(mean)[0, 0], network_to_subtomo(std)[0, 0]
        files.append(
            {
                "map": name,
                "mean": _write(out / f"{name}_mean.mrc", mean_z, voxel_size, overwrite),
                "std": _write(out / f"{name}_std.mrc", std_z, voxel_size, overwrite),
                "mean_std": float(std_z.mean()),
                "max_std": float(std_z.max()),
            }
        )
        results.append((m, mean_z, std_z))
    std_hi = max(float(r[2].max()) for r in results) or 1.0
    tiles = []
    for m, mean_z, std_z in results:
        tiles += central_slices(m, 0.0, 1.0)
        tiles += central_slices(mean_z, -SUBTOMO_SCALE, SUBTOMO_SCALE)
        tiles += central_slices(std_z, 0.0, std_hi)
    _write(out / "uncertainty.png", _montage(tiles, ncols=6), None, overwrite)
    summary = {"k": k, "fix_noise": fix_noise and has_dropout, "voxel_size_A": voxel_size, "std_display_max": std_hi,
               "std_source": "mc_dropout" + (" (noise fixed)" if fix_noise else " + generator noise") if has_dropout
               else "generator_noise (the generator has no dropout layers)", "files": files}
    save_json(summary, out / "uncertainty.json", overwrite=overwrite)
    return summary


@torch.no_grad()
def generate_subtomograms(
    generator: nn.Module, densities: np.ndarray, n_samples: int, seed: int = 0,
    device: str | torch.device = "cpu", batch: int = 8,
) -> np.ndarray:
    """``n_samples`` generator outputs per ``(N, B, B, B)`` map, in z units: ``(n_samples * N, B, B, B)``, sample
    ``j`` of map ``i`` at ``j * N + i``. Eval mode (dropout off); noise from ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    generator = generator.to(device).eval()
    out = []
    for _ in range(n_samples):
        for i in range(0, len(densities), batch):
            x = torch.from_numpy(density_to_network(densities[i : i + batch]))[:, None].to(device)
            out.append(network_to_subtomo(generator(x))[:, 0])
    return np.concatenate(out)
