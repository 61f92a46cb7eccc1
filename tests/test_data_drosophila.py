"""Tests for the Drosophila VNC dataset builder (emgan_monai.data.drosophila)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from emgan_monai.data.drosophila import build_mask, drosophila_datalist, make_synthetic_stack, split_sections


@pytest.fixture(scope="module")
def synthetic_stack(tmp_path_factory) -> Path:
    return make_synthetic_stack(tmp_path_factory.mktemp("stack"), n_sections=6, size=48, seed=3)


def test_synthetic_stack_datalist_and_files(synthetic_stack):
    datalist = drosophila_datalist(synthetic_stack)
    assert [d["section"] for d in datalist] == list(range(6))
    assert set(datalist[0]) == {"image", "mito", "membrane", "section"}
    item = datalist[2]
    assert Path(item["image"]).name == "02.tif" and Path(item["mito"]).parent.name == "mitochondria"
    raw = tifffile.imread(item["image"])
    mito = np.asarray(Image.open(item["mito"]))
    membrane = np.asarray(Image.open(item["membrane"]))
    assert raw.shape == (48, 48) and raw.dtype == np.uint8 and raw.std() > 5
    assert mito.dtype == np.uint8 and set(np.unique(mito)) <= {0, 255} and mito.any()
    assert membrane.dtype == bool and 0.02 < membrane.mean() < 0.5
    # EM-like contrast: membranes and mitochondria darker than cytoplasm
    cytoplasm = raw[~membrane & (mito == 0)].mean()
    assert raw[membrane & (mito == 0)].mean() < cytoplasm - 40
    assert raw[mito > 0].mean() < cytoplasm - 20


def test_synthetic_stack_is_reproducible(tmp_path):
    a = make_synthetic_stack(tmp_path / "a", n_sections=1, size=32, seed=7)
    b = make_synthetic_stack(tmp_path / "b", n_sections=1, size=32, seed=7)
    np.testing.assert_array_equal(tifffile.imread(a / "raw" / "00.tif"), tifffile.imread(b / "raw" / "00.tif"))


def test_datalist_section_selection_and_split(synthetic_stack):
    datalist = drosophila_datalist(synthetic_stack, sections=[4, 1, 3])
    assert [d["section"] for d in datalist] == [1, 3, 4]
    train, val = split_sections(drosophila_datalist(synthetic_stack), n_train=4, n_val=2)
    assert [d["section"] for d in train] == [0, 1, 2, 3]
    assert [d["section"] for d in val] == [4, 5]
    with pytest.raises(ValueError, match="Cannot split 6 sections"):
        split_sections(train + val, n_train=4, n_val=4)
    with pytest.raises(ValueError, match="several items for one section"):
        split_sections(datalist + train, n_train=1, n_val=1)


def test_missing_mask_file_is_named(tmp_path):
    root = make_synthetic_stack(tmp_path, n_sections=3, size=32)
    (root / "membranes" / "01.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"membrane file .*membranes[/\\]01\.png"):
        drosophila_datalist(root)
    # the other sections stay usable
    assert [d["section"] for d in drosophila_datalist(root, sections=[0, 2])] == [0, 2]
    with pytest.raises(FileNotFoundError, match=r"image file .*raw[/\\]07\.tif"):
        drosophila_datalist(root, sections=[7])


def test_missing_folder_is_named(tmp_path):
    root = make_synthetic_stack(tmp_path, n_sections=1, size=32)
    for f in (root / "mitochondria").iterdir():
        f.unlink()
    (root / "mitochondria").rmdir()
    with pytest.raises(FileNotFoundError, match="'mitochondria/' folder"):
        drosophila_datalist(root)
    with pytest.raises(FileNotFoundError, match="not found"):
        drosophila_datalist(tmp_path / "nowhere")


def test_build_mask_one_hot_and_mito_wins():
    mito = np.array([[0, 255, 200], [0, 100, 0]], dtype=np.uint8)  # 100: anti-aliased edge, below threshold
    membrane = np.array([[True, True, False], [False, False, False]])
    mask = build_mask(mito, membrane)
    assert mask.shape == (3, 2, 3) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask.sum(0), 1.0)
    np.testing.assert_array_equal(mask[0], [[0, 1, 1], [0, 0, 0]])  # (0, 1) is both: mitochondria wins
    np.testing.assert_array_equal(mask[1], [[1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(mask[2], [[0, 0, 0], [1, 1, 1]])
    # 0/1 masks are thresholded at 0.5
    np.testing.assert_array_equal(build_mask(mito > 127, membrane.astype(np.uint8)), mask)
    with pytest.raises(ValueError, match="differ in shape"):
        build_mask(mito, membrane[:, :2])


def test_real_stack_datalist_and_split(real_data):
    stack = real_data / "drosophila_vnc" / "stack1"
    if not stack.is_dir():
        pytest.skip(f"real Drosophila VNC data not found at {stack}")
    datalist = drosophila_datalist(stack)
    assert len(datalist) == 20 and [d["section"] for d in datalist] == list(range(20))
    train, val = split_sections(datalist)
    assert len(train) == 16 and len(val) == 4
    assert {d["section"] for d in train}.isdisjoint({d["section"] for d in val})
    assert [d["section"] for d in val] == [16, 17, 18, 19]
    item = val[0]
    mask = build_mask(np.asarray(Image.open(item["mito"])), np.asarray(Image.open(item["membrane"])))
    assert mask.shape == (3, 1024, 1024)
    np.testing.assert_array_equal(mask.sum(0), 1.0)
    assert 0.01 < mask[0].mean() < 0.3 and 0.05 < mask[1].mean() < 0.4
