"""Tests of :mod:`emgan_monai.metrics.texture`: tile features, their z-scored Frechet distance, high-frequency power."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from emgan_monai.metrics.texture import (
    FEATURE_LAYOUT,
    N_FEATURES,
    corner_power,
    grain_anisotropy,
    grid_peaks,
    high_frequency_power,
    texture_distance,
    texture_features,
)

TILE, STRIDE = 32, 16


def _process(seed: int, n: int = 6, size: int = 96, blur: float = 0.0) -> np.ndarray:
    """``(n, 1, size, size)`` images of one random texture (smoothed white noise in [0, 1]), optionally blurred."""
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 1, 1))
    x = np.clip(0.5 + 0.5 * x / x.std(), 0.0, 1.0)
    if blur:
        x = gaussian_filter(x, sigma=(0, blur, blur))
    return x[:, None]


def _block(feats: np.ndarray, name: str) -> np.ndarray:
    start, stop = next((a, b) for n, a, b in FEATURE_LAYOUT if n == name)
    return feats[:, start:stop]


def test_feature_shape_and_layout():
    x = np.random.default_rng(0).random((3, 1, 96, 80))
    feats = texture_features(x, tile=TILE, stride=STRIDE)
    assert feats.shape == (3 * 5 * 4, N_FEATURES) and N_FEATURES == 50  # 5 x 4 tiles per image, all inside
    assert [(a, b) for _, a, b in FEATURE_LAYOUT] == [(0, 16), (16, 28), (28, 38), (38, 50)]
    # (N, H, W) torch input gives the same features
    np.testing.assert_allclose(texture_features(torch.from_numpy(x[:, 0]).float(), TILE, STRIDE), feats, atol=1e-5)
    # histograms: intensity a density on [0, 1] (16 bins of width 1/16), LBP and gradient fractions of the pixels
    np.testing.assert_allclose(_block(feats, "intensity_histogram").sum(1) / 16, 1.0)
    np.testing.assert_allclose(_block(feats, "lbp_histogram").sum(1), 1.0)
    np.testing.assert_allclose(_block(feats, "gradient_histogram").sum(1), 1.0)
    # the first tile of the first image is its top-left corner
    np.testing.assert_allclose(texture_features(x[:1, :, :TILE, :TILE], TILE, STRIDE)[0], feats[0], atol=1e-5)


def test_power_spectrum_block_peaks_at_the_frequency_of_a_grating():
    yy, xx = np.mgrid[:64, :64]
    for freq in (0.1, 0.3, 0.45):
        grating = 0.5 + 0.4 * np.sin(2 * np.pi * freq * (xx + 0.3 * yy) / math.hypot(1, 0.3))
        spectrum = _block(texture_features(grating[None], tile=64, stride=64), "log10_power_spectrum")[0]
        assert spectrum.argmax() == math.ceil(freq / 0.5 * 12) - 1, (freq, spectrum)


def test_distance_of_a_set_to_itself_is_zero_and_scale_free():
    feats = texture_features(_process(1), TILE, STRIDE)
    assert texture_distance(feats, feats) < 1e-6
    other = texture_features(_process(2, blur=1.0), TILE, STRIDE)
    d = texture_distance(feats, other)
    assert d > 1.0 and texture_distance(feats, other, scale_from=feats) == pytest.approx(d)
    # every feature is z-scored: rescaling one feature in all sets changes nothing
    scaled_a, scaled_b = feats.copy(), other.copy()
    scaled_a[:, 20] *= 1e3
    scaled_b[:, 20] *= 1e3
    assert texture_distance(scaled_a, scaled_b) == pytest.approx(d, rel=1e-6)
    # another scale_from changes the distance
    assert texture_distance(feats, other, scale_from=other) != pytest.approx(d)


def test_blur_and_noise_move_away_from_a_second_sample_of_the_same_process():
    sharp_a, sharp_b = _process(10), _process(11)
    blurred = _process(12, blur=2.0)
    noisy = np.clip(sharp_b + np.random.default_rng(13).normal(0.0, 0.15, sharp_b.shape), 0.0, 1.0)
    fa, fb, fblur, fnoisy = (texture_features(x, TILE, STRIDE) for x in (sharp_a, sharp_b, blurred, noisy))
    same = texture_distance(fa, fb)
    assert texture_distance(fa, fblur) > 5 * same
    assert texture_distance(fa, fnoisy) > 5 * same
    hf_a, hf_b = high_frequency_power(sharp_a), high_frequency_power(sharp_b)
    assert high_frequency_power(blurred) < 0.5 * hf_a
    assert high_frequency_power(noisy) > 1.5 * hf_b
    assert hf_a == pytest.approx(hf_b, rel=0.2)


def test_high_frequency_power_of_white_noise_and_constants():
    noise = np.random.default_rng(0).random((4, 128, 128))
    for cutoff in (0.1, 0.25, 0.4):
        # a flat spectrum: the share of the frequency square [-0.5, 0.5]^2 outside the radius
        expected = 1.0 - math.pi * cutoff**2
        assert high_frequency_power(noise, cutoff) == pytest.approx(expected, abs=0.03)
    assert high_frequency_power(np.full((2, 1, 32, 32), 0.4)) == 0.0


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((2, 3, 64, 64)), {}, r"\(N, 1, H, W\) or \(N, H, W\)"),
        (np.zeros((64, 64)), {}, r"\(N, 1, H, W\) or \(N, H, W\)"),
        (np.full((1, 64, 64), 255.0), {}, r"\[0, 1\]"),
        (np.full((1, 64, 64), np.nan), {}, "NaN"),
        (np.zeros((1, 64, 48)), {"tile": 64}, "smaller than the tile"),
        (np.zeros((1, 64, 64)), {"tile": 16}, "at least 24"),
        (np.zeros((1, 64, 64)), {"stride": 0}, "stride"),
    ],
)
def test_texture_features_rejects_bad_input(images, kwargs, message):
    with pytest.raises(ValueError, match=message):
        texture_features(images, **{"tile": 32, **kwargs})


def test_distance_and_hf_power_reject_bad_input():
    feats = np.random.default_rng(0).random((10, N_FEATURES))
    with pytest.raises(ValueError, match="features"):
        texture_distance(feats, feats[:, :10])
    with pytest.raises(ValueError, match="features"):
        texture_distance(feats, feats, scale_from=feats[:, :10])
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        texture_distance(feats[0], feats)
    with pytest.raises(ValueError, match="at least 2"):
        texture_distance(feats, feats, scale_from=feats[:1])
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_power(np.zeros((1, 32, 32)), cutoff=0.6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        high_frequency_power(np.full((1, 32, 32), 2.0))


def test_grain_anisotropy_sees_the_direction_of_streaks():
    rng = np.random.default_rng(0)
    white = rng.random((16, 64, 64))
    iso = grain_anisotropy(white)
    assert abs(iso["x_over_y"]) < 0.1 and abs(iso["diagonals"]) < 0.1
    # grain smeared along y (vertical streaks: it varies along x only) -> power on the x frequency axis
    vertical = gaussian_filter(white, sigma=(0, 3, 0))
    assert grain_anisotropy(vertical)["x_over_y"] > 1.0
    assert grain_anisotropy(vertical.transpose(0, 2, 1))["x_over_y"] < -1.0
    with pytest.raises(ValueError, match="min_frequency"):
        grain_anisotropy(white, min_frequency=0.5)


def test_grid_peaks_sees_a_hatch_locked_to_the_pixel_grid():
    rng = np.random.default_rng(0)
    grain = gaussian_filter(rng.random((8, 128, 128)), sigma=(0, 1, 1))  # smooth grain, no grid
    clean = grid_peaks(grain, period=8)
    assert len(clean["peaks"]) == 33  # the lattice of multiples of 1/8 cycles / px, one of each pair f, -f
    assert abs(clean["mean_log10"]) < 0.3 and abs(clean["axes_log10"]) < 0.3, clean
    # a faint hatch of period 4 px along x (columns 0 and 3 of every 4 brighter), in large patches only, in phase
    # across images: the peak at 1/4 cycles / px along x rises, the one along y does not
    hatch = np.tile([1.0, 0.0, 0.0, 1.0], 32)[None, None, :] * 0.02
    patches = np.zeros((8, 128, 128))
    patches[:, 16:80, 40:120] = 1.0
    hatched = grid_peaks(grain + hatch * patches, period=8)
    assert hatched["peaks"]["0/8, 2/8"] > 1.0 and hatched["peaks"]["2/8, 0/8"] < 0.3, hatched
    assert hatched["max_log10"] > 1.0 > clean["max_log10"] and hatched["axes_log10"] > clean["axes_log10"] + 0.1
    # a checkerboard of period 8 (a pattern locked to both axes) lights the diagonal of the lattice
    rows, cols = np.indices((128, 128))
    checker = np.where(((rows // 4) + (cols // 4)) % 2 == 0, 0.05, 0.0)
    assert grid_peaks(grain + checker * patches, period=8)["peaks"]["1/8, 1/8"] > 1.0
    with pytest.raises(ValueError, match="at least 32 px"):
        grid_peaks(grain[:, :16, :16], period=8)
    with pytest.raises(ValueError, match="period"):
        grid_peaks(grain, period=1)


def test_corner_power_sees_a_fine_diagonal_hatch_along_its_diagonal():
    rng = np.random.default_rng(0)
    grain = 0.2 + 0.5 * rng.random((4, 64, 64))
    rows, cols = np.indices((64, 64))
    hatch = 0.15 * np.cos(2 * np.pi * 0.4 * (rows + cols))  # (0.4, 0.4) cycles / px, beyond 0.5 radially
    clean, hatched = corner_power(grain), corner_power(grain + hatch)
    assert set(clean) == {"diagonal_45", "diagonal_135", "ring_45", "ring_135"}
    assert abs(clean["diagonal_45"] - clean["diagonal_135"]) < 0.1  # white noise: no preferred diagonal
    assert hatched["diagonal_45"] > clean["diagonal_45"] + 0.5  # the hatch lies along fx = fy ...
    assert abs(hatched["diagonal_135"] - clean["diagonal_135"]) < 0.05  # ... not along the other diagonal
    with pytest.raises(ValueError):
        corner_power(np.zeros((2, 4, 4)))
