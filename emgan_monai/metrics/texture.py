"""Texture statistics of EM images: hand-made tile features, their Frechet distance and high-frequency power.

Paired scores (SSIM against the real section) and features of a segmenter trained for masks do not see whether a
generated EM image has the grain of real ssTEM: a smooth image with the right layout scores well on both. These
functions describe what the texture *is*, tile by tile, with no learned weights:

* :func:`texture_features`: per tile of ``tile`` x ``tile`` pixels, a vector of grey-level histogram, radially
  averaged power spectrum, local binary patterns and gradient-magnitude histogram (layout in
  :data:`FEATURE_LAYOUT`);
* :func:`texture_distance`: Frechet distance between two such feature sets after z-scoring every feature with the
  statistics of one reference set, so that all features weigh alike and distances computed against one reference
  share a scale;
* :func:`grain_anisotropy`: whether the fine grain has a preferred direction (streaks);
* :func:`grid_peaks`: spectral peaks of a hatch locked to a generator's pixel grid;
* :func:`high_frequency_power`: the mean fraction of an image's spectral power above a cutoff frequency (noise and
  grain raise it, blur lowers it).

Images are ``(N, 1, H, W)`` or ``(N, H, W)`` arrays or tensors with values in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from skimage.feature import local_binary_pattern
from skimage.filters import sobel

from ..losses.texture import radial_power_spectrum
from .distances import _as_features, frechet_distance
from .sharpness import _radius, _spectrum

__all__ = [
    "FEATURE_LAYOUT",
    "N_FEATURES",
    "corner_power",
    "grain_anisotropy",
    "grid_peaks",
    "high_frequency_power",
    "texture_distance",
    "texture_features",
]

#: bins of each block of the feature vector, in order
INTENSITY_BINS = 16
SPECTRUM_BINS = 12
LBP_POINTS, LBP_RADIUS = 8, 1
LBP_BINS = LBP_POINTS + 2  # "uniform" patterns: P + 1 rotation-invariant uniform codes and one for the rest
GRADIENT_BINS = 12
#: upper end of the gradient-magnitude histogram; ``skimage.filters.sobel`` of a 0 -> 1 step is about 0.7, of
#: Gaussian noise with sd s about 0.87 s: larger magnitudes are counted in the last bin
GRADIENT_MAX = 0.36

#: ``(name, start, stop)`` of each block of a :func:`texture_features` vector
FEATURE_LAYOUT: tuple[tuple[str, int, int], ...] = (
    ("intensity_histogram", 0, INTENSITY_BINS),
    ("log10_power_spectrum", INTENSITY_BINS, INTENSITY_BINS + SPECTRUM_BINS),
    ("lbp_histogram", INTENSITY_BINS + SPECTRUM_BINS, INTENSITY_BINS + SPECTRUM_BINS + LBP_BINS),
    (
        "gradient_histogram",
        INTENSITY_BINS + SPECTRUM_BINS + LBP_BINS,
        INTENSITY_BINS + SPECTRUM_BINS + LBP_BINS + GRADIENT_BINS,
    ),
)
N_FEATURES = FEATURE_LAYOUT[-1][2]


def _as_images(images, name: str = "images") -> np.ndarray:
    """``(N, 1, H, W)`` or ``(N, H, W)`` array / tensor in [0, 1] -> float64 ``(N, H, W)``."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (N, 1, H, W) or (N, H, W), got {x.shape}.")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}).")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}] (scale 8-bit images by 1/255)."
        )
    return np.clip(x, 0.0, 1.0)


def _image_features(img: np.ndarray, tile: int, stride: int) -> np.ndarray:
    """Feature vectors ``(k, N_FEATURES)`` of the ``k`` tiles of one image ``(H, W)`` in [0, 1]."""
    tiles = sliding_window_view(img, (tile, tile))[::stride, ::stride].reshape(-1, tile, tile)
    spectra = radial_power_spectrum(torch.tensor(tiles[:, None]), n_bins=SPECTRUM_BINS)[:, 0].double().numpy()
    feats = []
    for t, spectrum in zip(tiles, spectra):
        intensity, _ = np.histogram(t, bins=INTENSITY_BINS, range=(0.0, 1.0), density=True)
        lbp = local_binary_pattern(np.round(t * 255).astype(np.uint8), LBP_POINTS, LBP_RADIUS, method="uniform")
        lbp_hist = np.bincount(lbp.astype(int).ravel(), minlength=LBP_BINS) / lbp.size
        grad = np.minimum(sobel(t), GRADIENT_MAX)
        grad_hist, _ = np.histogram(grad, bins=GRADIENT_BINS, range=(0.0, GRADIENT_MAX))
        feats.append(np.concatenate([intensity, spectrum, lbp_hist, grad_hist / grad.size]))
    return np.stack(feats)


