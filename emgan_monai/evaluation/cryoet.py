"""Evaluation of the ``cryoet_gan`` bundle: generators against the fair traditional simulation and real data.

:func:`evaluate_cryoet` (called by the bundle's ``evaluate.json``) cuts the two domains of held-out tomograms
(:func:`~emgan_monai.data.cryoet_domains.load_deepfinder_domains`), makes ``n_samples`` subtomograms per held-out
map with every generator (:func:`~emgan_monai.inferers.cryoet_synthesis.generate_subtomograms`) and with the
traditional simulator calibrated on the real training data
(:func:`~emgan_monai.physics.simulator_calibration.calibrate_baseline`), and scores each set with a subtomogram
classifier: accuracy and confusion matrix (:mod:`emgan_monai.metrics.classification`), PRDC and Frechet distance of
classifier features (:mod:`emgan_monai.metrics.distances`), SSIM with the real subtomogram of the same particle
(:func:`~emgan_monai.metrics.image_quality.clipped_ssim`), standard deviation against real. It writes
``metrics.json``, ``metrics.md`` (:func:`metrics_markdown`) and ``examples.png``.

Every set is in z units of the real *training* subtomograms; volumes are ``(N, B, B, B)`` float32 arrays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emgan_monai.data.cryoet import zscore
from emgan_monai.data.cryoet_domains import CryoETDomains, load_deepfinder_domains
from emgan_monai.inferers.cryoet_synthesis import generate_subtomograms
from emgan_monai.io import write_image
from emgan_monai.metrics.classification import accuracy_with_se, confusion_matrix
from emgan_monai.metrics.distances import frechet_distance, prdc
from emgan_monai.metrics.image_quality import clipped_ssim
from emgan_monai.physics.simulator_calibration import calibrate_baseline
from emgan_monai.transforms.cryoet_value_range import SUBTOMO_SCALE
from emgan_monai.visualize import central_slices, montage

__all__ = ["evaluate_cryoet", "metrics_markdown"]


@torch.no_grad()
def _classify(classifier: nn.Module, volumes: np.ndarray, device: torch.device, batch: int = 16) -> tuple:
    """``(N, B, B, B)`` volumes -> ``(logits (N, C), features (N, F))`` numpy arrays of a
    :class:`~emgan_monai.networks.SubtomogramClassifier` (``features`` then ``head``), in batches of ``batch``."""
    classifier = classifier.to(device).eval()
    logits, feats = [], []
    for i in range(0, len(volumes), batch):
        x = torch.from_numpy(np.ascontiguousarray(volumes[i : i + batch], dtype=np.float32))[:, None].to(device)
        f = classifier.features(x)
        feats.append(f.cpu().numpy())
        logits.append(classifier.head(f).cpu().numpy())
    return np.concatenate(logits), np.concatenate(feats)


@torch.no_grad()
def evaluate_cryoet(
    generators: nn.Module | dict[str, nn.Module],
    classifier: nn.Module,
    dataset_dir: str | Path,
    output_dir: str | Path,
    train_tomos: Sequence[int] = (1, 2, 3, 4),
    test_tomos: Sequence[int] = (5, 6),
    box: int = 32,
    sigma: float = 1.0,
    binning: int = 1,
    n_samples: int = 8,
    voxel_size: float = 10.0,
    snr: float | None = None,
    simulator_kwargs: dict | None = None,
    wedge_noise_baseline: bool = True,
    prdc_k: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overwrite: bool = False,
) -> dict[str, Any]:
    """One table for the generators, the fair traditional simulation and real data, on held-out tomograms.

    **One normalisation**: every set is in z units of the *real training* subtomograms: real held-out (and real
    training) subtomograms are z-scored with the real training statistics; generator outputs are produced in those
    units; the baseline is z-scored with the statistics of its simulation of the *training* maps
    (:func:`calibrate_baseline`). No set is normalised with its own statistics.

    **Fair baseline**: :func:`calibrate_baseline` (simulator SNR calibrated so that :func:`estimate_snr` reads the
    real training subtomograms' value). With ``wedge_noise_baseline`` a second baseline row passes the noise through
    the missing wedge as well (``noise_in_wedge=True``, closer to noise reconstructed from a tilt series), calibrated
    the same way.

    For every held-out particle (its D map has a known class and pose) each generator and baseline makes
    ``n_samples`` subtomograms (>= 8 recommended). Per row:

    * ``accuracy`` with ``accuracy_se`` (binomial) and ``accuracy_se_by_map`` (across maps), ``confusion_matrix``
      (rows: true class 1..C, columns: predicted), ``classes_predicted`` (distinct predicted classes);
    * ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al., ``k = prdc_k``), ``frechet_distance``
      of classifier features against the real held-out subtomograms;
    * ``std`` (z units) and ``std_ratio`` to the real held-out std; ``ssim`` with the real subtomogram of the
      same particle.

    ``criteria`` checks the issue's targets for every generator against the strongest baseline. Writes
    ``metrics.json``, ``metrics.md`` and ``examples.png`` to ``output_dir`` and returns the metrics dict.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if isinstance(generators, nn.Module):
        generators = {"gan": generators}
    device = torch.device(device)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("metrics.json", "metrics.md", "examples.png"):
        if (out / name).exists() and not overwrite:
            raise FileExistsError(f"{out / name} exists; pass overwrite=True (--overwrite true) to replace it")
    train = load_deepfinder_domains(dataset_dir, train_tomos, box=box, sigma=sigma, binning=binning)
    test = load_deepfinder_domains(dataset_dir, test_tomos, box=box, sigma=sigma, binning=binning)
    stats = train.stats()
    n_classes = int(getattr(getattr(classifier, "head", None), "out_features", test.label.max()))
    true = test.label - 1
    real = zscore(test.subtomo, stats)
    real_train = zscore(train.subtomo, stats)
    real_logits, real_feats = _classify(classifier, real, device)
    real_std = float(real.std())

    rep_true = np.concatenate([true] * n_samples)
    rep_real = np.concatenate([real] * n_samples)
    maps = np.concatenate([test.density] * n_samples)

    def row(vols: np.ndarray, labels: np.ndarray, logits: np.ndarray, feats: np.ndarray, n_maps: int,
            paired: np.ndarray | None) -> dict[str, Any]:
        pred = logits.argmax(1)
        correct = pred == labels
        r: dict[str, Any] = {"n": int(len(labels)), **accuracy_with_se(correct, n_maps),
                             "classes_predicted": int(np.unique(pred).size),
                             "confusion_matrix": confusion_matrix(labels, pred, n_classes).tolist(),
                             "std": float(vols.std()), "std_ratio": float(vols.std() / real_std),
                             "mean": float(vols.mean())}
        if feats is not real_feats:
            r.update(prdc(real_feats, feats, k=prdc_k))
            r["frechet_distance"] = float(frechet_distance(real_feats, feats))
        if paired is not None:
            r["ssim"] = clipped_ssim(vols, paired, clip=SUBTOMO_SCALE)
            r["per_map_accuracy"] = [round(float(v), 4) for v in correct.reshape(-1, n_maps).mean(0)]
        return r

    rows: dict[str, Any] = {"real_heldout": row(real, true, real_logits, real_feats, len(test), None)}
    tl, tf = _classify(classifier, real_train, device)
    rows["real_train"] = row(real_train, train.label - 1, tl, tf, len(train), None)
    baselines = {"traditional_simulation": dict(simulator_kwargs or {})}
    if wedge_noise_baseline:
        baselines["traditional_simulation_wedge_noise"] = {**(simulator_kwargs or {}), "noise_in_wedge": True}
    calibrations, volumes = {}, {}
    for name, kwargs in baselines.items():
        cal = calibrate_baseline(train, voxel_size, seed=seed, simulator_kwargs=kwargs,
                                 snr=snr if name == "traditional_simulation" else None)
        calibrations[name] = cal
        volumes[name] = cal.simulate(maps, voxel_size, seed=seed)
    for name, gen in generators.items():
        volumes[name] = generate_subtomograms(gen, maps[: len(test)], n_samples, seed=seed, device=device)
    for name, vols in volumes.items():
        logits, feats = _classify(classifier, vols, device)
        rows[name] = row(vols, rep_true, logits, feats, len(test), rep_real)

    metrics: dict[str, Any] = {
        "setting": {
            "train_tomograms": list(train_tomos),
            "test_tomograms": list(test_tomos),
            "n_test_particles": len(test),
            "n_samples_per_map": n_samples,
            "box": box,
            "binning": binning,
            "voxel_size_A": voxel_size,
            "normalisation": "z units of the real training subtomograms (mean %.6g, std %.6g) for every set"
                             % (stats.mean, stats.std),
            "baselines": {name: {"snr": cal.snr, "snr_estimate_target": cal.target_snr_estimate,
                                 "simulator": cal.simulator, "zscore_of_simulated_training_set":
                                 {"mean": cal.stats.mean, "std": cal.stats.std}}
                          for name, cal in calibrations.items()},
            "baseline_snr": calibrations["traditional_simulation"].snr,
            "generators": {name: _describe_generator(g) for name, g in generators.items()},
            "prdc_k": prdc_k,
            "seed": seed,
        },
        **rows,
    }
    metrics["criteria"] = {name: _criteria(rows, name, list(baselines)) for name in generators}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(metrics_markdown(metrics))
    _examples_png(out / "examples.png", test, real, {k: v[: len(test)] for k, v in volumes.items()}, overwrite)
    return metrics


