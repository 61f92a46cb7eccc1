"""Evaluation table of the ``confocal_enhance`` bundle: networks against Richardson-Lucy on held-out pairs.

:func:`evaluate_methods` scores, on one or several held-out sets, the wide-field input (a trivial method),
Richardson-Lucy deconvolution with each pair's *true* wide-field PSF (the classical baseline, its iteration count
tuned on the validation pairs) and any number of networks. Every output is compared with the noise-free confocal
target after :func:`~emgan_monai.metrics.image_quality.normalize_pair` with:

* SSIM / PSNR / MSE / NRMSE (:func:`~emgan_monai.metrics.image_quality.image_quality`), fidelity;
* the FRC cutoff against the target and the high-frequency power relative to the target
  (:mod:`emgan_monai.metrics.sharpness`), sharpness, so that detail SSIM penalises is visible.

It writes ``metrics.json`` (per image, mean / std per set and method, the Richardson-Lucy tuning) and ``metrics.md``
(one table per set).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch
from monai.inferers import Inferer
from torch import nn

from ..metrics.image_quality import image_quality, normalize_pair, richardson_lucy_baseline, tune_rl_iterations
from ..metrics.sharpness import frc_cutoff, high_frequency_power_ratio
from ..physics.optics import widefield_psf
from ..transforms import ScalePercentile

__all__ = ["METRICS", "evaluate_methods"]

logger = logging.getLogger(__name__)

#: per-image scores of the table: fidelity, then sharpness
METRICS = ("ssim", "psnr", "mse", "nrmse", "frc", "hf_power")


def _pair_records(datalist: Sequence[Mapping[str, str]]) -> list[dict[str, Any] | None]:
    """The ``pairs.json`` record (na, photons, ...) of each synthesised pair, ``None`` for real pairs."""
    cache: dict[Path, dict[str, dict[str, Any]]] = {}
    records: list[dict[str, Any] | None] = []
    for item in datalist:
        root = Path(item["image"]).parent.parent
        if root not in cache:
            meta_file = root / "pairs.json"
            cache[root] = {}
            if meta_file.is_file():
                meta = json.loads(meta_file.read_text())
                for rec in meta.get("pairs", []):
                    cache[root][Path(rec["image"]).name] = {**rec, "_meta": meta}
        records.append(cache[root].get(Path(item["image"]).name))
    return records


def _wf_psf_2d(
    record: Mapping[str, Any] | None, optics: Mapping[str, Any], psf_shape: Sequence[int] | None
) -> np.ndarray:
    """z-projected true wide-field PSF of a pair (its NA and grid from ``pairs.json``), or from ``optics``."""
    if record is not None:
        meta = record["_meta"]
        psf_shape = meta["psf_shape"] if psf_shape is None else psf_shape
        ranges = meta["ranges"]
        params = {
            "na": record["na"],
            "wavelength_em_um": ranges["wavelength_em_um"],
            "n_immersion": ranges["n_immersion"],
            "spacing_zyx_um": meta["spacing_zyx_um"],
            "model": meta["psf_model"],
        }
    else:
        params = dict(optics)
        psf_shape = params.pop("psf_shape", psf_shape)
    if psf_shape is None:
        raise ValueError("rl_psf_shape (or optics['psf_shape']) is needed for the Richardson-Lucy PSF of real pairs.")
    spacing = params.pop("spacing_zyx_um")
    return widefield_psf(psf_shape, spacing, **params).sum(axis=0)


def _load_plane(path: str) -> np.ndarray:
    arr = np.squeeze(tifffile.imread(path))
    if arr.ndim != 2:
        raise ValueError(f"{path}: evaluation expects 2D images, got shape {arr.shape}.")
    return arr.astype(np.float32)


@torch.no_grad()
def _predict(network: nn.Module, inferer: Inferer, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Network output for a 2D image ``(H, W)`` in the units of the percentile-normalised target."""
    x = ScalePercentile()(torch.from_numpy(image)[None]).as_tensor()[None].to(device)  # (1, 1, H, W)
    network.eval()
    return inferer(x, network)[0, 0].float().cpu().numpy()


