"""The S -> D direction of the cryo-ET CycleGAN, measured: ``G_sd(real subtomogram)`` against the particle's true map.

What makes a cycle worth having is a usable inverse: a denoised, wedge-filled map from one noisy subtomogram. On the
held-out tomograms every particle's map is known *in the subtomogram's own frame* (the DeepFinder object map cut at
the same position, :mod:`emgan_monai.data.cryoet_domains`), so no alignment is needed. Every particle is centred in its box, so a centred blob already correlates well with any
map; three scores per method, averaged over particles (SE over particles):

- ``correlation``: Pearson correlation of the output with the particle's shape map;
- ``specific_correlation`` (the headline): the same after subtracting the mean training map from both, i.e. how
  well the output predicts what is particular to this particle (its size, shape and orientation); 0 for the prior;
- ``identification``: the share of particles whose own map is, among all the held-out maps, the one the output
  correlates with best, both taken as deviations from the mean training map (chance ``1 / N``);

beside

- ``lowpass_baseline``: the contrast-inverted subtomogram low-passed with a Gaussian whose sigma is fitted on the
  *training* particles (the classical denoiser every user already has);
- ``inverted_subtomogram``: the contrast-inverted subtomogram itself (the trivial method);
- ``mean_training_map``: the mean map of the training particles for every particle, whatever its subtomogram (what
  the position prior alone gives: every particle is centred in its box).

A generator row is scored on one draw per particle and on the mean of ``n_samples`` draws (its noise and dropout
averaged out). Volumes are ``(N, B, B, B)`` float32 arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from emgan_monai.data.cryoet import zscore
from emgan_monai.data.cryoet_domains import CryoETDomains
from emgan_monai.networks import CycleGANGenerator
from emgan_monai.transforms.cryoet_value_range import subtomo_to_network

__all__ = ["fit_lowpass_sigma", "inverse_criteria", "inverse_scores", "load_inverses", "lowpass", "map_correlations"]

#: the reference rows of :func:`inverse_scores` (not generators)
REFERENCE_ROWS: tuple[str, ...] = ("lowpass_baseline", "inverted_subtomogram", "mean_training_map")
#: Gaussian sigmas (voxels) the low-pass baseline chooses from on the training particles.
LOWPASS_SIGMAS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def map_correlations(pred: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Pearson correlation of every ``pred[i]`` with ``maps[i]`` (``(N, B, B, B)`` each) -> ``(N,)``; 0 where either is
    constant."""
    p = pred.reshape(len(pred), -1).astype(np.float64)
    m = maps.reshape(len(maps), -1).astype(np.float64)
    p = p - p.mean(1, keepdims=True)
    m = m - m.mean(1, keepdims=True)
    den = np.sqrt((p**2).sum(1) * (m**2).sum(1))
    return np.where(den > 0, (p * m).sum(1) / np.where(den > 0, den, 1.0), 0.0)


def lowpass(subtomos: np.ndarray, sigma: float) -> np.ndarray:
    """Contrast-inverted, Gaussian low-passed subtomograms ``-G_sigma * s`` (``(N, B, B, B)``)."""
    return np.stack([-ndimage.gaussian_filter(s.astype(np.float32), sigma, mode="nearest") for s in subtomos])


def fit_lowpass_sigma(train: CryoETDomains, sigmas: Sequence[float] = LOWPASS_SIGMAS) -> float:
    """The sigma of :func:`lowpass` with the highest mean correlation to the maps of the *training* particles."""
    scores = [float(map_correlations(lowpass(train.subtomo, s), train.density).mean()) for s in sigmas]
    return float(sigmas[int(np.argmax(scores))])