def _describe_generator(g: nn.Module) -> dict[str, Any]:
    d: dict[str, Any] = {"class": type(g).__name__, "parameters": int(sum(p.numel() for p in g.parameters()))}
    if hasattr(g, "physics"):
        d["physics"] = g.physics()
    return d


def _criteria(rows: dict[str, Any], name: str, baselines: list[str]) -> dict[str, Any]:
    """The issue's 'done when' targets for generator ``name`` against the strongest baseline of each metric."""
    g, real = rows[name], rows["real_heldout"]
    best = max(baselines, key=lambda b: rows[b]["accuracy"])
    best_acc = rows[best]["accuracy"]
    diff = np.asarray(g["per_map_accuracy"]) - np.asarray(rows[best]["per_map_accuracy"])
    best_fd = min(rows[b]["frechet_distance"] for b in baselines)
    best_cov = max(rows[b]["coverage"] for b in baselines)
    checks = {
        "accuracy_at_least_best_baseline": g["accuracy"] >= best_acc,
        "accuracy_at_least_75pct_of_real": g["accuracy"] >= 0.75 * real["accuracy"],
        "frechet_below_best_baseline": g["frechet_distance"] < best_fd,
        "coverage_at_least_best_baseline": g["coverage"] >= best_cov,
        "at_least_8_of_9_classes": g["classes_predicted"] >= min(8, len(real["confusion_matrix"]) - 1),
        "std_within_20pct_of_real": abs(g["std_ratio"] - 1.0) <= 0.2,
    }
    return {**{k: bool(v) for k, v in checks.items()}, "all": bool(all(checks.values())),
            "best_baseline_by_accuracy": best,
            "accuracy_minus_best_baseline": float(diff.mean()),
            "accuracy_minus_best_baseline_se_paired_by_map": float(diff.std(ddof=1) / np.sqrt(diff.size)),
            "accuracy_over_real": float(g["accuracy"] / max(real["accuracy"], 1e-12))}


