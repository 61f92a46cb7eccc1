"""Distances between sets of feature vectors: Frechet distance, kernel distance (KID) and PRDC.

All functions take two feature arrays of shape ``(N, F)`` (``N`` samples, ``F`` features), e.g. from
:func:`emgan_monai.metrics.fcn_score.segmenter_features`, as numpy arrays or CPU torch tensors.

Relation to MONAI: ``monai.metrics.FIDMetric`` computes the same Frechet distance as
:func:`frechet_distance` (the tests check that both agree), but it squeezes single-feature covariances
to scalars, passes SciPy's deprecated ``disp`` argument to ``sqrtm`` and raises on the imaginary residue that
nearly singular covariances (fewer samples than features, the usual case with 4 validation sections) give.
:func:`frechet_distance` keeps its formula and adds those guards. ``monai.metrics.MMDMetric`` is a
linear-kernel MMD on images; KID needs the cubic polynomial kernel, hence :func:`kernel_distance`.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

__all__ = ["frechet_distance", "KernelDistance", "kernel_distance", "polynomial_mmd2", "prdc"]


def _as_features(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, F), got {x.shape}.")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return x


def _check_pair(feat_a, feat_b, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_features(feat_a, "feat_a"), _as_features(feat_b, "feat_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature sizes differ: feat_a has {a.shape[1]}, feat_b has {b.shape[1]}.")
    if min(len(a), len(b)) < min_samples:
        raise ValueError(f"Need at least {min_samples} samples per set, got {len(a)} and {len(b)}.")
    return a, b


def frechet_distance(feat_a, feat_b, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (FID when the features are Inception's).

    ``d^2 = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, Heusel et al. 2017.

    Parameters
    ----------
    feat_a, feat_b
        Feature arrays of shape ``(N_a, F)`` and ``(N_b, F)``, at least 2 samples each.
    eps
        Added to the covariance diagonals when their product is singular (``sqrtm`` warns or is not finite),
        e.g. with fewer samples than features.

    Returns
    -------
    float
        The squared Frechet distance (non-negative up to round-off; clipped at 0).

    Raises
    ------
    ValueError
        On bad shapes, non-finite values, or when ``sqrtm`` leaves an imaginary part that is not round-off
        (larger than 1e-3 of the trace scale even after regularisation).
    """
    a, b = _check_pair(feat_a, feat_b, 2)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a = np.atleast_2d(np.cov(a, rowvar=False))
    s_b = np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)  # scipy's "matrix is singular" -> regularise
        try:
            covmean = linalg.sqrtm(s_a @ s_b)
            singular = not np.isfinite(covmean).all()
        except linalg.LinAlgWarning:
            singular = True
    if singular:  # e.g. fewer samples than features: rank-deficient covariances
        offset = np.eye(len(s_a)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((s_a + offset) @ (s_b + offset))
        if not np.isfinite(covmean).all():
            raise ValueError(f"sqrtm of the covariance product is not finite even with eps={eps} on the diagonals.")
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.abs(np.trace(s_a)) + np.abs(np.trace(s_b))))
        imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if imag > 1e-3 * scale:
            raise ValueError(f"sqrtm of the covariance product has a large imaginary component ({imag:.3g}).")
        covmean = covmean.real
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def polynomial_mmd2(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> float:
    """Unbiased MMD^2 between two samples with the kernel ``k(u, v) = (gamma <u, v> + coef0) ** degree``.

    Parameters
    ----------
    x, y
        Arrays of shape ``(m, F)`` and ``(n, F)``, ``m, n >= 2``.
    degree, gamma, coef0
        Polynomial kernel parameters; ``gamma=None`` means ``1 / F`` (KID's choice).

    Returns
    -------
    float
        ``sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum_{i,j} k(x_i,y_j)/(mn)``;
        can be slightly negative for samples of one distribution.
    """
    m, n = len(x), len(y)
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    k_xx = (gamma * x @ x.T + coef0) ** degree
    k_yy = (gamma * y @ y.T + coef0) ** degree
    k_xy = (gamma * x @ y.T + coef0) ** degree
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


class KernelDistance(NamedTuple):
    """Kernel distance over random subsets: ``mean`` and ``std`` of the per-subset unbiased MMD^2."""

    mean: float
    std: float


def kernel_distance(
    feat_a,
    feat_b,
    degree: int = 3,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int | None = 0,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> KernelDistance:
    """Kernel distance (KID, Binkowski et al. 2018): unbiased polynomial-kernel MMD^2 averaged over subsets.

    Parameters
    ----------
    feat_a, feat_b
        Feature arrays of shape ``(N_a, F)`` and ``(N_b, F)``, at least 2 samples each.
    degree
        Degree of the polynomial kernel ``(<u, v> / F + 1) ** degree`` (3 for KID).
    subsets
        Number of random subsets.
    subset_size
        Samples drawn without replacement from each set per subset; clipped to ``min(N_a, N_b)``.
    seed
        Seed of the subset sampler (``None``: fresh entropy).
    gamma, coef0
        Kernel scale (``None``: ``1 / F``) and offset.

    Returns
    -------
    KernelDistance
        ``(mean, std)`` of MMD^2 over the subsets (``std`` is 0 for a single subset).
    """
    a, b = _check_pair(feat_a, feat_b, 2)
    if subsets < 1:
        raise ValueError(f"subsets must be positive, got {subsets}.")
    if subset_size < 2:
        raise ValueError(f"subset_size must be at least 2, got {subset_size}.")
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            polynomial_mmd2(
                a[rng.choice(len(a), size, replace=False)],
                b[rng.choice(len(b), size, replace=False)],
                degree=degree,
                gamma=gamma,
                coef0=coef0,
            )
            for _ in range(subsets)
        ]
    )
    return KernelDistance(float(values.mean()), float(values.std()))


def prdc(real, fake, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics").

    With ``r_i`` the distance from real sample ``i`` to its ``k``-th nearest other real sample (and likewise
    ``f_j`` for fake samples), ``d_ij`` the real-fake distances, ``M`` real and ``N`` fake samples:

    - precision = ``1/N sum_j 1[exists i: d_ij < r_i]``
    - recall    = ``1/M sum_i 1[exists j: d_ij < f_j]``
    - density   = ``1/(kN) sum_j sum_i 1[d_ij < r_i]``
    - coverage  = ``1/M sum_i 1[min_j d_ij < r_i]``

    Parameters
    ----------
    real, fake
        Feature arrays of shape ``(M, F)`` and ``(N, F)``; each needs more than ``k`` samples.
    k
        Nearest-neighbour order of the radii.

    Returns
    -------
    dict
        ``{"precision", "recall", "density", "coverage"}`` as floats; density can exceed 1.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}.")
    r, f = _check_pair(real, fake, k + 1)
    d_rr = cdist(r, r)
    d_ff = cdist(f, f)
    d_rf = cdist(r, f)
    # index k of the sorted row is the k-th neighbour: index 0 is the sample itself (distance 0)
    r_radii = np.partition(d_rr, k, axis=1)[:, k]
    f_radii = np.partition(d_ff, k, axis=1)[:, k]
    in_real_balls = d_rf < r_radii[:, None]  # (M, N)
    return {
        "precision": float(in_real_balls.any(axis=0).mean()),
        "recall": float((d_rf < f_radii[None, :]).any(axis=1).mean()),
        "density": float(in_real_balls.sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < r_radii).mean()),
    }