def texture_features(images, tile: int = 128, stride: int = 32) -> np.ndarray:
    """Texture feature vectors of all ``tile`` x ``tile`` tiles of a set of images.

    Tiles start every ``stride`` pixels along both axes and lie wholly inside the image
    (``((H - tile) // stride + 1) * ((W - tile) // stride + 1)`` tiles per image). The vector of one tile
    (:data:`N_FEATURES` = 50 values, blocks listed in :data:`FEATURE_LAYOUT`):

    ========  ==================================================================================================
    0 - 15    grey-level histogram, 16 bins on [0, 1], as a density (integrates to 1)
    16 - 27   log10 of the radially averaged power spectrum of the mean-removed, Hann-windowed tile, 12 rings of
              equal width on [0, 0.5) cycles / pixel (DC and the corners beyond Nyquist left out;
              :func:`~emgan_monai.losses.texture.radial_power_spectrum`)
    28 - 37   uniform LBP histogram (``skimage.feature.local_binary_pattern``, P = 8, R = 1, ``"uniform"``) of the
              tile scaled to uint8, as fractions of the pixels
    38 - 49   histogram of the Sobel gradient magnitude (``skimage.filters.sobel``), 12 bins on [0, 0.36]
              (larger magnitudes in the last bin), as fractions of the pixels
    ========  ==================================================================================================

    Parameters
    ----------
    images
        ``(N, 1, H, W)`` or ``(N, H, W)`` numpy array or torch tensor with values in [0, 1], ``H, W >= tile``.
    tile
        Tile side in pixels, at least 24 (so every spectrum ring holds a Fourier coefficient).
    stride
        Step between tile origins in pixels.

    Returns
    -------
    np.ndarray
        ``(M, 50)`` float64 features, ``M`` = tiles per image times ``N``, image by image in row-major tile order.

    Raises
    ------
    ValueError
        On another shape, values outside [0, 1] or not finite, images smaller than ``tile``, ``tile < 24`` or
        ``stride < 1``.
    """
    x = _as_images(images)
    if tile < 2 * SPECTRUM_BINS:
        raise ValueError(
            f"tile must be at least {2 * SPECTRUM_BINS} pixels ({SPECTRUM_BINS} spectrum rings), got {tile}."
        )
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}.")
    if min(x.shape[1:]) < tile:
        raise ValueError(f"images of {x.shape[1]} x {x.shape[2]} pixels are smaller than the tile ({tile} px).")
    return np.concatenate([_image_features(img, tile, stride) for img in x])


def texture_distance(reference, other, scale_from=None, min_std: float = 1e-6) -> float:
    """Frechet distance between two texture feature sets, every feature z-scored with one set's statistics.

    Each feature ``f`` of both sets becomes ``(f - mean_s) / max(std_s, min_std)``, with mean and standard
    deviation taken over the tiles of ``scale_from``; then
    :func:`~emgan_monai.metrics.distances.frechet_distance` of the results. z-scoring makes the 50 features,
    in different units, weigh alike; taking the statistics from one fixed set (e.g. real training tiles) for all
    comparisons of an evaluation puts their distances on one scale.

    Parameters
    ----------
    reference, other
        Feature arrays ``(M_r, F)`` and ``(M_o, F)`` from :func:`texture_features`, at least 2 tiles each.
    scale_from
        Features ``(M_s, F)`` that give the mean and std; ``None`` uses ``reference``.
    min_std
        Floor of the std (a feature constant over ``scale_from``).

    Returns
    -------
    float
        Squared Frechet distance in z-score units (0 for identical sets).
    """
    ref, oth = _as_features(reference, "reference"), _as_features(other, "other")
    scale = ref if scale_from is None else _as_features(scale_from, "scale_from")
    if len(scale) < 2:
        raise ValueError(f"scale_from needs at least 2 tiles, got {len(scale)}.")
    for name, f in (("reference", ref), ("other", oth)):
        if f.shape[1] != scale.shape[1]:
            raise ValueError(f"{name} has {f.shape[1]} features, scale_from {scale.shape[1]}.")
    mean, std = scale.mean(0), np.maximum(scale.std(0), min_std)
    return frechet_distance((ref - mean) / std, (oth - mean) / std)


