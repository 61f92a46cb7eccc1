"""Grey-value profile across a mask boundary (emgan_monai.losses.profile)."""

from __future__ import annotations

import pytest
import torch

from emgan_monai.losses import BoundaryProfileLoss, distance_bands


def _mask(size: int = 32) -> torch.Tensor:
    """One-hot (1, 3, size, size): a vertical membrane at column 8, a mitochondrion square far from it."""
    labels = torch.full((size, size), 2)
    labels[:, 8] = 1
    labels[20:26, 20:26] = 0
    return torch.nn.functional.one_hot(labels, 3).movedim(-1, 0)[None].float()


def test_distance_bands_grow_one_pixel_a_step():
    bands = distance_bands(_mask(), channel=1, max_distance=3)
    assert bands.shape == (1, 4, 32, 32)
    assert torch.equal(bands[0, 0].nonzero()[:, 1].unique(), torch.tensor([8]))  # band 0: the membrane
    assert torch.equal(bands[0, 2].nonzero()[:, 1].unique(), torch.tensor([6, 10]))  # 2 px either side
    assert float(bands.sum(1).max()) == 1.0  # the bands do not overlap
    with pytest.raises(ValueError, match="channel below C"):
        distance_bands(_mask(), channel=3, max_distance=2)


def test_boundary_profile_loss_sees_a_bright_rim_that_a_histogram_would_not():
    mask = _mask()
    torch.manual_seed(0)
    real = 0.6 + 0.02 * torch.randn(1, 1, 32, 32)
    real[..., :, 8] = 0.2  # a dark membrane, flat cytoplasm beside it
    rim = real.clone()
    rim[..., :, [5, 11]] += 0.1  # a bright rim 3 px from the membrane
    loss = BoundaryProfileLoss(channel=1, max_distance=4)
    assert float(loss(real, real, mask)) == 0.0
    # the rim moves one band of five by 0.1
    assert float(loss(rim, real, mask)) == pytest.approx(0.1 / 5, rel=1e-4)
    # the same values shuffled within each band (the texture moved, the profile kept) cost nothing
    shuffled = real.clone()
    for col in range(32):
        shuffled[..., :, col] = real[..., torch.randperm(32), col]
    assert float(loss(shuffled, real, mask)) < 1e-6
    # pixels of the ignored class (mitochondria) do not count
    dark_mito = real.clone()
    dark_mito[..., 20:26, 20:26] = 0.0
    assert float(BoundaryProfileLoss(max_distance=16, ignore_channels=[0])(dark_mito, real, mask)) < 1e-6
    assert float(BoundaryProfileLoss(max_distance=16, ignore_channels=[])(dark_mito, real, mask)) > 0.01


def test_boundary_profile_loss_trains_the_prediction_and_refuses_bad_shapes():
    mask = _mask()
    pred = torch.full((1, 1, 32, 32), 0.5, requires_grad=True)
    BoundaryProfileLoss()(pred, torch.rand(1, 1, 32, 32), mask).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="one shape"):
        BoundaryProfileLoss()(pred, torch.rand(1, 1, 16, 16), mask)
    with pytest.raises(ValueError, match="differ in size"):
        BoundaryProfileLoss()(pred, pred, mask[..., :16, :16])
    with pytest.raises(ValueError, match="max_distance"):
        BoundaryProfileLoss(max_distance=-1)
