"""Tests of emgan_monai.data.cryoet (density lists, subtomogram cutting, normalisation, export)."""

import csv
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from conftest import data_root

from emgan_monai.data import cryoet as dc

CRYOET = data_root() / "cryoet"
DEEPFINDER = CRYOET / "deepfinder_toy"
HIV = CRYOET / "tomo_hiv"


def _write_mrc(path: Path, data: np.ndarray, voxel_size: float) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data.astype(np.float32))
        mrc.voxel_size = voxel_size


def test_density_datalist_and_load(tmp_path):
    blob = np.zeros((20, 20, 20), np.float32)
    blob[8:12, 8:12, 8:12] = 1.0
    _write_mrc(tmp_path / "aaaa.mrc", blob, 5.0)
    (tmp_path / "bbbb.pdb").write_text(
        "ATOM      1  CA  ALA A   1       0.000   0.000   0.000  1.00  0.00           C\n"
        "ATOM      2  CA  ALA A   2      30.000   0.000   0.000  1.00  0.00           C\n"
    )
    (tmp_path / "notes.txt").write_text("ignored")
    items = dc.density_datalist(tmp_path)
    assert [d["label"] for d in items] == ["aaaa", "bbbb"]
    vol = dc.load_density(items[0]["image"], voxel_size=10.0, box=16)
    assert vol.shape == (16, 16, 16)
    assert vol.sum() == pytest.approx(blob.sum() / 8, rel=0.1)  # 5 A -> 10 A halves every axis
    vol_pdb = dc.load_density(items[1]["image"], voxel_size=10.0, box=16)
    assert vol_pdb.shape == (16, 16, 16) and vol_pdb.max() > 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no density"):
        dc.density_datalist(tmp_path / "empty")
    with pytest.raises(ValueError, match="does not exist"):
        dc.density_datalist(tmp_path / "missing")


@pytest.mark.needs_data
@pytest.mark.skipif(not (CRYOET / "templates_10A").is_dir(), reason="real cryoet templates absent")
def test_real_templates_load():
    items = dc.density_datalist(CRYOET / "templates_10A")
    assert len(items) >= 20
    vol = dc.load_density(items[0]["image"], voxel_size=10.0, box=32)
    assert vol.shape == (32, 32, 32) and vol.max() > 0


def test_cut_subvolume_border_modes():
    vol = np.arange(10**3, dtype=np.float32).reshape(10, 10, 10)
    sub = dc.cut_subvolume(vol, (5, 5, 5), 4)
    assert sub.shape == (4, 4, 4) and sub[2, 2, 2] == vol[5, 5, 5]
    assert dc.cut_subvolume(vol, (1, 5, 5), 4) is None
    padded = dc.cut_subvolume(vol, (1, 5, 5), 4, border="pad")
    assert padded.shape == (4, 4, 4) and padded[2, 2, 2] == vol[1, 5, 5]
    assert padded[0, 0, 0] == pytest.approx(vol.mean())


def _synthetic_deepfinder(tmp_path: Path) -> tuple[Path, Path, Path]:
    import h5py

    rng = np.random.default_rng(0)
    target = np.zeros((40, 40, 40), np.int8)
    objs = [(1, (10, 12, 20)), (2, (25, 20, 15)), (3, (30, 30, 30)), (4, (2, 20, 20))]
    for label, (x, y, z) in objs:
        target[x - 2 : x + 3, y - 2 : y + 3, z - 2 : z + 3] = label
    data = target.astype(np.float32) + rng.normal(0, 0.1, target.shape).astype(np.float32)
    for name, arr in (("data", data), ("target", target)):
        with h5py.File(tmp_path / f"tomo1_{name}.h5", "w") as fh:
            fh["dataset"] = arr
    xml = (
        "<objlist>\n"
        + "".join(
            f'  <object tomo_idx="0" class_label="{label}" x="{x}" y="{y}" z="{z}"/>\n' for label, (x, y, z) in objs
        )
        + "</objlist>\n"
    )
    (tmp_path / "tomo1_objlist.xml").write_text(xml)
    return tmp_path / "tomo1_data.h5", tmp_path / "tomo1_target.h5", tmp_path / "tomo1_objlist.xml"


def test_subtomograms_from_deepfinder_synthetic(tmp_path):
    data, target, xml = _synthetic_deepfinder(tmp_path)
    items = dc.subtomograms_from_deepfinder(data, xml, box=8)
    assert [it[1] for it in items] == [1, 2, 3]  # the particle at x=2 is too close to the border
    for sub, label, _ in items:
        assert sub.shape == (8, 8, 8) and round(float(sub[4, 4, 4])) == label
    padded = dc.subtomograms_from_deepfinder(target, xml, box=8, border="pad")
    assert len(padded) == 4 and all(int(s[4, 4, 4]) == lab for s, lab, _ in padded)