def high_frequency_power(images, cutoff: float = 0.25) -> float:
    """Mean over images of the fraction of spectral power above ``cutoff`` cycles / pixel.

    Per image: the power spectrum of the mean-removed, Hann-windowed image (as in
    :mod:`~emgan_monai.metrics.sharpness`); the fraction is the power of the coefficients whose radial frequency
    exceeds ``cutoff`` over the total (0 for a constant image).

    Parameters
    ----------
    images
        ``(N, 1, H, W)`` or ``(N, H, W)`` with values in [0, 1], ``H, W >= 8``.
    cutoff
        Radial frequency in (0, 0.5) cycles / pixel (0.5 = Nyquist).

    Returns
    -------
    float
        Mean fraction in [0, 1]; compare sets by the ratio of their values.
    """
    if not 0.0 < cutoff < 0.5:
        raise ValueError(f"cutoff must lie in (0, 0.5) cycles / pixel, got {cutoff}.")
    x = _as_images(images)
    high = _radius(x.shape[1:]) > cutoff
    fractions = []
    for img in x:
        if np.ptp(img) == 0:  # constant: no power (only round-off after mean removal)
            fractions.append(0.0)
            continue
        power = np.abs(_spectrum(img)) ** 2
        fractions.append(float(power[high].sum() / power.sum()))
    return float(np.mean(fractions))


def grain_anisotropy(images, min_frequency: float = 0.25, n_bins: int = 8) -> dict[str, float]:
    """Direction of the fine grain: log10 of the power along the x frequency axis over the power along the y axis.

    The spectrum of each image is cut into rings and four orientation sectors
    (:func:`~emgan_monai.losses.texture.radial_power_spectrum` with ``n_angles=4``); over the rings above
    ``min_frequency`` cycles / px, ``x_over_y`` is the mean log10 power of the sector centred on the x frequency axis
    (structures that vary along x: vertical streaks) minus that of the y axis sector (horizontal streaks), and
    ``diagonals`` the same for the two diagonal sectors. 0 for grain without a preferred direction (real ssTEM
    sections 16-19 of the Drosophila stack: +0.05); the 0.8.1 stage-2 generator: -0.15 (its finest grain is stretched
    along x). A diagnostic, not a judge: the stage-2 spectrum term with ``n_angles=4`` compares the same sectors.

    Parameters
    ----------
    images
        ``(N, 1, H, W)`` or ``(N, H, W)``, ``H, W >= 8``.
    min_frequency
        Rings from this radial frequency (cycles / px) to 0.5 are averaged.
    n_bins
        Rings from 0 to 0.5 cycles / px.

    Returns
    -------
    dict
        ``{"x_over_y": float, "diagonals": float}`` (means over images).
    """
    if not 0.0 <= min_frequency < 0.5:
        raise ValueError(f"min_frequency must lie in [0, 0.5) cycles / pixel, got {min_frequency}.")
    x = torch.as_tensor(_as_images(images), dtype=torch.float32)[:, None]
    spec = radial_power_spectrum(x, n_bins=n_bins, n_angles=4)[:, 0].view(len(x), n_bins, 4)
    spec = spec[:, int(min_frequency / 0.5 * n_bins) :]
    return {
        "x_over_y": float((spec[..., 0] - spec[..., 2]).mean()),
        "diagonals": float((spec[..., 1] - spec[..., 3]).mean()),
    }


def corner_power(images, n_bins: int = 16) -> dict[str, float]:
    """Log10 power of the finest diagonal grain: the corners of the 2D spectrum beyond 0.5 cycles / px.

    A pixel-scale cross-hatch lives there, at frequencies no radial ring up to 0.5 cycles / px contains (so a
    spectrum loss without :func:`~emgan_monai.losses.texture.radial_power_spectrum`'s ``corners`` ring cannot see it).
    Mean over images of the corner ring's two diagonal sectors (``n_angles=4``): ``"diagonal_45"`` (frequencies
    along ``fx = fy``), ``"diagonal_135"``, and the last ring inside 0.5 cycles / px on the same diagonals
    (``"ring_45"``, ``"ring_135"``) for scale. Compare with real sections of the same size and imaging: held-out
    ssTEM sections 16-19 of the Drosophila stack (256 px, grey values in [0, 1]) 1.48 / 1.51, training sections 0-15
    1.44 / 1.45; the 0.9.0 stage-2 generator on the held-out masks 1.41 / 1.38, the 0.11.0 phase-4 one 1.74 / 1.55
    (an excess along one diagonal: the faint cross-hatch of its large profiles). A diagnostic, not a judge.

    Parameters
    ----------
    images
        ``(N, 1, H, W)`` or ``(N, H, W)``, ``H, W >= 8``.
    n_bins
        Rings from 0 to 0.5 cycles / px (the corner ring is one more).

    Returns
    -------
    dict
        ``{"diagonal_45", "diagonal_135", "ring_45", "ring_135"}`` in log10 power (Hann-windowed, per image).
    """
    x = torch.as_tensor(_as_images(images), dtype=torch.float32)[:, None]
    spec = radial_power_spectrum(x, n_bins=n_bins, n_angles=4, corners=True)[:, 0].view(len(x), n_bins + 1, 4)
    return {
        "diagonal_45": float(spec[:, -1, 1].mean()),
        "diagonal_135": float(spec[:, -1, 3].mean()),
        "ring_45": float(spec[:, -2, 1].mean()),
        "ring_135": float(spec[:, -2, 3].mean()),
    }


