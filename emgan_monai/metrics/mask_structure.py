"""Periodicity and diversity of sets of class masks: the signatures of a collapsed or tiling mask generator.

A generator that ignores its latent code repeats one pattern: across samples (every sample alike) and, for a
generator built from one code per cell, inside a sample (a tiling with the cell as period). These functions measure
both on label images ``(H, W)`` (0 mitochondria / 1 membrane / 2 background) or ``(3, H, W)`` masks (argmax), so
generated masks can be compared with real ones in the same units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .morphology import MEMBRANE, MITO, mask_labels

__all__ = ["spectral_peak_ratio", "autocorrelation_peak", "mask_periodicity", "mask_diversity", "compare_periodicity"]


def _indicator(mask, cls: int) -> np.ndarray:
    return (mask_labels(mask) == cls).astype(np.float64)


def spectral_peak_ratio(x: np.ndarray, min_radius: float = 3.0) -> float:
    """Strongest off-origin peak of the power spectrum of ``x`` ``(H, W)`` relative to its radial mean.

    The mean is removed and a Hann window applied; the power ``|FFT|^2`` at every frequency with radius ``>=
    min_radius`` (in frequency-grid units) is divided by the mean power of its radius ring (1-unit rings), and the
    maximum is returned. Texture without a period gives values of the order of ``log(#frequencies)`` (about 10-20);
    a periodic pattern concentrates its power in a few harmonics and gives far larger values. 0 for a constant
    image.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"spectral_peak_ratio expects a 2D image, got shape {x.shape}.")
    x = x - x.mean()
    if not np.any(x):
        return 0.0
    h, w = x.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(x * win)) ** 2
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    r = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    ring = np.round(r).astype(np.int64)
    valid = r >= min_radius
    ring_mean = np.bincount(ring.ravel(), weights=power.ravel()) / np.maximum(np.bincount(ring.ravel()), 1)
    ratio = power / np.maximum(ring_mean[ring], 1e-30)
    return float(ratio[valid].max()) if valid.any() else 0.0


def autocorrelation_peak(x: np.ndarray, min_shift: int = 4, max_shift: int | None = None) -> float:
    """Strongest normalised autocorrelation of ``x`` ``(H, W)`` outside its central lobe: a repeat of the pattern.

    Linear (zero-padded) autocorrelation of the mean-free image, divided by the number of overlapping pixels and
    by the variance, so 1 means "identical after this shift". The central lobe (how far a structure correlates with
    itself) ends at the first radius whose ring mean is <= 0; shifts beyond it (and at least ``min_shift`` px), up
    to ``max_shift`` (default a quarter of the smaller side, so that the overlap stays large), are searched. A tiling
    with period ``p`` gives values near 1 at shift ``p``; aperiodic tissue gives small values, however large its
    structures are.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"autocorrelation_peak expects a 2D image, got shape {x.shape}.")
    x = x - x.mean()
    var = float((x**2).mean())
    if var == 0.0:
        return 0.0
    h, w = x.shape
    max_shift = int(max_shift or min(h, w) // 4)
    f = np.fft.rfft2(x, s=(2 * h, 2 * w))
    ac = np.fft.irfft2(np.abs(f) ** 2, s=(2 * h, 2 * w))
    dy = np.fft.fftfreq(2 * h) * 2 * h
    dx = np.fft.fftfreq(2 * w) * 2 * w
    overlap = (h - np.abs(dy))[:, None] * (w - np.abs(dx))[None, :]
    ac = ac / np.maximum(overlap, 1) / var
    dist = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
    inside = (np.abs(dy)[:, None] <= max_shift) & (np.abs(dx)[None, :] <= max_shift)
    ring = np.round(dist).astype(np.int64)
    ring_mean = np.bincount(ring[inside], weights=ac[inside]) / np.maximum(np.bincount(ring[inside]), 1)
    below = np.nonzero(ring_mean[1:] <= 0)[0]
    lobe = int(below[0]) + 1 if below.size else max_shift + 1
    sel = inside & (dist >= max(min_shift, lobe))
    return float(ac[sel].max()) if sel.any() else 0.0


def mask_periodicity(mask, classes: Sequence[int] = (MEMBRANE, MITO)) -> dict:
    """``{"spectral_peak": ..., "autocorr_peak": ...}`` of one mask: the maxima over the class indicators."""
    ind = [_indicator(mask, c) for c in classes]
    return {
        "spectral_peak": max(spectral_peak_ratio(i) for i in ind),
        "autocorr_peak": max(autocorrelation_peak(i) for i in ind),
    }


def mask_diversity(masks: Sequence, max_pairs: int = 500, seed: int = 0) -> dict:
    """How different the masks of a set are from each other.

    Returns ``{"pixel_disagreement": mean fraction of pixels whose class differs between two masks of the set,
    "min_pixel_disagreement": the smallest such fraction over the pairs (0 = two identical masks),
    "n_mitochondria_std": standard deviation of the mitochondria count}``. Pairs are all pairs, or ``max_pairs``
    random ones.
    """
    from .morphology import mask_morphology

    labels = [mask_labels(m) for m in masks]
    n = len(labels)
    if n < 2:
        raise ValueError("mask_diversity needs at least two masks.")
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[k] for k in rng.choice(len(pairs), max_pairs, replace=False)]
    dis = np.array([float(np.mean(labels[i] != labels[j])) for i, j in pairs])
    counts = np.array([mask_morphology(m)["n_mitochondria"] for m in labels], dtype=np.float64)
    return {
        "pixel_disagreement": float(dis.mean()),
        "min_pixel_disagreement": float(dis.min()),
        "n_mitochondria_std": float(counts.std()),
    }


def compare_periodicity(real: Sequence, fake: Sequence) -> dict:
    """Periodicity (mean / max over masks of :func:`mask_periodicity`) and diversity of real vs generated masks."""
    out: dict = {}
    per_r = [mask_periodicity(m) for m in real]
    per_f = [mask_periodicity(m) for m in fake]
    for key in ("spectral_peak", "autocorr_peak"):
        r = np.array([p[key] for p in per_r])
        f = np.array([p[key] for p in per_f])
        out[key] = {"real": float(r.mean()), "fake": float(f.mean()), "real_max": float(r.max()),
                    "fake_max": float(f.max())}
    div_r, div_f = mask_diversity(real), mask_diversity(fake)
    out["diversity"] = {k: {"real": div_r[k], "fake": div_f[k]} for k in div_r}
    return out
