"""Tests for emgan_monai.data.fluorescence (paired datalists, plane splits, synthesis from a confocal stack)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy.ndimage import gaussian_filter

from emgan_monai.data.fluorescence import paired_datalist, split_planes, synthesize_pairs_from_stack
from emgan_monai.physics.pair_synthesis import SimulationRanges


def _write_pairs(root: Path, names: dict[str, tuple[tuple[int, ...], tuple[int, ...]]], dtype=np.uint16) -> None:
    (root / "wf").mkdir(parents=True, exist_ok=True)
    (root / "confocal").mkdir(parents=True, exist_ok=True)
    for name, (s_wf, s_conf) in names.items():
        if s_wf:
            tifffile.imwrite(root / "wf" / name, np.zeros(s_wf, dtype=dtype), photometric="minisblack")
        if s_conf:
            tifffile.imwrite(root / "confocal" / name, np.zeros(s_conf, dtype=dtype), photometric="minisblack")


# ------------------------------------------------------------------------------------------------ paired_datalist
def test_paired_datalist_matches_names(tmp_path: Path) -> None:
    _write_pairs(tmp_path, {"b.tif": ((16, 16), (16, 16)), "a.tif": ((3, 8, 8), (3, 8, 8))})
    tifffile.imwrite(tmp_path / "wf" / "c.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "confocal" / "c.tiff", np.zeros((8, 8), np.uint8))  # .tif matches .tiff
    (tmp_path / "wf" / "notes.txt").write_text("ignored")
    datalist = paired_datalist(tmp_path)
    assert [Path(d["image"]).stem for d in datalist] == ["a", "b", "c"]
    assert all(Path(d["image"]).parent.name == "wf" and Path(d["label"]).parent.name == "confocal" for d in datalist)
    assert Path(datalist[2]["label"]).name == "c.tiff"


def test_paired_datalist_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        paired_datalist(tmp_path / "nowhere")
    (tmp_path / "wf").mkdir()
    with pytest.raises(FileNotFoundError, match="confocal"):
        paired_datalist(tmp_path)
    (tmp_path / "confocal").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        paired_datalist(tmp_path)


def test_paired_datalist_unmatched_names_are_listed(tmp_path: Path) -> None:
    _write_pairs(tmp_path, {"a.tif": ((8, 8), (8, 8)), "only_wf.tif": ((8, 8), ()), "only_conf.tif": ((), (8, 8))})
    with pytest.raises(ValueError, match="unmatched") as err:
        paired_datalist(tmp_path)
    assert "only_wf" in str(err.value) and "only_conf" in str(err.value)


def test_paired_datalist_shape_mismatch_names_file(tmp_path: Path) -> None:
    _write_pairs(tmp_path, {"good.tif": ((8, 8), (8, 8)), "bad.tif": ((8, 8), (8, 9))})
    with pytest.raises(ValueError, match=r"bad\.tif"):
        paired_datalist(tmp_path)
    assert len(paired_datalist(tmp_path, check_shapes=False)) == 2


def test_paired_datalist_rejects_bad_files(tmp_path: Path) -> None:
    _write_pairs(tmp_path, {"x.tif": ((2, 2, 8, 8), (2, 2, 8, 8))})
    with pytest.raises(ValueError, match=r"x\.tif.*2D"):
        paired_datalist(tmp_path)
    _write_pairs(tmp_path, {"x.tif": ((8, 8), (8, 8))}, dtype=np.int32)
    with pytest.raises(ValueError, match="dtype"):
        paired_datalist(tmp_path)
    (tmp_path / "wf" / "x.tif").write_bytes(b"not a tiff")
    with pytest.raises(ValueError, match="readable"):
        paired_datalist(tmp_path)


# --------------------------------------------------------------------------------------------------- split_planes
@pytest.mark.parametrize("position", ("start", "middle", "end"))
def test_split_planes_contiguous_with_gap(position: str) -> None:
    train, val = split_planes(60, val_fraction=0.2, gap=2, val_position=position)
    assert len(val) == 12 and val == list(range(val[0], val[0] + 12))
    assert min(abs(t - v) for t in train for v in val) == 3  # gap of 2 unused planes on each side
    assert set(train).isdisjoint(val)
    assert len(train) == 60 - 12 - (2 if position != "middle" else 4)


def test_split_planes_errors() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_planes(10, val_fraction=1.0)
    with pytest.raises(ValueError, match="no training planes"):
        split_planes(4, val_fraction=0.5, gap=2)
    with pytest.raises(ValueError, match="val_position"):
        split_planes(10, val_position="random")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ synthesis
@pytest.fixture
def small_stack(tmp_path: Path, real_data: Path) -> Path:
    """An (8, 32, 32) crop of the real cells3d nuclei stack when present, else synthetic nuclei-like blobs."""
    real = real_data / "fluorescence" / "nuclei.tif"
    if real.is_file():
        stack = tifffile.imread(real)[26:34, 96:128, 96:128]
    else:
        rng = np.random.default_rng(0)
        vol = np.zeros((8, 32, 32))
        vol[tuple(rng.integers(0, (8, 32, 32), size=(6, 3)).T)] = 1.0
        stack = (gaussian_filter(vol, (1.0, 4.0, 4.0)) * 6e4 + 200).astype(np.uint16)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    return path


def test_synthesize_pairs_from_stack_writes_files(small_stack: Path, tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    ranges = SimulationRanges(na=(1.1, 1.2), photons=(100.0, 300.0))
    datalist = synthesize_pairs_from_stack(small_stack, out, planes=[2, 5], n_pairs_per_plane=2, seed=1, ranges=ranges)
    assert len(datalist) == 4
    for item in datalist:
        wf, conf = tifffile.imread(item["image"]), tifffile.imread(item["label"])
        assert wf.shape == conf.shape == (32, 32) and wf.dtype == conf.dtype == np.float32
        assert wf.min() >= 0 and conf.max() > 0
    record = json.loads((out / "pairs.json").read_text())
    assert record["psf_shape"] == [15, 63, 63] and record["psf_model"] == "born_wolf"
    assert [p["plane"] for p in record["pairs"]] == [2, 2, 5, 5]
    for p in record["pairs"]:
        assert 1.1 <= p["na"] <= 1.2 and 100.0 <= p["photons"] <= 300.0
        assert {"background", "read_noise", "offset", "seed"} <= set(p)
    # the layout is the one paired_datalist reads
    assert sorted(d["image"] for d in paired_datalist(out)) == sorted(d["image"] for d in datalist)
    # each pair is reproducible from its seed
    again = synthesize_pairs_from_stack(small_stack, tmp_path / "again", planes=[5], n_pairs_per_plane=2, seed=1,
                                        ranges=ranges)
    np.testing.assert_array_equal(tifffile.imread(again[1]["image"]), tifffile.imread(datalist[3]["image"]))


def test_synthesize_pairs_uint16_and_gaussian(small_stack: Path, tmp_path: Path) -> None:
    """``dtype="uint16"`` writes the float pair rounded and clipped; ``psf_model="gaussian"`` is really used."""
    kw = dict(planes=[4], psf_shape=(9, 15, 15), seed=3)
    as_u16 = synthesize_pairs_from_stack(small_stack, tmp_path / "g16", psf_model="gaussian", dtype="uint16", **kw)
    as_f32 = synthesize_pairs_from_stack(small_stack, tmp_path / "g32", psf_model="gaussian", dtype="float32", **kw)
    born = synthesize_pairs_from_stack(small_stack, tmp_path / "bw", psf_model="born_wolf", dtype="float32", **kw)
    for key in ("image", "label"):
        u16, f32 = tifffile.imread(as_u16[0][key]), tifffile.imread(as_f32[0][key])
        assert u16.dtype == np.uint16 and f32.dtype == np.float32
        # same seed, same pair: the 16-bit file is the float image rounded to the nearest count and clipped
        np.testing.assert_array_equal(u16, np.clip(np.rint(f32), 0, 65535).astype(np.uint16))
        assert u16.max() > u16.min()  # not a blank or saturated image
    record = json.loads((tmp_path / "g16" / "pairs.json").read_text())
    assert record["psf_model"] == "gaussian" and record["psf_shape"] == [9, 15, 15] and record["dtype"] == "uint16"
    # the PSF model changes the wide-field image (same seed, same noise draws)
    wf_gauss, wf_born = tifffile.imread(as_f32[0]["image"]), tifffile.imread(born[0]["image"])
    assert not np.allclose(wf_gauss, wf_born)


def test_synthesize_pairs_errors(small_stack: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        synthesize_pairs_from_stack(small_stack, tmp_path / "o", planes=[8])
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((16, 16), np.uint16))
    with pytest.raises(ValueError, match=r"flat\.tif.*3D"):
        synthesize_pairs_from_stack(flat, tmp_path / "o")
    with pytest.raises(FileNotFoundError):
        synthesize_pairs_from_stack(tmp_path / "missing.tif", tmp_path / "o")
