"""Evaluation of the ``cryoet_gan`` bundle: generators against the fair traditional simulation and real data.

The bundle's ``evaluate.json`` runs it as named steps, each a few arguments:

1. the held-out domains (:func:`~emgan_monai.data.cryoet_domains.load_deepfinder_domains`; the training domains come
   from ``train.json``);
2. :func:`calibrate_baselines`: the traditional simulator calibrated on the real training data
   (:func:`~emgan_monai.data.cryoet_calibration.calibrate_baseline`), white-noise and wedge-noise variants;
3. :func:`baseline_sets` and :func:`generator_sets`: ``n_samples`` subtomograms per held-out map from every baseline
   and every generator (:func:`generate_subtomograms`);
4. :func:`score_sets`: a subtomogram classifier scores each set and the real data: accuracy and confusion matrix
   (:mod:`emgan_monai.metrics.classification`), PRDC and Frechet distance of classifier features
   (:mod:`emgan_monai.metrics.distances`), SSIM with the real subtomogram of the same particle
   (:func:`~emgan_monai.metrics.image_quality.clipped_ssim`), standard deviation against real;
5. :func:`metrics_table`: the rows with the evaluation setting and the targets (``criteria``);
6. :func:`write_report`: ``metrics.json``, ``metrics.md`` (:func:`metrics_markdown`) and ``examples.png``.

Every set is in z units of the real *training* subtomograms; volumes are ``(N, B, B, B)`` float32 arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emgan_monai.data.cryoet import zscore
from emgan_monai.data.cryoet_calibration import BaselineCalibration, calibrate_baseline
from emgan_monai.data.cryoet_domains import CryoETDomains
from emgan_monai.io import write_image
from emgan_monai.metrics.classification import accuracy_with_se, confusion_matrix
from emgan_monai.metrics.distances import frechet_distance, prdc
from emgan_monai.metrics.image_quality import clipped_ssim
from emgan_monai.networks import SubtomogramClassifier, build_subtomogram_generator
from emgan_monai.transforms.cryoet_value_range import SUBTOMO_SCALE, density_to_network, network_to_subtomo
from emgan_monai.visualize import central_slices, montage

from .cryoet_inverse import inverse_criteria

__all__ = [
    "baseline_sets",
    "calibrate_baselines",
    "check_outputs",
    "generate_subtomograms",
    "generator_sets",
    "load_generators",
    "metrics_markdown",
    "metrics_table",
    "score_sets",
    "write_report",
]

_OUTPUTS = ("metrics.json", "metrics.md", "examples.png")


def check_outputs(output_dir: str | Path, overwrite: bool = False) -> None:
    """Refuse to start when ``output_dir`` holds a previous evaluation's files, unless ``overwrite``."""
    for name in _OUTPUTS:
        if (Path(output_dir) / name).exists() and not overwrite:
            raise FileExistsError(
                f"{Path(output_dir) / name} exists; pass overwrite=True (--overwrite true) to replace it"
            )