@pytest.mark.needs_data
@pytest.mark.skipif(not (DEEPFINDER / "tomo1_data.h5").is_file(), reason="real DeepFinder toy data absent")
def test_subtomograms_from_deepfinder_real():
    exact = near = total = 0
    for i in (1, 2):
        xml = DEEPFINDER / f"tomo{i}_objlist.xml"
        data = dc.subtomograms_from_deepfinder(DEEPFINDER / f"tomo{i}_data.h5", xml, box=32, border="pad")
        labels = dc.subtomograms_from_deepfinder(DEEPFINDER / f"tomo{i}_target.h5", xml, box=32, border="pad")
        assert len(data) == 27 and all(d[0].shape == (32, 32, 32) for d in data)
        for (_, lab_d, c_d), (sub_t, lab_t, c_t) in zip(data, labels):
            assert (lab_d, c_d) == (lab_t, c_t)
            total += 1
            exact += int(sub_t[16, 16, 16]) == lab_t
            near += bool(np.any(sub_t[15:18, 15:18, 15:18] == lab_t))
        assert len(dc.subtomograms_from_deepfinder(DEEPFINDER / f"tomo{i}_data.h5", xml, box=32)) < 27  # drop mode
    assert exact / total > 0.5
    assert near / total > 0.9


def test_binning_scale_synthetic():
    pts = np.array([[10.0, 20.0, 30.0], [399.0, 530.0, 100.0]])
    assert dc.binning_scale_from_points(pts, (101, 135, 135)) == 4
    assert dc.binning_scale_from_points(pts / 4, (101, 135, 135)) == 1
    with pytest.raises(ValueError):
        dc.binning_scale_from_points(pts[:, :2], (101, 135, 135))


@pytest.mark.needs_data
@pytest.mark.skipif(not (HIV / "tomo.tif").is_file(), reason="real HIV tomogram absent")
def test_hiv_scale_and_subtomograms():
    tomo = dc.load_tomogram(HIV / "tomo.tif")
    points = np.load(HIV / "tomo_point.npy")
    scale = dc.binning_scale_from_points(points, tomo.shape)
    assert scale == 4
    # check: at scale 4 the positions sit on structure, at a wrong scale on background
    assert abs(dc.point_contrast(tomo, points, 4)) > 1.0
    assert abs(dc.point_contrast(tomo, points, 5)) < 0.5
    items = dc.subtomograms_from_points(tomo, points[:200], scale=None, box=16)
    assert 0 < len(items) <= 200
    sub, label, centre = items[0]
    assert sub.shape == (16, 16, 16) and sub[8, 8, 8] == tomo[centre]


def test_zscore_stats():
    rng = np.random.default_rng(0)
    vols = [rng.normal(3.0, 2.0, (8, 8, 8)) for _ in range(4)]
    stats = dc.ZScoreStats.fit(vols)
    allv = np.concatenate([v.ravel() for v in vols])
    assert stats.mean == pytest.approx(allv.mean()) and stats.std == pytest.approx(allv.std())
    normed = np.concatenate([stats(v).ravel() for v in vols])
    assert normed.mean() == pytest.approx(0.0, abs=1e-5) and normed.std() == pytest.approx(1.0, abs=1e-5)
    const = np.full((4, 4, 4), 7.0)
    assert np.all(dc.zscore(const) == 0) and np.all(np.isfinite(dc.zscore(const)))
    assert np.all(dc.ZScoreStats.fit([const])(const) == 0)


def test_save_subtomograms_and_unpaired(tmp_path):
    rng = np.random.default_rng(0)
    items = [(rng.normal(size=(8, 8, 8)).astype(np.float32), k % 2, (k, k, k)) for k in range(3)]
    csv_path = dc.save_subtomograms(items, tmp_path / "S", voxel_size=13.6)
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["label"] for r in rows] == ["0", "1", "0"] and rows[2]["centre_0"] == "2"
    with mrcfile.open(tmp_path / "S" / rows[1]["filename"]) as mrc:
        np.testing.assert_array_equal(mrc.data, items[1][0])
        assert float(mrc.voxel_size.x) == pytest.approx(13.6, rel=1e-5)
    dens = tmp_path / "D"
    dens.mkdir()
    for k in range(5):
        _write_mrc(dens / f"d{k}.mrc", np.zeros((4, 4, 4)), 10.0)
    pairs = dc.unpaired_datalist(dens, tmp_path / "S")
    assert len(pairs) == 5
    assert {Path(p["image_a"]).name for p in pairs} == {f"d{k}.mrc" for k in range(5)}
    assert [Path(p["image_b"]).name for p in pairs] == [rows[k % 3]["filename"] for k in range(5)]
    with pytest.raises(ValueError, match="does not exist"):
        dc.unpaired_datalist(dens, tmp_path / "nope")


@pytest.mark.needs_data
@pytest.mark.skipif(not (DEEPFINDER / "tomo1_data.h5").is_file(), reason="real DeepFinder toy data absent")
def test_deepfinder_axis_convention_matches_wedge_mask():
    """Array axis 0 is the beam and axis 1 the tilt axis: the y-axis wedge mask explains the spectrum."""
    from emgan_monai.physics.subtomogram_simulator import missing_wedge_mask

    tomo = dc.load_tomogram(DEEPFINDER / "tomo1_data.h5")
    power = np.abs(np.fft.fftn(tomo - tomo.mean())) ** 2
    sampled = missing_wedge_mask(tomo.shape, (-60, 60), tilt_axis="y").astype(bool)
    assert power[sampled].mean() > 10 * power[~sampled].mean()
    wrong = missing_wedge_mask(tomo.shape, (-60, 60), tilt_axis="x").astype(bool)
    assert power[wrong].mean() < 2 * power[~wrong].mean()