def _scores(pred: np.ndarray, target: np.ndarray, data_range: float, normalize: str) -> dict[str, float]:
    scores = image_quality(pred, target, data_range=data_range, normalize=normalize)  # type: ignore[arg-type]
    p, t = normalize_pair(pred, target, normalize)  # type: ignore[arg-type]
    scores["frc"] = frc_cutoff(p, t)
    scores["hf_power"] = high_frequency_power_ratio(p, t)
    return scores


def _tune_rl(val_items, optics, rl_psf_shape, rl_candidates, normalize) -> dict[str, Any]:
    """One Richardson-Lucy iteration count for all validation pairs (each with its own true PSF)."""
    scores: dict[int, list[float]] = {int(c): [] for c in rl_candidates}
    for item, rec in val_items:
        psf = _wf_psf_2d(rec, optics, rl_psf_shape)
        _, s = tune_rl_iterations([(_load_plane(item["image"]), _load_plane(item["label"]))], psf,
                                  candidates=rl_candidates, normalize=normalize, return_scores=True)  # fmt: skip
        for c, v in s.items():
            scores[c].append(v)
    mean_scores = {c: float(np.mean(v)) for c, v in scores.items()}
    best = max(mean_scores, key=lambda c: (mean_scores[c], -c))
    return {"iterations": best, "val_ssim_by_iterations": mean_scores, "val_pairs": len(val_items)}


