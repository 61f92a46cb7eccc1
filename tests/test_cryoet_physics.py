"""Tests of the cryo-ET physics modules: atomic_models (density maps), volume_geometry (resampling, rotations), ctf,
subtomogram_simulator (missing wedge, noise, band-pass, traditional simulator) and tomography (tilt series, WBP)."""

from pathlib import Path

import numpy as np
import pytest
from conftest import data_root

from emgan_monai.physics import atomic_models as atoms
from emgan_monai.physics import ctf as ctf_mod
from emgan_monai.physics import subtomogram_simulator as simulator
from emgan_monai.physics import tomography as tomo
from emgan_monai.physics import volume_geometry as geometry

SYNTHETIC_PDB = """\
HEADER    SYNTHETIC TEST MODEL
ATOM      1  N   ALA A   1      10.000  20.000  30.000  1.00  0.00           N
ATOM      2  CA  ALA A   1      40.000  20.000  30.000  1.00  0.00           C
ATOM      3  C   ALA A   1      10.000  50.000  30.000  1.00  0.00           C
ATOM      4  O   ALA A   1      10.000  20.000  60.000  1.00  0.00           O
HETATM    5 FE   HEM A   2      25.000  35.000  45.000  1.00  0.00          FE
END
"""


def _pdb_path(tmp_path: Path) -> Path:
    real = data_root() / "cryoet" / "pdb" / "1bxn.pdb"
    if real.is_file():
        return real
    path = tmp_path / "synthetic.pdb"
    path.write_text(SYNTHETIC_PDB)
    return path


def _centre_of_mass(vol: np.ndarray) -> np.ndarray:
    w = np.clip(vol, 0, None).astype(np.float64)
    return np.array([np.average(np.indices(vol.shape)[i], weights=w) for i in range(vol.ndim)])


@pytest.mark.needs_data
def test_density_from_pdb_centred_box(tmp_path):
    density, vs = atoms.density_from_pdb(_pdb_path(tmp_path), voxel_size=10.0, box=32)
    assert density.shape == (32, 32, 32) and density.dtype == np.float32 and vs == 10.0
    assert density.min() >= 0 and density.max() > 0
    np.testing.assert_allclose(_centre_of_mass(density), [15.5, 15.5, 15.5], atol=0.5)


def test_density_from_pdb_axes_and_weights(tmp_path):
    path = tmp_path / "synthetic.pdb"
    path.write_text(SYNTHETIC_PDB)
    coords, weights = atoms.read_pdb_atoms(path)
    assert coords.shape == (5, 3)
    np.testing.assert_array_equal(weights, [7, 6, 6, 8, 26])
    density, _ = atoms.density_from_pdb(path, voxel_size=5.0, resolution=8.0, box=24)
    # the heavy Fe atom sits at the +x/+y/+z side of the centroid: ZYX order puts it at high indices
    peak = np.unravel_index(np.argmax(density), density.shape)
    assert all(p > 11.5 for p in peak)
    # total mass is preserved by the Gaussian blur (box large enough)
    np.testing.assert_allclose(density.sum(), weights.sum(), rtol=1e-3)


def test_density_from_pdb_empty_raises(tmp_path):
    empty = tmp_path / "empty_model.pdb"
    empty.write_text("HEADER    NOTHING\nEND\n")
    with pytest.raises(ValueError, match="empty_model.pdb"):
        atoms.density_from_pdb(empty)


def test_pad_or_crop_and_resample():
    vol = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    out = geometry.pad_or_crop(vol, 8)
    assert out.shape == (8, 8, 8)
    assert out[4, 4, 4] == vol[2, 3, 3]  # centre voxel n // 2 -> box // 2
    np.testing.assert_array_equal(geometry.pad_or_crop(out, (5, 6, 7)), vol)
    res = geometry.resample_map(np.ones((10, 10, 10), np.float32), 10.0, 5.0)
    assert res.shape == (20, 20, 20)


