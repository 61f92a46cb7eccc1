"""Sharpness of a restored image against its target: Fourier ring correlation and high-frequency power.

SSIM and PSNR against a noise-free target reward smooth predictions (the regression to the mean of a pixel loss)
and penalise plausible but misplaced detail (a GAN's texture). These two measures show what they hide:

* :func:`frc_cutoff`: the spatial frequency where the Fourier ring correlation (FRC, Saxton & Baumeister 1982;
  Banterle et al. 2013) between prediction and target first drops below a threshold (1/7 by default): up to which
  frequency the prediction's detail is *correct*. Higher is better; in cycles per pixel (0.5 = Nyquist).
* :func:`high_frequency_power_ratio`: the prediction's spectral power above a cutoff frequency divided by the
  target's: how much detail the prediction *has*, right or wrong. 1 = as sharp as the target, < 1 smoother
  (blur, over-smoothing), > 1 noisier.

Both take 2D images ``(H, W)`` on comparable intensity scales (e.g. after
:func:`~emgan_monai.metrics.image_quality.normalize_pair`) and apply a Hann window against edge leakage.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fourier_ring_correlation", "frc_cutoff", "high_frequency_power_ratio"]


def _spectrum(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2 or min(img.shape) < 8:
        raise ValueError(f"expected a 2D image of at least 8 x 8 pixels, got shape {img.shape}.")
    window = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    return np.fft.fftshift(np.fft.fft2((img - img.mean()) * window))


def _radius(shape: tuple[int, ...]) -> np.ndarray:
    """Radial frequency (cycles / pixel) of every Fourier coefficient of an fftshifted ``shape`` spectrum."""
    fy = np.fft.fftshift(np.fft.fftfreq(shape[0]))
    fx = np.fft.fftshift(np.fft.fftfreq(shape[1]))
    return np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def fourier_ring_correlation(a: np.ndarray, b: np.ndarray, n_bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """FRC of two images of one shape ``(H, W)``.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        Ring centre frequencies (cycles / pixel, up to 0.5) and the correlation per ring, each ``(n_bins,)``.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images must share a shape, got {a.shape} and {b.shape}.")
    fa, fb = _spectrum(a), _spectrum(b)
    edges = np.linspace(0.0, 0.5, n_bins + 1)
    ring = np.clip(np.digitize(_radius(a.shape), edges) - 1, 0, n_bins)  # n_bins = beyond Nyquist (corners)
    cross = np.bincount(ring.ravel(), (fa * np.conj(fb)).real.ravel(), minlength=n_bins + 1)[:n_bins]
    pa = np.bincount(ring.ravel(), (np.abs(fa) ** 2).ravel(), minlength=n_bins + 1)[:n_bins]
    pb = np.bincount(ring.ravel(), (np.abs(fb) ** 2).ravel(), minlength=n_bins + 1)[:n_bins]
    frc = cross / np.maximum(np.sqrt(pa * pb), 1e-30)
    return 0.5 * (edges[1:] + edges[:-1]), frc


def frc_cutoff(pred: np.ndarray, target: np.ndarray, threshold: float = 1.0 / 7.0, n_bins: int = 32) -> float:
    """First ring frequency (cycles / pixel) where the FRC of ``pred`` and ``target`` falls below ``threshold``.

    Rings are skipped until the first one with a positive correlation (the DC ring is empty after mean removal);
    0.5 is returned when the FRC stays above the threshold up to Nyquist.
    """
    freqs, frc = fourier_ring_correlation(pred, target, n_bins)
    below = np.nonzero(frc[1:] < threshold)[0]
    return float(freqs[1 + below[0]]) if below.size else 0.5


def high_frequency_power_ratio(pred: np.ndarray, target: np.ndarray, cutoff: float = 0.2) -> float:
    """Power of ``pred`` above ``cutoff`` cycles / pixel divided by that of ``target`` (both ``(H, W)``)."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"images must share a shape, got {pred.shape} and {target.shape}.")
    if not 0.0 < cutoff < 0.5:
        raise ValueError(f"cutoff must lie in (0, 0.5) cycles / pixel, got {cutoff}.")
    high = _radius(pred.shape) > cutoff
    p_pred = float((np.abs(_spectrum(pred)) ** 2)[high].sum())
    p_target = float((np.abs(_spectrum(target)) ** 2)[high].sum())
    return p_pred / p_target if p_target > 0 else float("inf")
