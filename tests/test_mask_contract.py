"""The mask contract of the Drosophila mask -> EM inference (:class:`ColorMaskToOneHot`): RGB masks in the documented
colours (background blue or black), label maps 0/1/2 and one-hot stacks are read by contract; photographs, noise,
other colours and grey stacks stored as RGB are refused with the file named and the problem stated."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from emgan_monai.errors import DataError
from emgan_monai.io import write_image
from emgan_monai.transforms import ColorMaskToOneHot, ColorMaskToOneHotd

RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 3, (40, 56)).astype(np.uint8)


def _load(path):
    return Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), ColorMaskToOneHotd("image")])(
        {"image": str(path)}
    )["image"]


def _rgb(background=(0, 0, 255)) -> np.ndarray:
    rgb = np.zeros((*LABELS.shape, 3), np.uint8)
    for cls, colour in enumerate([(255, 0, 0), (0, 255, 0), background]):
        rgb[LABELS == cls] = colour
    return rgb


@pytest.mark.parametrize("background", [(0, 0, 255), (0, 0, 0)], ids=["blue", "black"])
def test_colour_masks_read_by_contract(tmp_path, background):
    write_image(tmp_path / "m.png", _rgb(background))
    onehot = _load(tmp_path / "m.png")
    # the reader gives (X, Y): compare against the labels transposed
    np.testing.assert_array_equal(onehot.argmax(0).numpy(), LABELS.T)


def test_label_map_and_onehot_stack_read_by_contract(tmp_path):
    tifffile.imwrite(tmp_path / "labels.tif", LABELS)
    np.testing.assert_array_equal(_load(tmp_path / "labels.tif").argmax(0).numpy(), LABELS.T)
    onehot = torch.nn.functional.one_hot(torch.as_tensor(LABELS).long(), 3).movedim(-1, 0).float()
    np.testing.assert_array_equal(ColorMaskToOneHot()(onehot).argmax(0).numpy(), LABELS)


def test_antialiased_edges_are_tolerated():
    rgb = torch.as_tensor(_rgb()).permute(2, 0, 1).float()
    rgb[:, :1] = torch.tensor([30.0, 200.0, 20.0])[:, None, None]  # one row of blended edge pixels (2 %)
    assert ColorMaskToOneHot()(rgb).argmax(0)[0].eq(1).all()  # nearest: membrane green


@pytest.mark.parametrize(
    "name, make, message",
    [
        (
            "noise.png",
            lambda p: write_image(p, RNG.integers(0, 255, (40, 56, 3)).astype(np.uint8)),
            "not a colour mask",
        ),
        ("yellow.png", lambda p: write_image(p, np.full((40, 56, 3), (255, 255, 0), np.uint8)), "not a colour mask"),
        (
            "stack3.tif",
            lambda p: tifffile.imwrite(p, RNG.integers(0, 255, (3, 40, 56)).astype(np.uint8)),
            "not a colour mask",
        ),
        (
            "grey.png",
            lambda p: write_image(p, RNG.integers(0, 255, (40, 56)).astype(np.uint8)),
            "not among the expected labels",
        ),
    ],
)
def test_what_is_not_a_mask_is_refused_naming_the_file(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(Exception) as info:
        _load(path)
    chain, exc = [], info.value
    while exc is not None:  # MONAI's Compose wraps the transform's error
        chain.append(exc)
        exc = exc.__cause__
    data_errors = [e for e in chain if isinstance(e, DataError)]
    assert data_errors, chain
    assert data_errors[0].filename.endswith(name) and message in data_errors[0].problem