def test_rotation_matrices_and_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(5):
        r = geometry.random_rotation_matrix(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)
    zz, yy, xx = np.indices((32, 32, 32)) - 15.5
    blob = np.exp(-((zz - 3) ** 2 / 18 + (yy + 2) ** 2 / 8 + xx**2 / 30)).astype(np.float32)
    r = geometry.random_rotation_matrix(1)
    rotated = geometry.rotate_volume(blob, r)
    assert np.abs(rotated - blob).max() > 0.2  # it really moved
    restored = geometry.rotate_volume(rotated, r.T)
    assert np.abs(restored - blob).max() < 0.1  # trilinear (default) blurs twice
    cubic = geometry.rotate_volume(geometry.rotate_volume(blob, r, order=3), r.T, order=3)
    assert np.abs(cubic - blob).max() < 0.01
    shifted = geometry.rotate_volume(blob, np.eye(3), shift=(2, 0, 0))
    np.testing.assert_allclose(shifted[2:], blob[:-2], atol=1e-5)


def test_electron_wavelength():
    assert ctf_mod.electron_wavelength(300) == pytest.approx(0.019687, rel=1e-4)
    assert ctf_mod.electron_wavelength(200) == pytest.approx(0.025079, rel=1e-4)


@pytest.mark.parametrize("defocus_um", [2.0, 4.0])
def test_ctf_first_zero_analytic(defocus_um):
    # with Cs = 0 and no amplitude contrast, the first zero is at k = 1 / sqrt(lambda * dz)
    k_expected = 1.0 / np.sqrt(0.0196875 * defocus_um * 1e4)
    kw = dict(defocus_um=defocus_um, cs_mm=0.0, amplitude_contrast=0.0)
    assert ctf_mod.ctf_first_zero(**kw) == pytest.approx(k_expected, rel=1e-4)
    # sign change of the 2D CTF along the x axis of the FFT grid
    n, vs = 512, 2.0
    ctf = ctf_mod.ctf_2d((n, n), vs, **kw)
    profile, freqs = ctf[0, : n // 2], np.fft.fftfreq(n, d=vs)[: n // 2]
    sign = np.sign(profile[1:])  # skip DC, where this CTF is exactly 0
    first = 1 + np.nonzero(sign[1:] != sign[:-1])[0][0]
    assert freqs[first] <= k_expected <= freqs[first + 1]
    # with Cs and amplitude contrast, the analytic root is a zero of ctf_1d
    k0 = ctf_mod.ctf_first_zero(defocus_um=defocus_um)
    assert abs(ctf_mod.ctf_1d(k0, defocus_um=defocus_um)) < 1e-9
    assert ctf_mod.ctf_1d(0.0) == pytest.approx(0.07)  # positive sign convention at DC
    assert np.all(ctf_mod.ctf_1d(0.5 * k0, defocus_um=defocus_um) > 0)


def test_ctf_3d_radial_and_envelope():
    c3 = ctf_mod.ctf_3d((16, 16, 16), 10.0, bfactor=0.0)
    c2 = ctf_mod.ctf_2d((16, 16), 10.0, bfactor=0.0)
    np.testing.assert_allclose(c3[0], c2, atol=1e-6)
    damped = ctf_mod.ctf_3d((16, 16, 16), 10.0, bfactor=500.0)
    assert np.all(np.abs(damped) <= np.abs(c3) + 1e-7)


def test_missing_wedge_mask():
    mask = simulator.missing_wedge_mask((64, 64, 64), (-60, 60), tilt_axis="y")
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert abs((1 - mask.mean()) - 1 / 3) < 0.05
    kz, kx = 10, 2  # steep direction (~79 deg from k_x): missing; shallow one sampled
    assert mask[kz, 0, kx] == 0 and mask[kz, 5, kx] == 0 and mask[-kz, 0, -kx] == 0
    assert mask[kx, 0, kz] == 1 and mask[0, 7, 0] == 1 and mask[0, 0, 0] == 1
    mask_x = simulator.missing_wedge_mask((64, 64, 64), (-60, 60), tilt_axis="x")
    np.testing.assert_array_equal(mask_x, mask.transpose(0, 2, 1))
    full = simulator.missing_wedge_mask((16, 16, 16), (-90, 90))
    assert full.min() == 1.0
    with pytest.raises(ValueError):
        simulator.missing_wedge_mask((16, 16, 16), (60, -60))


@pytest.mark.parametrize("snr", [0.05, 0.5, 2.0])
def test_add_noise_snr(snr):
    rng = np.random.default_rng(3)
    signal = rng.standard_normal((32, 32, 32)).astype(np.float32) * 2.5 + 1.0
    noisy = simulator.add_noise_snr(signal, snr, rng=4)
    measured = signal.var() / (noisy - signal).var()
    assert measured == pytest.approx(snr, rel=0.1)


def test_bandpass():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((32, 32, 32)).astype(np.float32)
    out = simulator.bandpass(vol, 10.0, low_A=160.0, high_A=40.0)
    spec = np.abs(np.fft.fftn(out))
    k = np.sqrt(sum(g**2 for g in np.meshgrid(*[np.fft.fftfreq(32, 10.0)] * 3, indexing="ij")))
    assert spec[(k > 1 / 40.0 + 1e-6) | (k < 1 / 160.0 - 1e-6)].max() < 1e-3
    assert spec[(k > 1 / 150.0) & (k < 1 / 45.0)].min() > 1e-3


@pytest.mark.needs_data
def test_simulate_subtomogram(tmp_path):
    density, _ = atoms.density_from_pdb(_pdb_path(tmp_path), voxel_size=10.0, box=32)
    clean = simulator.simulate_subtomogram(density, 10.0, snr=None)
    assert clean.shape == (32, 32, 32) and clean.dtype == np.float32
    # contrast inversion: the simulated signal anti-correlates with the low-passed density
    low = simulator.bandpass(density, 10.0, high_A=40.0)
    assert np.corrcoef(clean.ravel(), low.ravel())[0, 1] < 0
    upright = simulator.simulate_subtomogram(density, 10.0, snr=None, invert_contrast=False)
    np.testing.assert_allclose(upright, -clean, atol=1e-4)
    # the missing wedge region of the spectrum is empty
    wedge = simulator.missing_wedge_mask(density.shape)
    assert np.abs(np.fft.fftn(clean))[wedge == 0].max() < 1e-3 * np.abs(np.fft.fftn(clean)).max()
    noisy = simulator.simulate_subtomogram(density, 10.0, snr=0.1, rng=0)
    assert clean.var() / (noisy - clean).var() == pytest.approx(0.1, rel=0.1)
    np.testing.assert_array_equal(noisy, simulator.simulate_subtomogram(density, 10.0, snr=0.1, rng=0))


def test_tilt_series_wbp_roundtrip():
    zz, yy, xx = np.indices((32, 8, 32)) - np.array([15.5, 3.5, 15.5])[:, None, None, None]
    vol = np.exp(-(zz**2 + xx**2) / 20.0) * (np.abs(yy) < 3) * (zz**2 + xx**2 < 14**2)
    angles = np.arange(-90, 90, 3.0)
    proj = tomo.tilt_series(vol, angles)
    assert proj.shape == (len(angles), 8, 32)
    np.testing.assert_allclose(proj[len(angles) // 2], vol.sum(axis=0), rtol=0.05, atol=0.05)  # 0 deg = beam along z
    rec = tomo.weighted_back_projection(proj, angles)
    assert rec.shape == vol.shape
    assert np.corrcoef(rec.ravel(), vol.ravel())[0, 1] > 0.95


def test_missing_wedge_is_exactly_the_region_outside_the_tilt_range():
    """Every Fourier sample with |angle from the k_x axis| > 60 deg (in the k_z-k_x plane) is zeroed, every one
    inside is kept, for all k_y (tilt axis y); samples within 1 degree of the boundary are not judged."""
    n = 48
    mask = simulator.missing_wedge_mask((n, n, n), (-60, 60), tilt_axis="y")
    k = np.fft.fftfreq(n)
    kz, kx = np.meshgrid(k, k, indexing="ij")
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
    inside = angle < 59.0
    outside = angle > 61.0
    origin = (kz == 0) & (kx == 0)
    for iy in (0, 5, n // 2):
        plane = mask[:, iy, :]
        assert plane[inside | origin].min() == 1.0
        assert plane[outside & ~origin].max() == 0.0


def test_resample_map_is_anti_aliased():
    """Downsampling a Nyquist checkerboard must not alias it into a low-frequency pattern."""
    idx = np.indices((32, 32, 32)).sum(0)
    checker = ((idx % 2) * 2 - 1).astype(np.float32)
    down = geometry.resample_map(checker, 10.0, 20.0)
    assert down.shape == (16, 16, 16)
    assert float(np.abs(down[2:-2, 2:-2, 2:-2]).max()) < 0.2  # averaged out, not aliased
    smooth = np.zeros((32, 32, 32), np.float32)
    smooth[8:24, 8:24, 8:24] = 1
    assert geometry.resample_map(smooth, 10.0, 20.0)[8, 8, 8] > 0.9  # large structures are kept


def test_simulate_subtomogram_noise_in_wedge():
    dens = np.zeros((16, 16, 16), np.float32)
    dens[5:11, 5:11, 5:11] = 1
    wedge = simulator.missing_wedge_mask((16, 16, 16))
    white = simulator.simulate_subtomogram(dens, 20.0, snr=0.05, rng=0)
    wedged = simulator.simulate_subtomogram(dens, 20.0, snr=0.05, rng=0, noise_in_wedge=True)
    p_white = np.abs(np.fft.fftn(white)) ** 2
    p_wedged = np.abs(np.fft.fftn(wedged)) ** 2
    missing = wedge == 0
    assert p_wedged[missing].mean() < 1e-6 * p_wedged[~missing].mean()  # nothing in the wedge
    assert p_white[missing].mean() > 0.3 * p_white[~missing].mean()  # white noise fills it
    assert wedged.var() == pytest.approx(white.var(), rel=0.2)  # same SNR


def test_read_mmcif_atoms_matches_pdb(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    pdb = tmp_path / "m.pdb"
    pdb.write_text(
        "ATOM      1  N   ALA A   1      11.104   6.134  -6.504  1.00  0.00           N\n"
        "ATOM      2  CA  ALA A   1      11.639   6.071  -5.147  1.00  0.00           C\n"
        "ATOM      3  CA BALA A   1      11.000   6.000  -5.000  0.50  0.00           C\n"
        "HETATM    4 FE   HEM A   2       1.000   2.000   3.000  1.00  0.00          FE\n"
        "END\n"
    )
    st = gemmi.read_structure(str(pdb))
    st.setup_entities()
    st.make_mmcif_document().write_file(str(tmp_path / "m.cif"))
    a = atoms.read_pdb_atoms(pdb)
    b = atoms.read_atoms(tmp_path / "m.cif")
    order_a, order_b = np.lexsort(a[0].T), np.lexsort(b[0].T)
    np.testing.assert_allclose(a[0][order_a], b[0][order_b], atol=1e-3)
    np.testing.assert_array_equal(a[1][order_a], b[1][order_b])
    assert sorted(b[1].tolist()) == [6, 7, 26]  # altloc B dropped, Fe = 26
    with pytest.raises(ValueError, match="cannot read mmCIF"):
        (tmp_path / "bad.cif").write_text("not a cif")
        atoms.read_atoms(tmp_path / "bad.cif")
