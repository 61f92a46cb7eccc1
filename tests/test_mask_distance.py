"""Class masks <-> signed-distance maps (emgan_monai.transforms.mask_distance): exact round trip, closing of gaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emgan_monai.metrics.morphology import mask_morphology
from emgan_monai.transforms import DistanceMapToOneHot, OneHotToDistanceMap, OneHotToDistanceMapd


def _cells(size: int = 64, gap: int = 0) -> np.ndarray:
    """One-hot (3, size, size): a 2 px membrane grid of 4 x 4 cells (a ``gap`` px break in one wall), a 5 px mito."""
    label = np.full((size, size), 2, dtype=np.int64)
    for k in range(0, size, 16):
        label[k : k + 2, :] = 1
        label[:, k : k + 2] = 1
    if gap:
        label[20 : 20 + gap, 16:18] = 2  # a break in the vertical wall between two cells
    yy, xx = np.mgrid[:size, :size]
    label[(yy - 40) ** 2 + (xx - 40) ** 2 <= 9] = 0
    return (label[None] == np.arange(3)[:, None, None]).astype(np.float32)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_round_trip_is_exact_and_values_are_signed(scale):
    onehot = _cells()
    maps = OneHotToDistanceMap(scale)(onehot)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    inside = onehot[:2] > 0.5
    assert np.all(maps[inside] >= np.tanh(1 / scale) - 1e-6) and np.all(maps[~inside] <= -np.tanh(1 / scale) + 1e-6)
    np.testing.assert_array_equal(DistanceMapToOneHot()(maps), onehot)
    # the map varies smoothly away from the boundary: further from a membrane is more negative
    assert maps[1, 8, 8] < maps[1, 8, 4] < maps[1, 8, 3]


def test_tensor_batch_and_dict_versions():
    onehot = torch.from_numpy(np.stack([_cells(), _cells()[:, ::-1].copy()]))
    maps = torch.stack([OneHotToDistanceMap()(m) for m in onehot])
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32
    out = DistanceMapToOneHot()(maps)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 64, 64)
    torch.testing.assert_close(out, onehot)
    d = OneHotToDistanceMapd(keys="label")({"label": onehot[0], "other": 1})
    torch.testing.assert_close(d["label"], maps[0])
    assert d["other"] == 1


def test_an_absent_class_is_minus_one_and_3d_works():
    onehot = np.zeros((3, 8, 8, 8), np.float32)
    onehot[2] = 1
    onehot[1, :, :, 4] = 1
    onehot[2, :, :, 4] = 0
    maps = OneHotToDistanceMap()(onehot)
    assert np.all(maps[0] == -1.0)
    np.testing.assert_array_equal(DistanceMapToOneHot()(maps, batched=False), onehot)


def test_watershed_closes_a_gap_and_leaves_closed_outlines_alone():
    broken = _cells(gap=6)
    maps = OneHotToDistanceMap(4.0)(broken)
    plain = DistanceMapToOneHot()(maps)
    closed = DistanceMapToOneHot(close_channel=1)(maps)
    np.testing.assert_array_equal(plain, broken)
    assert closed[1, 20:26, 16:18].sum() > 0  # a line is drawn through the break
    # only the break changes: everything that was membrane stays, mitochondria are untouched
    assert np.all(closed[1][broken[1] > 0.5] == 1) and np.array_equal(closed[0], broken[0])
    assert mask_morphology(closed)["membrane_components"] <= mask_morphology(broken)["membrane_components"]
    intact = _cells()
    closed_intact = DistanceMapToOneHot(close_channel=1)(OneHotToDistanceMap(4.0)(intact))
    assert closed_intact[1].sum() - intact[1].sum() <= 0.02 * intact[1].sum()


def test_min_size_per_channel_drops_specks_of_that_class_only():
    onehot = _cells()  # mito of 29 px at (40, 40); membrane walls of 2 px
    label = onehot.argmax(0)
    label[50:52, 50:52] = 0  # a 4 px mitochondrion speck
    label[4:6, 8:10] = 1  # a 4 px membrane speck inside a cell
    maps = OneHotToDistanceMap(2.0)((label[None] == np.arange(3)[:, None, None]).astype(np.float32))
    kept = DistanceMapToOneHot()(maps).argmax(0)
    assert (kept[50:52, 50:52] == 0).all() and (kept[4:6, 8:10] == 1).all()
    mito_only = DistanceMapToOneHot(min_size=[10, 0])(maps).argmax(0)
    assert (mito_only[50:52, 50:52] == 2).all() and (mito_only[4:6, 8:10] == 1).all()  # the membrane speck stays
    assert (mito_only[39:42, 39:42] == 0).all()  # the 29 px mitochondrion is above the size
    both = DistanceMapToOneHot(min_size=10)(maps).argmax(0)
    assert (both[4:6, 8:10] == 2).all()
    with pytest.raises(ValueError, match="3 min_size values for 2 channels"):
        DistanceMapToOneHot(min_size=[10, 0, 0])(maps)
    with pytest.raises(ValueError, match="min_size"):
        DistanceMapToOneHot(min_size=[-1, 0])


def test_errors():
    with pytest.raises(ValueError, match="one-hot"):
        OneHotToDistanceMap()(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="scale"):
        OneHotToDistanceMap(0)
    with pytest.raises(ValueError, match="core_level"):
        DistanceMapToOneHot(core_level=1.5)
    with pytest.raises(ValueError, match="close_channel"):
        DistanceMapToOneHot(close_channel=3)(np.zeros((2, 8, 8), np.float32))


def test_real_masks_round_trip(real_data):
    from conftest import require_data

    from emgan_monai.data.drosophila import drosophila_datalist, load_sections

    masks, _ = load_sections(drosophila_datalist(require_data("drosophila_vnc", "stack1"))[:3], 256)
    maps = torch.stack([OneHotToDistanceMap()(m) for m in masks])
    torch.testing.assert_close(DistanceMapToOneHot()(maps), masks)
    closed = DistanceMapToOneHot(close_channel=1)(maps)
    real_stats = [mask_morphology(m.numpy()) for m in masks]
    closed_stats = [mask_morphology(m.numpy()) for m in closed]
    for r, c in zip(real_stats, closed_stats):  # closing changes real masks little
        assert abs(c["membrane_fraction"] - r["membrane_fraction"]) < 0.03
        assert c["n_mitochondria"] == r["n_mitochondria"]