def _table(name: str, n: int, summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
    lines = [
        f"### {name} ({n} pairs)",
        "",
        "| method | SSIM | PSNR (dB) | MSE | NRMSE | FRC cutoff (1/px) | HF power / target |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {s['ssim']['mean']:.4f} +- {s['ssim']['std']:.4f} | {s['psnr']['mean']:.2f} +- "
            f"{s['psnr']['std']:.2f} | {s['mse']['mean']:.2e} | {s['nrmse']['mean']:.4f} | {s['frc']['mean']:.3f} | "
            f"{s['hf_power']['mean']:.3f} |"
        )
    return [*lines, ""]


def evaluate_methods(
    val_datalist: Sequence[Mapping[str, str]],
    test_datalist: Sequence[Mapping[str, str]] | Mapping[str, Sequence[Mapping[str, str]]],
    networks: Mapping[str, nn.Module],
    inferer: Inferer,
    output_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    rl_candidates: Sequence[int] = (1, 2, 3, 5, 8, 12, 20, 30),
    rl_psf_shape: Sequence[int] | None = None,
    optics: Mapping[str, Any] | None = None,
    normalize: Literal["percentile", "minmse"] = "minmse",
    data_range: float = 1.0,
    max_val_pairs: int | None = 12,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score wide-field input, Richardson-Lucy and networks against the confocal targets of held-out pairs.

    Parameters
    ----------
    val_datalist : Sequence[Mapping[str, str]]
        ``[{"image": wf, "label": confocal}, ...]`` 2D pairs; only tune the Richardson-Lucy iterations.
    test_datalist : Sequence[Mapping[str, str]] | Mapping[str, Sequence[Mapping[str, str]]]
        Held-out pairs, or several named held-out sets (e.g. ``{"test": ..., "loso": ...}``): one table each.
    networks : Mapping[str, nn.Module]
        Row name -> 2D network ``(B, 1, H, W) -> (B, 1, H, W)`` on percentile-normalised input.
    inferer : Inferer
        How networks are applied (e.g. :class:`~emgan_monai.inferers.PlanewiseInferer`).
    output_dir : str | os.PathLike
        Receives ``metrics.json`` and ``metrics.md``.
    device : str | torch.device
        Device of the networks.
    rl_candidates : Sequence[int]
        Richardson-Lucy iteration counts tried on ``val``.
    rl_psf_shape : Sequence[int] | None
        Grid ``(Z, Y, X)`` of the wide-field PSF (z-projected for 2D deconvolution); ``None`` uses the grid the
        pairs were synthesised with (from ``pairs.json``), i.e. exactly the true PSF.
    optics : Mapping[str, Any] | None
        For real pairs (no ``pairs.json``): ``widefield_psf`` arguments ``na``, ``wavelength_em_um``,
        ``n_immersion``, ``spacing_zyx_um``; if ``None`` the Richardson-Lucy row is skipped for them.
    normalize : {"percentile", "minmse"}
        Intensity normalisation before scoring.
    data_range : float
        Range for SSIM/PSNR on the normalised images.
    max_val_pairs : int | None
        Validation pairs used for the RL tuning (evenly spaced; ``None`` = all).
    overwrite : bool
        Replace existing ``metrics.json`` / ``metrics.md``.

    Returns
    -------
    dict[str, Any]
        ``{"sets": {set: {"n", "summary": {method: {metric: {"mean", "std"}}}, "per_image": ...}}, "rl": ...}``;
        for a single (unnamed) test list also ``"summary"`` and ``"per_image"`` of that set at the top level.
    """
    out = Path(output_dir)
    files = [out / "metrics.json", out / "metrics.md"]
    if not overwrite:
        for f in files:
            if f.exists():
                raise FileExistsError(f"{f} already exists; choose another output_dir or pass --overwrite true.")
    sets = dict(test_datalist) if isinstance(test_datalist, Mapping) else {"test": test_datalist}
    if not sets or not all(sets.values()):
        raise ValueError(f"evaluate_methods needs at least one pair per held-out set, got {[len(v) for v in sets.values()]}.")
    device = torch.device(device)
    optics = optics or {}
    val_records = _pair_records(val_datalist)
    set_records = {name: _pair_records(items) for name, items in sets.items()}
    all_records = val_records + [r for recs in set_records.values() for r in recs]
    rl_info = None
    if val_datalist and (all(r is not None for r in all_records) or optics):
        val_items = list(zip(val_datalist, val_records))
        if max_val_pairs is not None and len(val_items) > max_val_pairs:
            idx = np.linspace(0, len(val_items) - 1, max_val_pairs).round().astype(int)
            val_items = [val_items[i] for i in idx]
        rl_info = _tune_rl(val_items, optics, rl_psf_shape, rl_candidates, normalize)
    rl_name = f"Richardson-Lucy ({rl_info['iterations']} it., true PSF)" if rl_info else None
    result: dict[str, Any] = {"normalize": normalize, "data_range": data_range, "rl": rl_info, "sets": {}}
    lines = [f"Scores after '{normalize}' normalisation, data range {data_range:g} (mean +- std over images).", ""]
    for set_name, items in sets.items():
        per_image: dict[str, list[dict[str, Any]]] = {"wide-field input": []}
        if rl_name:
            per_image[rl_name] = []
        per_image.update({name: [] for name in networks})
        for item, rec in zip(items, set_records[set_name]):
            wf, target = _load_plane(item["image"]), _load_plane(item["label"])
            preds = {"wide-field input": wf}
            if rl_name:
                preds[rl_name] = richardson_lucy_baseline(wf, _wf_psf_2d(rec, optics, rl_psf_shape), rl_info["iterations"])
            for name, net in networks.items():
                preds[name] = _predict(net, inferer, wf, device)
            extra: dict[str, Any] = {"image": item["image"]}
            if rec is not None:
                extra.update({k: rec[k] for k in ("specimen", "plane", "na", "photons", "background", "read_noise")
                              if k in rec})  # fmt: skip
            for name, pred in preds.items():
                per_image[name].append({**extra, **_scores(pred, target, data_range, normalize)})
        summary = {
            name: {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))}
                   for k in METRICS}
            for name, rows in per_image.items()
        }  # fmt: skip
        result["sets"][set_name] = {"n": len(items), "summary": summary, "per_image": per_image}
        lines += _table(set_name, len(items), summary)
    if not isinstance(test_datalist, Mapping):
        result.update({k: result["sets"]["test"][k] for k in ("summary", "per_image")})
        result["n_test"] = result["sets"]["test"]["n"]
    out.mkdir(parents=True, exist_ok=True)
    write_mode = "w" if overwrite else "x"
    with open(files[0], write_mode, encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    with open(files[1], write_mode, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    logger.info("\n%s", "\n".join(lines))
    return result