@torch.no_grad()
def generate_subtomograms(
    generator: nn.Module,
    densities: np.ndarray,
    n_samples: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch: int = 8,
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


def calibrate_baselines(
    train: CryoETDomains,
    voxel_size: float,
    snr: float | None = None,
    wedge_noise: bool = True,
    seed: int = 0,
) -> dict[str, BaselineCalibration]:
    """The fair traditional baselines, calibrated on the real training data (:func:`calibrate_baseline`).

    ``traditional_simulation``: CTF + wedge + white noise at ``snr`` (``None``: the SNR whose simulations the
    estimator reads as the real training subtomograms' value); with ``wedge_noise`` also
    ``traditional_simulation_wedge_noise``: the noise passed through the missing wedge too, always calibrated.
    """
    baselines = {
        "traditional_simulation": calibrate_baseline(train, voxel_size, seed=seed, simulator_kwargs={}, snr=snr)
    }
    if wedge_noise:
        baselines["traditional_simulation_wedge_noise"] = calibrate_baseline(
            train, voxel_size, seed=seed, simulator_kwargs={"noise_in_wedge": True}
        )
    return baselines


def baseline_sets(
    test: CryoETDomains,
    baselines: Mapping[str, BaselineCalibration],
    n_samples: int,
    voxel_size: float,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """``{name: (n_samples * N, B, B, B)}`` simulated subtomograms of the ``N`` held-out maps, sample ``j`` of map
    ``i`` at ``j * N + i``, in z units of the real training data (each baseline's calibrated units)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    maps = np.concatenate([test.density] * n_samples)
    return {name: cal.simulate(maps, voxel_size, seed=seed) for name, cal in baselines.items()}


def generator_sets(
    test: CryoETDomains,
    generators: Mapping[str, nn.Module],
    n_samples: int,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """``{name: (n_samples * N, B, B, B)}`` outputs of every generator for the ``N`` held-out maps
    (:func:`generate_subtomograms`, z units, sample ``j`` of map ``i`` at ``j * N + i``)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    return {
        name: generate_subtomograms(gen, test.density, n_samples, seed=seed, device=device)
        for name, gen in generators.items()
    }


@torch.no_grad()
def _classify(classifier: SubtomogramClassifier, volumes: np.ndarray, device: torch.device, batch: int = 16) -> tuple:
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
def score_sets(
    classifier: SubtomogramClassifier,
    train: CryoETDomains,
    test: CryoETDomains,
    sets: Mapping[str, np.ndarray],
    prdc_k: int = 5,
    device: str | torch.device = "cpu",
) -> dict[str, dict[str, Any]]:
    """Score the real held-out and training subtomograms and every synthetic set with ``classifier``.

    **One normalisation**: the real subtomograms are z-scored with the real training statistics; ``sets`` must be
    in those units (:func:`baseline_sets`, :func:`generator_sets`). Per row: ``accuracy`` with ``accuracy_se``
    (binomial) and ``accuracy_se_by_map``, ``classes_predicted``, ``confusion_matrix`` (rows: true class 1..C,
    columns: predicted), ``std``, ``std_ratio`` to the real held-out std and ``mean``; for every row but the real
    held-out one ``precision``, ``recall``, ``density``, ``coverage`` (Naeem et al., ``k = prdc_k``) and
    ``frechet_distance`` of classifier features against the real held-out subtomograms; for the synthetic sets
    ``ssim`` with the real subtomogram of the same particle and ``per_map_accuracy``.

    Parameters
    ----------
    sets
        ``{name: (n_samples * N, B, B, B)}``, sample ``j`` of held-out map ``i`` at ``j * N + i``.
    """
    device = torch.device(device)
    stats = train.stats()
    n_classes = int(getattr(getattr(classifier, "head", None), "out_features", test.label.max()))
    true = test.label - 1
    real = zscore(test.subtomo, stats)
    real_train = zscore(train.subtomo, stats)
    real_logits, real_feats = _classify(classifier, real, device)
    real_std = float(real.std())

    def row(
        vols: np.ndarray,
        labels: np.ndarray,
        logits: np.ndarray,
        feats: np.ndarray,
        n_maps: int,
        paired: np.ndarray | None,
    ) -> dict[str, Any]:
        pred = logits.argmax(1)
        correct = pred == labels
        r: dict[str, Any] = {
            "n": int(len(labels)),
            **accuracy_with_se(correct, n_maps),
            "classes_predicted": int(np.unique(pred).size),
            "confusion_matrix": confusion_matrix(labels, pred, n_classes).tolist(),
            "std": float(vols.std()),
            "std_ratio": float(vols.std() / real_std),
            "mean": float(vols.mean()),
        }
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
    for name, vols in sets.items():
        n_samples = len(vols) // len(test)
        logits, feats = _classify(classifier, vols, device)
        rows[name] = row(
            vols, np.concatenate([true] * n_samples), logits, feats, len(test), np.concatenate([real] * n_samples)
        )
    return rows


def metrics_table(
    rows: Mapping[str, dict[str, Any]],
    setting: Mapping[str, Any],
    train: CryoETDomains,
    baselines: Mapping[str, BaselineCalibration],
    generators: Mapping[str, nn.Module],
    inverse: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The evaluation's result: ``setting`` (the given entries plus the normalisation, the baselines' calibrations
    and the generators' descriptions), the rows of :func:`score_sets`, ``criteria``: the issue's targets for every
    generator against the strongest baseline, and (given) ``inverse``: the S -> D rows of
    :func:`emgan_monai.evaluation.cryoet_inverse.inverse_scores`."""
    stats = train.stats()
    given = dict(setting)
    ordered = {k: given.pop(k) for k in ("train_tomograms", "test_tomograms") if k in given}
    metrics: dict[str, Any] = {
        "setting": {
            **ordered,
            "n_test_particles": int(rows["real_heldout"]["n"]),
            **{k: given.pop(k) for k in ("n_samples_per_map", "box", "binning", "voxel_size_A") if k in given},
            "normalisation": f"z units of the real training subtomograms (mean {stats.mean:.6g}, std {stats.std:.6g}) "
            "for every set",
            "baselines": {
                name: {
                    "snr": cal.snr,
                    "snr_estimate_target": cal.target_snr_estimate,
                    "simulator": cal.simulator,
                    "zscore_of_simulated_training_set": {"mean": cal.stats.mean, "std": cal.stats.std},
                }
                for name, cal in baselines.items()
            },
            "baseline_snr": baselines["traditional_simulation"].snr,
            "generators": {name: _describe_generator(g) for name, g in generators.items()},
            **given,
        },
        **rows,
    }
    metrics["criteria"] = {name: _criteria(rows, name, list(baselines)) for name in generators}
    if inverse:
        metrics["inverse"] = dict(inverse)
        metrics["inverse_criteria"] = inverse_criteria(inverse)
    return metrics


def write_report(
    metrics: Mapping[str, Any],
    test: CryoETDomains,
    sets: Mapping[str, np.ndarray],
    train: CryoETDomains,
    output_dir: str | Path,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``metrics.md`` and ``examples.png`` (one row per class: map, real, then the first
    sample of every set) to ``output_dir``; returns ``metrics``."""
    out = Path(output_dir)
    check_outputs(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out / "metrics.md").write_text(metrics_markdown(dict(metrics)))
    real = zscore(test.subtomo, train.stats())
    _examples_png(out / "examples.png", test, real, {k: v[: len(test)] for k, v in sets.items()}, overwrite)
    return dict(metrics)


def _describe_generator(g: nn.Module) -> dict[str, Any]:
    d: dict[str, Any] = {"class": type(g).__name__, "parameters": int(sum(p.numel() for p in g.parameters()))}
    physics = getattr(g, "physics", None)  # PhysicsInformedGenerator's fitted parameters
    if physics is not None:
        d["physics"] = physics()
    return d


def _criteria(rows: Mapping[str, Any], name: str, baselines: list[str]) -> dict[str, Any]:
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
    return {
        **{k: bool(v) for k, v in checks.items()},
        "all": bool(all(checks.values())),
        "best_baseline_by_accuracy": best,
        "accuracy_minus_best_baseline": float(diff.mean()),
        "accuracy_minus_best_baseline_se_paired_by_map": float(diff.std(ddof=1) / np.sqrt(diff.size)),
        "accuracy_over_real": float(g["accuracy"] / max(real["accuracy"], 1e-12)),
    }


_ROW_NAMES = {
    "real_heldout": "real held-out subtomograms (ceiling)",
    "real_train": "real training subtomograms (classifier saw them; FD/coverage floor)",
    "traditional_simulation": "traditional simulation (CTF + wedge + white noise, SNR calibrated)",
    "traditional_simulation_wedge_noise": "traditional simulation, noise through the wedge (SNR calibrated)",
    "cyclegan": "pure CycleGAN (D -> S generator)",
    "physics_gan": "physics-informed GAN (learnable simulator)",
    "physics_residual_gan": "physics-informed GAN + bounded residual (ablation)",
    "physics_cyclegan": "CycleGAN, G_ds = physics + zero-initialised 3D ResNet (Wasserstein, spectral norm)",
    "gan": "GAN (D -> S generator)",
}


def _row_keys(metrics: dict[str, Any]) -> list[str]:
    skip = {"setting", "criteria"}
    return [k for k in metrics if k not in skip and isinstance(metrics[k], dict) and "accuracy" in metrics[k]]


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """Markdown table (criteria and confusion matrices) of :func:`metrics_table`'s result."""
    lines = [
        "| method | n | classifier accuracy +- SE (SE by map) | classes predicted | Frechet distance | coverage | "
        "precision | recall | density | std (ratio to real) | SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in _row_keys(metrics):
        r = metrics[key]
        cells = [
            f"{r[m]:.3f}" if m in r else "--"
            for m in ("frechet_distance", "coverage", "precision", "recall", "density")
        ]
        lines.append(
            f"| {_ROW_NAMES.get(key, key)} | {r['n']} | {100 * r['accuracy']:.1f} % +- {100 * r['accuracy_se']:.1f} "
            f"({100 * r['accuracy_se_by_map']:.1f}) | {r['classes_predicted']} | "
            + " | ".join(cells)
            + f" | {r['std']:.3f} ({r['std_ratio']:.2f}) | "
            + (f"{r['ssim']:.3f}" if "ssim" in r else "--")
            + " |"
        )
    for name, crit in metrics.get("criteria", {}).items():
        lines += ["", f"Targets for {_ROW_NAMES.get(name, name)} (against the strongest baseline):", ""]
        lines += [
            f"- {k}: {'yes' if v else 'NO'}"
            if isinstance(v, bool)
            else f"- {k}: {v:.4f}"
            if isinstance(v, float)
            else f"- {k}: {v}"
            for k, v in crit.items()
        ]
    lines += _inverse_markdown(metrics.get("inverse", {}))
    for name, crit in metrics.get("inverse_criteria", {}).items():
        lines.append(
            f"- {name} beats the low-pass filter: {'yes' if crit['beats_lowpass_baseline'] else 'NO'} "
            f"({crit['specific_correlation_minus_lowpass']:+.3f} +- {crit['se_paired_by_particle']:.3f}, paired)"
        )
    for key in _row_keys(metrics):
        cm = np.asarray(metrics[key]["confusion_matrix"])
        lines += [
            "",
            f"Confusion matrix, {_ROW_NAMES.get(key, key)} (rows: true class, columns: predicted class):",
            "",
            "| true \\ pred | " + " | ".join(str(i + 1) for i in range(cm.shape[1])) + " |",
            "|---" * (cm.shape[1] + 1) + "|",
        ]
        lines += [f"| {i + 1} | " + " | ".join(str(v) for v in r) + " |" for i, r in enumerate(cm)]
    return "\n".join(lines) + "\n"


def _inverse_markdown(rows: Mapping[str, Any]) -> list[str]:
    """The S -> D table (:mod:`emgan_monai.evaluation.cryoet_inverse`): each method's map against the particle's."""
    if not rows:
        return []
    lines = [
        "",
        "S -> D direction on the held-out particles, against each particle's true map (same frame, no alignment): "
        "particle-specific correlation (both minus the mean training map; the headline), plain correlation, "
        "identification among all held-out maps",
        "",
        "| method | n | particle-specific correlation +- SE | correlation +- SE | identification | note |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        note = (
            f"sigma {r['sigma']} voxel (fitted on training)"
            if "sigma" in r
            else f"mean of {r['draws']} draws"
            if "draws" in r
            else ""
        )
        lines.append(
            f"| {name} | {r['n']} | {r['specific_correlation']:.3f} +- {r['specific_correlation_se']:.3f} | "
            f"{r['correlation']:.3f} +- {r['correlation_se']:.3f} | {100 * r['identification']:.1f} % | {note} |"
        )
    return lines


def _examples_png(
    path: Path, test: CryoETDomains, real: np.ndarray, volumes: dict[str, np.ndarray], overwrite: bool
) -> None:
    """One row per class: map, real, then every set of ``volumes`` (central slices across axes 0 and 1)."""
    tiles = []
    for k in np.unique(test.label):
        i = int(np.flatnonzero(test.label == k)[0])
        tiles += central_slices(test.density[i], 0.0, 1.0)
        for v in (real, *volumes.values()):
            tiles += central_slices(v[i], -SUBTOMO_SCALE, SUBTOMO_SCALE)
    write_image(path, montage(tiles, ncols=2 * (2 + len(volumes)), pad=2), voxel_size=None, overwrite=overwrite)


def load_generators(
    files: dict[str, Sequence[Any]], generator_kwargs: dict[str, Any], device: str | torch.device = "cpu"
) -> dict[str, nn.Module]:
    """``{name: (kind, weights_path[, kwargs])}`` -> ``{name: generator}`` (eval mode) built with
    :func:`~emgan_monai.networks.build_subtomogram_generator` ``(kind, **generator_kwargs, **kwargs)``."""
    out = {}
    for name, spec in files.items():
        kind, path, *extra = spec
        kw = {**generator_kwargs, **(extra[0] if extra else {})}
        if not Path(path).is_file():
            raise FileNotFoundError(f"generator {name!r}: weights {path} not found")
        net = build_subtomogram_generator(kind, **kw)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        out[name] = net.to(device).eval()
    return out