def grid_peaks(images, period: int = 8) -> dict:
    """Spectral peaks of a pattern locked to a generator's pixel grid: the power at the frequencies
    ``(a / period, b / period)`` cycles / px against the power around them.

    A generator with ``L`` stride-2 levels can paint a hatch of period ``2 ** L`` px (or a divisor of it) along one
    axis, both, or the diagonals, wherever its input leaves it free (inside large cell profiles); every image has it
    in the same phase, so averaged over images it stands out of the smooth spectrum of real sections as peaks on the
    lattice of multiples of ``1 / period``. For each lattice frequency other than 0 (one of each pair ``f, -f``), the
    power of the (Hann-windowed) spectrum, averaged over the images, in the bin of the frequency is divided by the
    mean power of the bins 3 to 6 bins away (Chebyshev distance), in log10. Held-out ssTEM sections 16-19 of the
    Drosophila stack (256 px): mean over the lattice about 0, on the axes +0.01 (a single bin of 4 images is noisy:
    the largest single peak reaches +0.37; the means are the figures to read); the 0.9.0 stage-2 generator on their
    masks: on the axes +0.34 (largest +0.72, 1/4 cycles / px along x). A diagnostic, not a judge (no loss term looks
    at these frequencies).

    Parameters
    ----------
    images
        ``(N, 1, H, W)`` or ``(N, H, W)`` with ``H, W >= 4 * period``.
    period
        The grid period (px), e.g. ``NoiseUNet.size_multiple``.

    Returns
    -------
    dict
        ``{"mean_log10": mean over the lattice, "axes_log10": mean over the frequencies on the two axes,
        "max_log10": largest, "peaks": {"a/period, b/period": log10 ratio}}`` (``a`` along y, ``b`` along x).
    """
    if int(period) < 2:
        raise ValueError(f"period must be >= 2 px, got {period}.")
    period = int(period)
    x = _as_images(images)
    if min(x.shape[1:]) < 4 * period:
        raise ValueError(f"grid_peaks needs images of at least {4 * period} px for a period of {period} px.")
    power = np.mean([np.abs(_spectrum(img)) ** 2 for img in x], axis=0)
    cy, cx = power.shape[0] // 2, power.shape[1] // 2  # the zero frequency of the fftshifted spectrum
    offsets = np.arange(-6, 7)
    ring = np.maximum(np.abs(offsets)[:, None], np.abs(offsets)[None, :])
    half = period // 2
    peaks: dict[str, float] = {}
    axes: list[float] = []
    for a in range(0, half + 1):
        for b in range(-half + 1, half + 1):
            if (a == 0 and b <= 0) or (a == half and b < 0):
                continue  # the origin, and the mirror image -f of a frequency already taken
            py = min(cy + round(a / period * power.shape[0]), power.shape[0] - 1)
            px = min(cx + round(b / period * power.shape[1]), power.shape[1] - 1)
            block = power[
                np.ix_(np.clip(py + offsets, 0, power.shape[0] - 1), np.clip(px + offsets, 0, power.shape[1] - 1))
            ]
            value = float(np.log10(block[6, 6] / max(block[(ring >= 3) & (ring <= 6)].mean(), 1e-30)))
            peaks[f"{a}/{period}, {b}/{period}"] = value
            if a == 0 or b == 0:
                axes.append(value)
    values = list(peaks.values())
    return {
        "mean_log10": float(np.mean(values)),
        "axes_log10": float(np.mean(axes)),
        "max_log10": float(max(values)),
        "peaks": peaks,
    }
