"""Sharpness measures (:mod:`emgan_monai.metrics.sharpness`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emgan_monai.metrics.sharpness import fourier_ring_correlation, frc_cutoff, high_frequency_power_ratio


@pytest.fixture()
def target() -> np.ndarray:
    rng = np.random.default_rng(0)
    return ndimage.gaussian_filter(rng.random((96, 96)), 1.0)


def test_identical_images_correlate_up_to_nyquist(target) -> None:
    freqs, frc = fourier_ring_correlation(target, target)
    assert freqs.shape == frc.shape == (32,) and freqs[-1] < 0.5
    np.testing.assert_allclose(frc[1:], 1.0, atol=1e-9)
    assert frc_cutoff(target, target) == 0.5
    assert high_frequency_power_ratio(target, target) == pytest.approx(1.0)


def test_blur_lowers_the_frc_cutoff_and_the_hf_power(target) -> None:
    blurred = ndimage.gaussian_filter(target, 2.0)
    noisy = target + np.random.default_rng(1).normal(0, 0.05, target.shape)
    assert high_frequency_power_ratio(blurred, target) < 0.2
    assert high_frequency_power_ratio(noisy, target) > 1.5
    assert frc_cutoff(blurred, target) < frc_cutoff(target + 0.01 * noisy, target)
    assert frc_cutoff(noisy, target) < 0.5
    # power scales with intensity squared: compare images on one scale (e.g. after normalize_pair)
    assert high_frequency_power_ratio(2 * target, target) == pytest.approx(4.0)


def test_bad_inputs_are_refused(target) -> None:
    with pytest.raises(ValueError, match="share a shape"):
        frc_cutoff(target, target[:-1])
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_power_ratio(target, target, cutoff=0.7)
    with pytest.raises(ValueError, match="2D"):
        high_frequency_power_ratio(target[None], target[None])
