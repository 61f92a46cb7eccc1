"""The classifier two-sample test: chance for one distribution, near 1 for an obvious difference (blur), and patches
of images it never saw."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emgan_monai.metrics.two_sample import classifier_two_sample_test, random_patches


def _textures(n: int, seed: int, size: int = 48) -> torch.Tensor:
    """Grainy textures: white noise smoothed a little, ``(n, 1, size, size)`` in about [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    k = torch.ones(1, 1, 3, 3) / 9
    return F.conv2d(x, k, padding=1)


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.ones(1, 1, 5, 5) / 25
    return F.conv2d(x, k, padding=2)


def _split(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    half = len(images) // 2  # train and test patches from different images
    return random_patches(images[:half], 16, 160, seed), random_patches(images[half:], 16, 80, seed + 1)


def test_random_patches_shape_and_bounds():
    x = torch.arange(2 * 20 * 30, dtype=torch.float32).view(2, 1, 20, 30)
    p = random_patches(x, 8, 5, seed=3)
    assert p.shape == (5, 1, 8, 8)
    torch.testing.assert_close(p, random_patches(x, 8, 5, seed=3))  # seeded
    with pytest.raises(ValueError, match="larger than the images"):
        random_patches(x, 21, 1)


def test_one_distribution_is_at_chance_and_blur_is_caught():
    real_tr, real_te = _split(_textures(8, 0), 0)
    same_tr, same_te = _split(_textures(8, 1), 10)  # other images of the same distribution
    blur_tr, blur_te = _split(_blur(_textures(8, 2)), 20)
    same = classifier_two_sample_test(real_tr, same_tr, real_te, same_te, seeds=(0, 1), steps=150)
    blurred = classifier_two_sample_test(real_tr, blur_tr, real_te, blur_te, seeds=(0, 1), steps=150)
    assert abs(same["accuracy"] - 0.5) < 0.15, same
    assert blurred["accuracy"] > 0.9, blurred
    assert len(blurred["per_seed"]) == 2 and blurred["n_train"] == 160 and blurred["n_test"] == 80
