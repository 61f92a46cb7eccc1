"""The non-learned syntheses of :mod:`emgan_monai.data.drosophila_patch_synthesis`: the naive painting and the
patch-based synthesis (quilting) of EM from masks, on small synthetic masks whose classes have distinct textures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from emgan_monai.data.drosophila_patch_synthesis import class_grey_levels, paint_masks, quilt_em

#: grey level of each class of the test EM (mitochondria, membrane, background)
GREY = np.array([0.25, 0.1, 0.7])


def _masks(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """``(n, 3, size, size)`` one-hot masks: blobs of mitochondria (~15 %), membrane (~20 %), background."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 2.5, 2.5))
    labels = np.digitize(field, np.quantile(field, [0.15, 0.35]))
    return torch.nn.functional.one_hot(torch.from_numpy(labels), 3).movedim(-1, 1).float()


def _em(masks: torch.Tensor, seed: int) -> torch.Tensor:
    """Class grey levels plus class-specific grain (mitochondria striped, background noisy), ``(n, 1, H, W)``."""
    rng = np.random.default_rng(seed)
    labels = masks.argmax(1).numpy()
    x = GREY[labels] + np.where(labels == 2, rng.normal(0, 0.05, labels.shape), 0.0)
    x = x + np.where(labels == 0, 0.05 * np.sin(np.arange(labels.shape[-1]))[None, None, :], 0.0)
    return torch.from_numpy(np.clip(x, 0, 1)[:, None]).float()


def test_class_grey_levels_and_naive_painting():
    masks = _masks(4)
    em = _em(masks, 1)
    levels = class_grey_levels(masks, em)
    assert levels.shape == (3,)
    np.testing.assert_allclose(levels, GREY, atol=0.02)
    flat = paint_masks(masks, levels, blur_sigma=0.0)
    assert flat.shape == (4, 1, 48, 48) and flat.dtype == torch.float64
    torch.testing.assert_close(flat[:, 0], torch.from_numpy(levels[masks.argmax(1).numpy()]))  # one grey per class
    painted = paint_masks(masks, levels, blur_sigma=1.5, noise_sd=0.08, seed=3)
    assert 0 <= painted.min() and painted.max() <= 1
    torch.testing.assert_close(painted, paint_masks(masks, levels, blur_sigma=1.5, noise_sd=0.08, seed=3))  # seeded
    assert not torch.equal(painted, paint_masks(masks, levels, blur_sigma=1.5, noise_sd=0.08, seed=4))
    residual = (painted - paint_masks(masks, levels, blur_sigma=1.5)).std()
    assert 0.06 < residual < 0.09  # the noise (a little less where clipped)


def test_patch_synthesis_copies_training_texture_where_the_mask_says():
    train_masks, target = _masks(6, seed=1), _masks(2, seed=2)
    train_em = _em(train_masks, 3)
    em, source = quilt_em(target, train_masks, train_em, seed=0)
    assert em.shape == (2, 1, 48, 48) and source.shape == (2, 3, 48, 48) and em.dtype == train_em.dtype
    assert torch.equal(source.sum(1), torch.ones(2, 48, 48))  # one-hot
    # every pixel is a copy of a training pixel (no blending); the texture comes from the training EM
    assert np.isin(em.numpy(), train_em.numpy()).all()
    # the classes are honoured: most pixels of each target class are copied from that class, and the typical (median)
    # grey level of each target class is that class's
    want, got = target.argmax(1), source.argmax(1)
    assert (got == want).float().mean() > 0.85
    for c in range(3):
        assert ((got == c) & (want == c)).sum() > 0.7 * (want == c).sum(), c
        assert abs(em[:, 0][want == c].median() - GREY[c]) < 0.05, c
    # another seed, another synthesis of the same masks; the same seed, the same one
    torch.testing.assert_close(quilt_em(target, train_masks, train_em, seed=0)[0], em)
    assert not torch.equal(quilt_em(target, train_masks, train_em, seed=1)[0], em)
    # any size (not a multiple of the tile step), no overlap
    odd, _ = quilt_em(target[:, :, :37, :41], train_masks, train_em, tile=8, overlap=0, candidates=200)
    assert odd.shape == (2, 1, 37, 41)


def test_patch_synthesis_refuses_bad_settings():
    masks = _masks(1, size=16)
    em = _em(masks, 0)
    with pytest.raises(ValueError, match="overlap"):
        quilt_em(masks, masks, em, tile=8, overlap=8)
    with pytest.raises(ValueError, match="larger than"):
        quilt_em(masks, masks, em, tile=32)
