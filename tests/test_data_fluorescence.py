"""Tests for emgan_monai.data.fluorescence (paired datalists of real wide-field / confocal folders).

The split by file and the inference input list are tested with the bundle (``tests/test_bundle_confocal.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from emgan_monai.data.fluorescence import paired_datalist


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