_ROW_NAMES = {
    "real_heldout": "real held-out subtomograms (ceiling)",
    "real_train": "real training subtomograms (classifier saw them; FD/coverage floor)",
    "traditional_simulation": "traditional simulation (CTF + wedge + white noise, SNR calibrated)",
    "traditional_simulation_wedge_noise": "traditional simulation, noise through the wedge (SNR calibrated)",
    "cyclegan": "pure CycleGAN (D -> S generator)",
    "physics_gan": "physics-informed GAN (learnable simulator)",
    "physics_residual_gan": "physics-informed GAN + bounded residual (ablation)",
    "gan": "GAN (D -> S generator)",
}


def _row_keys(metrics: dict[str, Any]) -> list[str]:
    skip = {"setting", "criteria"}
    return [k for k in metrics if k not in skip and isinstance(metrics[k], dict) and "accuracy" in metrics[k]]


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """Markdown table (criteria and confusion matrices) of :func:`evaluate_cryoet`'s result."""
    lines = [
        "| method | n | classifier accuracy +- SE (SE by map) | classes predicted | Frechet distance | coverage | "
        "precision | recall | density | std (ratio to real) | SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in _row_keys(metrics):
        r = metrics[key]
        cells = [f"{r[m]:.3f}" if m in r else "--" for m in ("frechet_distance", "coverage", "precision", "recall",
                                                            "density")]
        lines.append(
            f"| {_ROW_NAMES.get(key, key)} | {r['n']} | {100 * r['accuracy']:.1f} % +- {100 * r['accuracy_se']:.1f} "
            f"({100 * r['accuracy_se_by_map']:.1f}) | {r['classes_predicted']} | " + " | ".join(cells)
            + f" | {r['std']:.3f} ({r['std_ratio']:.2f}) | " + (f"{r['ssim']:.3f}" if "ssim" in r else "--") + " |"
        )
    for name, crit in metrics.get("criteria", {}).items():
        lines += ["", f"Targets for {_ROW_NAMES.get(name, name)} (against the strongest baseline):", ""]
        lines += [f"- {k}: {'yes' if v else 'NO'}" if isinstance(v, bool) else
                  f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in crit.items()]
    for key in _row_keys(metrics):
        cm = np.asarray(metrics[key]["confusion_matrix"])
        lines += ["", f"Confusion matrix, {_ROW_NAMES.get(key, key)} (rows: true class, columns: predicted class):", "",
                  "| true \\ pred | " + " | ".join(str(i + 1) for i in range(cm.shape[1])) + " |",
                  "|---" * (cm.shape[1] + 1) + "|"]
        lines += [f"| {i + 1} | " + " | ".join(str(v) for v in r) + " |" for i, r in enumerate(cm)]
    return "\n".join(lines) + "\n"


def _examples_png(path: Path, test: CryoETDomains, real: np.ndarray, volumes: dict[str, np.ndarray],
                  overwrite: bool) -> None:
    """One row per class: map, real, then every set of ``volumes`` (central slices across axes 0 and 1)."""
    tiles = []
    for k in np.unique(test.label):
        i = int(np.flatnonzero(test.label == k)[0])
        tiles += central_slices(test.density[i], 0.0, 1.0)
        for v in (real, *volumes.values()):
            tiles += central_slices(v[i], -SUBTOMO_SCALE, SUBTOMO_SCALE)
    write_image(path, montage(tiles, ncols=2 * (2 + len(volumes)), pad=2), voxel_size=None, overwrite=overwrite)
