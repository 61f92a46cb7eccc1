"""Tests for emgan_monai.physics.optics (PSFs), emgan_monai.physics.pair_synthesis and emgan_monai.metrics.image_quality
(metrics, Richardson-Lucy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve
from skimage.metrics import structural_similarity

from emgan_monai.metrics.image_quality import (
    image_quality,
    normalize_pair,
    richardson_lucy_baseline,
    tune_rl_iterations,
)
from emgan_monai.physics.optics import (
    confocal_psf,
    gaussian_sigmas_confocal,
    gaussian_sigmas_widefield,
    pinhole_disc,
    psf_fwhm,
    widefield_psf,
)
from emgan_monai.physics.pair_synthesis import SimulationRanges, convolve_plane, synthesize_pair

SPACING = (0.29, 0.26, 0.26)  # cells3d voxel size (z, y, x) um
FINE = (0.05, 0.02, 0.02)
MODELS = ("born_wolf", "gaussian")


@pytest.fixture(scope="module")
def psfs() -> dict[str, np.ndarray]:
    return {
        "wf": widefield_psf((33, 33, 33), SPACING),
        "conf": confocal_psf((33, 33, 33), SPACING),
    }


# ------------------------------------------------------------------------------------------------------------ PSFs
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("kind", ("wf", "conf"))
def test_psf_normalised_and_symmetric(model: str, kind: str) -> None:
    fn = widefield_psf if kind == "wf" else confocal_psf
    psf = fn((21, 25, 25), SPACING, model=model)
    assert psf.shape == (21, 25, 25) and psf.dtype == np.float32
    assert psf.min() >= 0
    assert psf.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(psf), psf.shape) == (10, 12, 12)
    for axis in range(3):
        np.testing.assert_allclose(psf, np.flip(psf, axis), rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(psf, psf.transpose(0, 2, 1), rtol=1e-4, atol=1e-9)  # dy == dx: rotational symmetry


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("spacing", (SPACING, (0.1, 0.05, 0.05)))
def test_confocal_narrower_than_widefield(model: str, spacing: tuple[float, float, float]) -> None:
    wf = widefield_psf((41, 33, 33), spacing, model=model)
    cf = confocal_psf((41, 33, 33), spacing, model=model)
    fz_w, fy_w, fx_w = psf_fwhm(wf, spacing)
    fz_c, fy_c, fx_c = psf_fwhm(cf, spacing)
    assert fy_c < fy_w and fx_c < fx_w
    assert fz_c < 0.9 * fz_w


def test_born_wolf_matches_textbook_widths() -> None:
    """In-focus Airy FWHM 0.514 lambda/NA; non-paraxial axial FWHM 0.88 lambda / (n - sqrt(n^2 - NA^2))."""
    na, wl, n = 1.2, 0.52, 1.33
    fz, _, _ = psf_fwhm(widefield_psf((81, 9, 9), (0.025, 0.26, 0.26), na, wl, n, oversampling=1), (0.025, 0.26, 0.26))
    _, fy, fx = psf_fwhm(widefield_psf((3, 41, 41), (0.29, 0.02, 0.02), na, wl, n, oversampling=1), (0.29, 0.02, 0.02))
    assert fy == pytest.approx(0.514 * wl / na, rel=0.05) and fx == pytest.approx(fy)
    assert fz == pytest.approx(0.88 * wl / (n - np.sqrt(n**2 - na**2)), rel=0.06)  # about 0.61 um
    # the paraxial value 1.772 n lambda / NA^2 (about 0.85 um) overestimates the axial extent at this NA
    assert fz < 0.8 * 1.772 * n * wl / na**2
    # at low NA the two agree (paraxial limit)
    fz_low, _, _ = psf_fwhm(widefield_psf((81, 5, 5), (0.5, 0.26, 0.26), 0.3, wl, n, oversampling=1), (0.5, 0.26, 0.26))
    assert fz_low == pytest.approx(1.772 * n * wl / 0.3**2, rel=0.05)


def test_gaussian_confocal_limits() -> None:
    sz_wf, sr_wf = gaussian_sigmas_widefield(1.2, 0.52, 1.33)
    sz_0, sr_0 = gaussian_sigmas_confocal(1.2, 0.488, 0.52, 1.33, 0.0)
    sz_1, sr_1 = gaussian_sigmas_confocal(1.2, 0.488, 0.52, 1.33, 1.0)
    assert sr_0 < sr_1 < sr_wf and sz_0 < sz_1 < sz_wf
    # the formula is continuous into the point-pinhole limit
    assert gaussian_sigmas_confocal(1.2, 0.488, 0.52, 1.33, 0.02)[1] == pytest.approx(sr_0, rel=1e-3)


def test_pinhole_disc_area() -> None:
    disc = pinhole_disc(1.0, (0.05, 0.05))
    assert disc.shape[0] % 2 == 1 and disc.sum() == pytest.approx(1.0)
    area = (disc > 0).sum() * 0.05**2
    assert area == pytest.approx(np.pi, rel=0.1)
    assert pinhole_disc(0.0, (0.26, 0.26)).shape == (3, 3)


@pytest.mark.parametrize(
    "kwargs",
    [dict(na=1.4), dict(na=0.0), dict(wavelength_em_um=520.0), dict(model="vectorial")],
)
def test_psf_rejects_bad_optics(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        widefield_psf((5, 5, 5), SPACING, **kwargs)
    with pytest.raises(ValueError, match="spacing"):
        widefield_psf((5, 5, 5), (0.3, -0.1, 0.1))


# --------------------------------------------------------------------------------------------- image formation
@pytest.mark.parametrize("psf_shape", [(5, 7, 7), (4, 6, 5)])
def test_convolve_plane_equals_3d_fftconvolve(psf_shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    vol = rng.random((6, 12, 10))
    psf = rng.random(psf_shape)
    full = fftconvolve(vol, psf, mode="full")
    cz, cy, cx = (s // 2 for s in psf_shape)
    for z in (0, 3, 5):
        plane = convolve_plane(vol, psf, z, lateral_padding="constant", axial_padding="constant")
        np.testing.assert_allclose(plane, full[z + cz, cy : cy + 12, cx : cx + 10], atol=1e-10)


def test_convolve_plane_reflect_padding_keeps_uniform_field() -> None:
    vol = np.ones((5, 16, 16))
    psf = widefield_psf((9, 15, 15), SPACING)
    plane = convolve_plane(vol, psf, 2, lateral_padding="reflect", axial_padding="reflect")
    np.testing.assert_allclose(plane, 1.0, rtol=1e-5)


def test_widefield_haze_vs_confocal_sectioning(psfs: dict[str, np.ndarray]) -> None:
    """A point source 1.16 um out of focus still sends (nearly) all its light to the wide-field plane as haze."""
    vol = np.zeros((17, 32, 32))
    vol[8, 16, 16] = 1.0
    kw = dict(lateral_padding="constant", axial_padding="constant")
    wf_in, wf_out = convolve_plane(vol, psfs["wf"], 8, **kw), convolve_plane(vol, psfs["wf"], 12, **kw)
    cf_in, cf_out = convolve_plane(vol, psfs["conf"], 8, **kw), convolve_plane(vol, psfs["conf"], 12, **kw)
    assert wf_out.sum() > 0.9 * wf_in.sum()  # energy conserved through focus: haze
    assert wf_out.max() < 0.2 * wf_in.max()  # but spread out
    assert cf_out.sum() < 0.2 * cf_in.sum()  # optical sectioning rejects it
    assert wf_out.sum() / wf_in.sum() > 5 * cf_out.sum() / cf_in.sum()


def _blobs(shape: tuple[int, int, int] = (12, 48, 48), n: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape)
    vol[tuple(rng.integers(0, shape, size=(n, 3)).T)] = 1.0
    return gaussian_filter(vol, (0.7, 1.5, 1.5))


def test_synthesize_pair_seeded(psfs: dict[str, np.ndarray]) -> None:
    vol = _blobs()
    a = synthesize_pair(vol, 6, psfs["wf"], psfs["conf"], rng=3)
    b = synthesize_pair(vol, 6, psfs["wf"], psfs["conf"], rng=3)
    c = synthesize_pair(vol, 6, psfs["wf"], psfs["conf"], rng=4)
    for x in a:
        assert x.shape == (48, 48) and x.dtype == np.float32
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    np.testing.assert_array_equal(a[1], c[1])  # noise-free target does not depend on the seed
    assert a[1].max() == pytest.approx(200.0)  # target peak = photon budget
    assert a[0].min() >= 0


def test_synthesize_pair_noise_statistics(psfs: dict[str, np.ndarray]) -> None:
    """Uniform object: wf - offset ~ Poisson(photons + background) + N(0, read_noise^2)."""
    vol = np.ones((6, 64, 64))
    for photons in (50.0, 400.0):
        wf, _ = synthesize_pair(
            vol,
            3,
            psfs["wf"],
            psfs["conf"],
            photons=photons,
            background=10.0,
            read_noise=2.0,
            offset=100.0,
            rng=0,
            axial_padding="reflect",
        )
        counts = wf.astype(np.float64) - 100.0
        assert counts.mean() == pytest.approx(photons + 10.0, rel=0.02)
        assert counts.var() == pytest.approx(photons + 10.0 + 4.0, rel=0.1)


def test_synthesize_pair_mean_scales_with_photons(psfs: dict[str, np.ndarray]) -> None:
    vol = _blobs()
    means = [
        synthesize_pair(vol, 6, psfs["wf"], psfs["conf"], photons=p, background=0.0, read_noise=0.0, offset=0.0, rng=1)[
            0
        ].mean()
        for p in (100.0, 1000.0)
    ]
    assert means[1] / means[0] == pytest.approx(10.0, rel=0.03)


def test_synthesize_pair_rejects_bad_input(psfs: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        synthesize_pair(-np.ones((4, 8, 8)), 0, psfs["wf"], psfs["conf"])
    with pytest.raises(ValueError, match="z_index"):
        synthesize_pair(np.ones((4, 8, 8)), 4, psfs["wf"], psfs["conf"])
    with pytest.raises(ValueError, match="3D"):
        synthesize_pair(np.ones((8, 8)), 0, psfs["wf"], psfs["conf"])


def test_simulation_ranges() -> None:
    ranges = SimulationRanges()
    draws = [ranges.sample(np.random.default_rng(i)) for i in range(50)]
    for d in draws:
        assert ranges.na[0] <= d["na"] <= ranges.na[1]
        assert ranges.photons[0] <= d["photons"] <= ranges.photons[1]
        assert ranges.background[0] <= d["background"] <= ranges.background[1]
        assert ranges.read_noise[0] <= d["read_noise"] <= ranges.read_noise[1]
    assert ranges.sample(7) == ranges.sample(7)
    assert SimulationRanges(na=(1.2, 1.2)).sample(0)["na"] == 1.2
    with pytest.raises(ValueError, match="photons"):
        SimulationRanges(photons=(100.0, 10.0))
    with pytest.raises(ValueError, match="na"):
        SimulationRanges(na=(1.2, 1.4))


# --------------------------------------------------------------------------------------- metrics and RL baseline
def test_image_quality_matches_skimage() -> None:
    rng = np.random.default_rng(0)
    target = gaussian_filter(rng.random((40, 48)), 2)
    pred = target + 0.02 * rng.standard_normal(target.shape)
    q = image_quality(pred, target, data_range=1.0)
    ref = structural_similarity(
        target, pred, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert q["ssim"] == pytest.approx(ref, abs=1e-5)
    mse = float(((pred - target) ** 2).mean())
    assert q["mse"] == pytest.approx(mse, rel=1e-5)
    assert q["psnr"] == pytest.approx(10 * np.log10(1.0 / mse), rel=1e-5)
    assert q["nrmse"] == pytest.approx(np.linalg.norm(pred - target) / np.linalg.norm(target), rel=1e-6)
    perfect = image_quality(target, target)
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["mse"] == 0.0
    vol = image_quality(np.stack([pred] * 5), np.stack([target] * 5), data_range=1.0)  # 3D, window shrinks to 5
    assert 0.0 < vol["ssim"] < 1.0
    with pytest.raises(ValueError, match="shapes differ"):
        image_quality(pred, target[:-1])


def test_minmse_normalisation_is_affine_invariant() -> None:
    rng = np.random.default_rng(1)
    target = gaussian_filter(rng.random((32, 32)), 2)
    p1, t1 = normalize_pair(target, target)
    p2, _ = normalize_pair(37.0 * target - 5.0, target)
    np.testing.assert_allclose(p1, t1, atol=1e-12)
    np.testing.assert_allclose(p2, t1, atol=1e-9)


def test_richardson_lucy_improves_ssim_and_tuning(psfs: dict[str, np.ndarray]) -> None:
    vol = _blobs((12, 48, 48), n=40, seed=2)
    pairs = [synthesize_pair(vol, z, psfs["wf"], psfs["conf"], photons=500.0, rng=z) for z in (5, 6)]
    wf, target = pairs[0]
    raw = image_quality(wf, target, normalize="minmse")["ssim"]
    deconv = image_quality(richardson_lucy_baseline(wf, psfs["wf"], 10), target, normalize="minmse")["ssim"]
    assert deconv > raw + 0.05
    best, scores = tune_rl_iterations(pairs, psfs["wf"], candidates=(2, 10), return_scores=True)
    assert set(scores) == {2, 10} and best == max(scores, key=scores.get)
    assert isinstance(tune_rl_iterations(pairs, psfs["wf"], candidates=(3,)), int)
    out = richardson_lucy_baseline(wf, psfs["wf"][16], 3)  # a 2D PSF works too
    assert out.shape == wf.shape and out.dtype == np.float32 and out.min() >= 0
    with pytest.raises(ValueError, match="2D image"):
        richardson_lucy_baseline(np.ones((2, 8, 8)), psfs["wf"], 3)
