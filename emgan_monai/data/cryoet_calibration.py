"""The traditional cryo-ET simulator as a fair baseline: SNR measured on real data and calibrated to it.

- :func:`estimate_snr`: median SNR of subtomograms under ``s = a * mask + b + noise``;
- :func:`calibrate_snr`: the simulator SNR whose simulations :func:`estimate_snr` reads like the real data;
- :func:`simulator_settings`: every setting
  :func:`~emgan_monai.physics.subtomogram_simulator.simulate_subtomogram` runs with;
- :class:`BaselineCalibration` / :func:`calibrate_baseline`: a simulator calibrated on the real training
  subtomograms, with the z-score units of its simulated training set;
- :func:`simulate_baseline`: simulate and z-score a stack of maps.

Used by the cryo-ET bundle's evaluation (:mod:`emgan_monai.evaluation.cryoet`) and to initialise the
physics-informed generator (:func:`emgan_monai.data.cryoet_calibration.init_generator`). Maps, masks and
subtomograms are ``(N, B, B, B)`` float arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from emgan_monai.data.cryoet import ZScoreStats, zscore
from emgan_monai.physics.subtomogram_simulator import simulate_subtomogram
from emgan_monai.transforms.cryoet_value_range import density_to_network

if TYPE_CHECKING:
    from emgan_monai.data.cryoet_domains import CryoETDomains

__all__ = [
    "BaselineCalibration",
    "calibrate_baseline",
    "calibrate_snr",
    "estimate_snr",
    "init_generator",
    "simulate_baseline",
    "simulator_settings",
]

logger = logging.getLogger(__name__)


def estimate_snr(subtomos: np.ndarray, masks: np.ndarray) -> float:
    """Median SNR of subtomograms under the model ``s = a * mask + b + noise``.

    ``a, b`` are fitted by least squares per particle; SNR is ``var(a * mask) / var(residual)``. This is *not* the
    SNR parameter of :func:`~emgan_monai.physics.subtomogram_simulator.add_noise_snr`
    (``var(CTF-filtered map) / var(noise)``): a simulation at nominal SNR ``x`` reads about ``x / 2`` here.
    :func:`calibrate_snr` therefore searches the simulator SNR whose simulations this estimator reads like the real data.

    Parameters
    ----------
    subtomos, masks
        ``(N, B, B, B)`` subtomograms and their binary object masks.
    """
    snrs = []
    for s, m in zip(np.asarray(subtomos, np.float64), np.asarray(masks, np.float64)):
        if m.std() == 0:
            continue
        design = np.stack([m.ravel(), np.ones(m.size)], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, s.ravel(), rcond=None)
        resid = s - (a * m + b)
        snrs.append((a * a * m.var()) / max(resid.var(), 1e-12))
    if not snrs:
        raise ValueError("estimate_snr: every mask is empty")
    return float(np.median(snrs))


def _simulate(densities: np.ndarray, voxel_size: float, snr: float, seed: int, simulator_kwargs: dict) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [simulate_subtomogram(d, voxel_size, snr=snr, rng=rng, **simulator_kwargs) for d in np.asarray(densities)]
    ).astype(np.float32)


def calibrate_snr(
    densities: np.ndarray,
    masks: np.ndarray,
    target: float,
    voxel_size: float,
    seed: int = 0,
    simulator_kwargs: dict | None = None,
    bounds: tuple[float, float] = (1e-4, 1e2),
    iterations: int = 30,
    strict: bool = False,
) -> float:
    """Simulator SNR whose simulations of ``densities`` read ``target`` with :func:`estimate_snr` on ``masks``.

    Bisection in ``log(snr)`` with the same noise realisation at every step (common random numbers make the
    estimate monotone in the SNR). Use it with the real training subtomograms' estimate as ``target``: the baseline
    then has the real data's SNR *as the evaluation measures it*. A target outside what ``bounds`` can give raises
    ``ValueError`` with ``strict``, else logs a warning and returns the nearer bound.
    """
    kwargs = dict(simulator_kwargs or {})
    lo, hi = np.log(bounds[0]), np.log(bounds[1])

    def measured(log_snr: float) -> float:
        return estimate_snr(_simulate(densities, voxel_size, float(np.exp(log_snr)), seed, kwargs), masks)

    if not measured(lo) <= target <= measured(hi):
        if not strict:
            edge = bounds[1] if target > measured(hi) else bounds[0]
            logger.warning(
                "calibrate_snr: estimate %.4g cannot be reached with simulator SNRs in %s (the simulated "
                "signal correlates too little with the masks); using %.4g",
                target,
                bounds,
                edge,
            )
            return float(edge)
        raise ValueError(f"target SNR estimate {target} cannot be reached with simulator SNRs in {bounds}")
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if measured(mid) < target else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


def simulator_settings(simulator_kwargs: dict | None = None) -> dict[str, Any]:
    """The settings :func:`~emgan_monai.physics.subtomogram_simulator.simulate_subtomogram` runs with:
    its defaults updated by ``simulator_kwargs`` (recorded in the metrics, so the record is what ran)."""
    import inspect

    defaults = {
        k: v.default
        for k, v in inspect.signature(simulate_subtomogram).parameters.items()
        if v.default is not inspect.Parameter.empty and k not in ("snr", "rng")
    }
    unknown = set(simulator_kwargs or {}) - set(defaults)
    if unknown:
        raise ValueError(f"unknown simulator settings {sorted(unknown)}; expected some of {sorted(defaults)}")
    out = {**defaults, **(simulator_kwargs or {})}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass
class BaselineCalibration:
    """A traditional simulator calibrated on real training data.

    Attributes
    ----------
    snr
        Simulator SNR (:func:`calibrate_snr`).
    target_snr_estimate
        :func:`estimate_snr` of the real training subtomograms.
    stats
        z-score statistics of the simulated *training* set (applied to every later simulation, so simulated sets
        are in the same units as the real data: z units of the real training set).
    simulator
        Every simulator setting (:func:`simulator_settings`).
    """

    snr: float
    target_snr_estimate: float
    stats: ZScoreStats
    simulator: dict[str, Any]

    def simulate(self, densities: np.ndarray, voxel_size: float, seed: int = 0) -> np.ndarray:
        """``(N, B, B, B)`` maps -> simulated subtomograms in z units (float32)."""
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in self.simulator.items()}
        return zscore(_simulate(densities, voxel_size, self.snr, seed, kwargs), self.stats)


def calibrate_baseline(
    train: CryoETDomains,
    voxel_size: float,
    seed: int = 0,
    simulator_kwargs: dict | None = None,
    snr: float | None = None,
) -> BaselineCalibration:
    """Fair traditional baseline: SNR calibrated on the real training subtomograms with the estimator that measures
    it (:func:`calibrate_snr`, unless ``snr`` is given), units fixed by the simulated training set."""
    settings = simulator_settings(simulator_kwargs)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    target = estimate_snr(train.subtomo, train.mask)
    if snr is None:
        snr = calibrate_snr(train.density, train.mask, target, voxel_size, seed=seed + 1, simulator_kwargs=kwargs)
    sims = _simulate(train.density, voxel_size, snr, seed + 2, kwargs)
    return BaselineCalibration(float(snr), float(target), ZScoreStats.fit(sims), settings)


def simulate_baseline(
    densities: np.ndarray,
    voxel_size: float,
    snr: float,
    seed: int = 0,
    stats: ZScoreStats | None = None,
    **simulator_kwargs: Any,
) -> np.ndarray:
    """Traditional simulation (:func:`~emgan_monai.physics.subtomogram_simulator.simulate_subtomogram`) of every map,
    z-scored with ``stats`` (e.g. :attr:`BaselineCalibration.stats`; ``None``: the simulated set's own statistics).

    Returns ``(N, B, B, B)`` float32.
    """
    sims = _simulate(densities, voxel_size, snr, seed, simulator_kwargs)
    return zscore(sims, ZScoreStats.fit(sims) if stats is None else stats)


def init_generator(
    generator: nn.Module,
    train: CryoETDomains,
    voxel_size: float,
    seed: int = 0,
    simulator_kwargs: dict | None = None,
) -> dict[str, Any]:
    """Start a physics-informed generator at the fair baseline:
    :func:`calibrate_baseline` on the training data, then
    :meth:`~emgan_monai.networks.PhysicsInformedGenerator.calibrate_` with that SNR (z units of the real training
    subtomograms). Other generators are left unchanged. Returns the calibration (logged and saved by the caller).

    It lives beside the calibration it applies (data floor: it reads the training domains); it sets the network's own
    physical parameters (its initial state, like a weight initialisation) before any trainer exists through the
    network's ``calibrate_`` method, and the bundle's ``train.json`` runs it in ``initialize``.

    Parameters
    ----------
    generator
        The D -> S generator (``DistributedDataParallel`` wrappers are unwrapped).
    train
        The training domains: ``density`` ``(N, B, B, B)`` maps in ``[0, 1]``, ``subtomo`` and ``mask``.
    voxel_size
        Voxel size in Angstrom of the simulation.
    """
    net = getattr(generator, "module", generator)
    calibrate = getattr(net, "calibrate_", None)
    if calibrate is None:
        return {}
    cal = calibrate_baseline(train, voxel_size, seed=seed, simulator_kwargs=simulator_kwargs)
    maps = torch.from_numpy(density_to_network(train.density))[:, None]
    physics = calibrate(maps, cal.snr)
    logger.info("physics-informed generator calibrated on the training data: snr %.4g, %s", cal.snr, physics)
    return {"snr": cal.snr, "snr_estimate_target": cal.target_snr_estimate, **physics}