def _row(pred: np.ndarray, maps: np.ndarray, prior: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Scores of ``pred`` against the true ``maps`` (``(N, B, B, B)`` each): correlation, correlation of the
    deviations from ``prior`` (the mean training map) and the identification rate, both read off one matrix of the
    deviations' correlations (every output against every map; its diagonal is the particle-specific correlation)."""
    corr = map_correlations(pred, maps)
    n = corr.size
    flat = lambda v: (v - v.mean(axis=(1, 2, 3), keepdims=True)).reshape(n, -1)  # noqa: E731
    p, m = flat((pred - prior).astype(np.float64)), flat((maps - prior).astype(np.float64))
    p /= np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    similarity = p @ m.T
    specific = np.diagonal(similarity)
    identified = np.argmax(similarity, axis=1) == np.arange(n)
    se = lambda v: float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0  # noqa: E731
    return {
        "n": int(n),
        "correlation": float(corr.mean()),
        "correlation_se": se(corr),
        "specific_correlation": float(specific.mean()),
        "specific_correlation_se": se(specific),
        "identification": float(identified.mean()),
        "per_class": {int(k): float(specific[labels == k].mean()) for k in np.unique(labels)},
        "per_particle_specific_correlation": [float(c) for c in specific],
    }


@torch.no_grad()
def inverse_scores(
    inverses: Mapping[str, nn.Module],
    train: CryoETDomains,
    test: CryoETDomains,
    n_samples: int = 8,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Rows ``{name: {correlation, correlation_se, per_class, ...}}`` of the S -> D direction on ``test``.

    Every ``inverses[name]`` (S -> D, ``(B, 1, N, N, N)`` in the network range) gets two rows: ``name`` (one draw
    per particle) and ``name + "_mean"`` (mean of ``n_samples`` draws); then ``lowpass_baseline`` (with its fitted
    ``sigma``), ``inverted_subtomogram`` and ``mean_training_map``. The subtomograms are z-scored with the *training* statistics, as in
    training.
    """
    real = zscore(test.subtomo, train.stats())
    x = torch.from_numpy(subtomo_to_network(real))[:, None].to(device)
    prior = train.density.mean(0, keepdims=True)
    maps, labels = test.density, test.label
    rows: dict[str, Any] = {}
    torch.manual_seed(int(seed))
    for name, net in inverses.items():
        net.eval()
        draws = np.stack([net(x)[:, 0].float().cpu().numpy() for _ in range(max(1, int(n_samples)))])
        rows[name] = _row(draws[0], maps, prior, labels)
        rows[f"{name}_mean"] = {**_row(draws.mean(0), maps, prior, labels), "draws": n_samples}
    sigma = fit_lowpass_sigma(train)
    rows["lowpass_baseline"] = {**_row(lowpass(real, sigma), maps, prior, labels), "sigma": sigma}
    rows["inverted_subtomogram"] = _row(-real, maps, prior, labels)
    rows["mean_training_map"] = _row(np.broadcast_to(prior, maps.shape), maps, prior, labels)
    return rows


def inverse_criteria(rows: Mapping[str, Any]) -> dict[str, Any]:
    """For every generator row of :func:`inverse_scores` (one draw per particle): does its particle-specific
    correlation beat the low-pass baseline's (the mean difference, paired by particle, more than twice its SE), by
    how much, with that SE."""
    base = np.asarray(rows["lowpass_baseline"]["per_particle_specific_correlation"])
    out: dict[str, Any] = {}
    for name, r in rows.items():
        if name in REFERENCE_ROWS or "draws" in r:
            continue
        diff = np.asarray(r["per_particle_specific_correlation"]) - base
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
        out[name] = {
            "beats_lowpass_baseline": bool(diff.mean() > 2 * se),
            "specific_correlation_minus_lowpass": float(diff.mean()),
            "se_paired_by_particle": se,
        }
    return out


def load_inverses(
    files: Mapping[str, str | Path], kwargs: Mapping[str, Any], device: str | torch.device = "cpu"
) -> dict[str, nn.Module]:
    """``{name: weights_path}`` -> ``{name: CycleGANGenerator(**kwargs)}`` (eval mode) with those weights."""
    out: dict[str, nn.Module] = {}
    for name, path in files.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"inverse generator {name!r}: weights {path} not found")
        net = CycleGANGenerator(**dict(kwargs))
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        out[name] = net.to(device).eval()
    return out
