"""Tests for emgan_monai.metrics: distances, morphology, PCA plot and FCN-score."""

import warnings

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from skimage.draw import disk

from emgan_monai.data.drosophila import build_mask, drosophila_datalist, make_synthetic_stack
from emgan_monai.metrics.distances import frechet_distance, kernel_distance, prdc
from emgan_monai.metrics.fcn_score import SegmenterNet, segmentation_dice, segmenter_features, train_segmenter
from emgan_monai.metrics.morphology import compare_morphology, mask_morphology, summarise_morphology
from emgan_monai.metrics.pca_plot import pca_scatter

# ----------------------------------------------------------------------------------------------- distances


def test_frechet_zero_for_same_set_and_grows_with_shift():
    x = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    d_small, d_large = frechet_distance(x, x + 0.5), frechet_distance(x, x + 2.0)
    assert d_small == pytest.approx(8 * 0.25, rel=1e-6)  # pure mean shift: |delta|^2
    assert d_large == pytest.approx(8 * 4.0, rel=1e-6) and d_large > d_small


def test_frechet_matches_monai_fid_and_handles_edge_cases():
    from monai.metrics import FIDMetric

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(100, 6)), rng.normal(1.0, 2.0, size=(80, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # MONAI passes scipy's deprecated `disp`
        monai_fid = float(FIDMetric()(torch.from_numpy(b), torch.from_numpy(a)))
    assert frechet_distance(a, b) == pytest.approx(monai_fid, rel=1e-6)
    # one feature (MONAI's FIDMetric fails here): |mu_a - mu_b|^2 + (s_a - s_b)^2
    u, v = a[:, :1], b[:, :1]
    expected = (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2
    assert frechet_distance(u, v) == pytest.approx(expected, rel=1e-6)
    # fewer samples than features: singular covariances still give a finite, non-negative distance
    d = frechet_distance(rng.normal(size=(4, 32)), rng.normal(size=(4, 32)) + 1.0)
    assert np.isfinite(d) and d > 0
    with pytest.raises(ValueError, match="Feature sizes differ"):
        frechet_distance(a, b[:, :5])
    with pytest.raises(ValueError, match=r"shape \(N, F\)"):
        frechet_distance(a.ravel(), b)


def test_kernel_distance_same_vs_shifted():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same = kernel_distance(a, b, subsets=20, subset_size=100, seed=0)
    shifted = kernel_distance(a, b + 1.0, subsets=20, subset_size=100, seed=0)
    assert abs(same.mean) < 0.05 and same.std >= 0
    assert shifted.mean > 0.5 and shifted.mean > 10 * abs(same.mean)
    assert kernel_distance(a, b + 1.0, subsets=20, subset_size=100, seed=0) == shifted  # seeded
    # subset_size is clipped to the smaller set (a full subset is a permutation): compare with a literal
    # evaluation of the unbiased MMD^2 (Gretton et al. 2012, Eq. 3) with k(u, v) = (u.v / F + 1)^3
    x, y = a[:7], b[:7] + 0.3
    k = lambda u, v: (u @ v / 16 + 1) ** 3  # noqa: E731
    m = n = 7
    ref = (
        sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
        + sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        - 2 * sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    )
    exact = kernel_distance(x, y, subsets=3, subset_size=1000, seed=0)
    assert exact.mean == pytest.approx(ref, rel=1e-9) and exact.std == pytest.approx(0.0, abs=1e-9)


def _prdc_reference(real, fake, k):
    """Literal loop translation of Naeem et al. (2020), Eqs. (3)-(6)."""

    def knn_radius(x, i):
        d = sorted(np.linalg.norm(x - x[i], axis=1))
        return d[k]  # d[0] is the sample itself

    r_rad = [knn_radius(real, i) for i in range(len(real))]
    f_rad = [knn_radius(fake, j) for j in range(len(fake))]
    dist = lambda i, j: np.linalg.norm(real[i] - fake[j])  # noqa: E731
    m, n = len(real), len(fake)
    precision = np.mean([any(dist(i, j) < r_rad[i] for i in range(m)) for j in range(n)])
    recall = np.mean([any(dist(i, j) < f_rad[j] for j in range(n)) for i in range(m)])
    density = np.mean([sum(dist(i, j) < r_rad[i] for i in range(m)) for j in range(n)]) / k
    coverage = np.mean([min(dist(i, j) for j in range(n)) < r_rad[i] for i in range(m)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_prdc_identical_disjoint_and_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    same = prdc(x, x, k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] == pytest.approx(1.0, abs=0.1)
    far = prdc(x, rng.normal(size=(150, 4)) + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    real, fake = rng.normal(size=(30, 3)), rng.normal(0.5, 1.2, size=(25, 3))
    ours, ref = prdc(real, fake, k=3), _prdc_reference(real, fake, 3)
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    with pytest.raises(ValueError, match="at least 6 samples"):
        prdc(x[:5], x, k=5)


# ---------------------------------------------------------------------------------------------- morphology


def _hand_drawn_labels() -> np.ndarray:
    """96x96 labels: a 2-px membrane grid, an isolated membrane dash, two discs (one with a hole)."""
    labels = np.full((96, 96), 2, dtype=np.int64)
    for line in (31, 63):
        labels[line : line + 2, :] = 1
        labels[:, line : line + 2] = 1
    labels[80:82, 75:91] = 1  # separate membrane piece
    labels[disk((48, 15), 10)] = 0
    labels[disk((48, 48), 10)] = 0
    labels[disk((48, 48), 4)] = 2  # lumen: a hole in the second mitochondrion
    return labels


def test_mask_morphology_hand_drawn():
    labels = _hand_drawn_labels()
    stats = mask_morphology(labels)
    grid_pixels = 2 * 96 * 2 * 2 - 4 * 4
    assert stats["n_mitochondria"] == 2
    assert stats["hole_fraction"] == 0.5
    assert sorted(stats["mito_areas"]) == sorted([int((labels[:, :31] == 0).sum()), int((labels[:, 33:63] == 0).sum())])
    assert stats["membrane_fraction"] == pytest.approx((grid_pixels + 32) / 96**2)
    assert stats["membrane_components"] == 2
    assert stats["membrane_largest_fraction"] == pytest.approx(grid_pixels / (grid_pixels + 32))
    assert 0 < stats["membrane_skeleton_length"] < grid_pixels
    # the same mask as (3, H, W) one-hot gives the same statistics
    onehot = np.eye(3, dtype=np.float32)[labels].transpose(2, 0, 1)
    assert mask_morphology(onehot) == stats
    with pytest.raises(ValueError, match="3 channels"):
        mask_morphology(onehot[:2])


def test_summarise_and_compare_morphology():
    labels = _hand_drawn_labels()
    fake = labels.copy()
    fake[disk((15, 80), 12)] = 0  # a third, larger mitochondrion
    real_stats = [mask_morphology(labels)] * 3
    fake_stats = [mask_morphology(fake), mask_morphology(labels)]
    summary = summarise_morphology(real_stats)
    assert summary["n_masks"] == 3
    assert summary["n_mitochondria"] == {"mean": 2.0, "std": 0.0}
    assert summary["areas"].size == 6 and summary["area_hist"]["counts"].sum() == 6
    same = compare_morphology(real_stats, real_stats)
    assert same["mito_area"]["wasserstein"] == 0.0 and same["n_mitochondria"]["wasserstein"] == 0.0
    diff = compare_morphology(real_stats, fake_stats)
    assert diff["n_mitochondria"]["real"] == 2.0 and diff["n_mitochondria"]["fake"] == 2.5
    assert diff["mito_area"]["wasserstein"] > 0 and diff["mito_area"]["fake_mean"] > diff["mito_area"]["real_mean"]
    assert diff["area_hist"]["real"].sum() == 6 and diff["area_hist"]["fake"].sum() == 5


# --------------------------------------------------------------------------------------------------- PCA


def test_pca_scatter_writes_png(tmp_path):
    rng = np.random.default_rng(4)
    real = (rng.random((12, 3, 32, 32)) < 0.2).astype(np.float32)
    fake = [np.clip(m + 0.8, 0, 1) for m in (rng.random((9, 3, 32, 32)) < 0.2).astype(np.float32)]
    path = tmp_path / "plots" / "pca.png"
    real_xy, fake_xy = pca_scatter(real, fake, path, title="test", size=16)
    assert real_xy.shape == (12, 2) and fake_xy.shape == (9, 2)
    assert np.asarray(Image.open(path)).ndim == 3  # a real PNG image
    # the brightness offset dominates the first component: the two sets separate on PC 1
    assert real_xy[:, 0].max() < fake_xy[:, 0].min() or fake_xy[:, 0].max() < real_xy[:, 0].min()


# ---------------------------------------------------------------------------------------------- FCN-score


@pytest.fixture(scope="module")
def synthetic_pairs(tmp_path_factory):
    root = make_synthetic_stack(tmp_path_factory.mktemp("fcn"), n_sections=4, size=64, seed=0)
    items = drosophila_datalist(root)
    images = np.stack([tifffile.imread(d["image"])[None] / 255.0 for d in items]).astype(np.float32)
    masks = np.stack(
        [build_mask(np.asarray(Image.open(d["mito"])), np.asarray(Image.open(d["membrane"]))) for d in items]
    )
    return images, masks


def test_train_segmenter_improves_dice(synthetic_pairs):
    images, masks = synthetic_pairs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = SegmenterNet()
    before = segmentation_dice(untrained, images, masks, roi_size=64)
    net = train_segmenter(images, masks, steps=30, lr=3e-3, seed=0, patch_size=48)
    after = segmentation_dice(net, images, masks, roi_size=64)
    assert set(after) == {"mito", "membrane", "mean"}
    assert after["mean"] > before["mean"] + 0.2 and after["mito"] > 0.3 and after["membrane"] > 0.3

    features = segmenter_features(net, images)
    assert features.shape == (4, 64) and np.isfinite(features).all()
    noise = np.random.default_rng(0).random(images.shape).astype(np.float32)
    assert frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(features, segmenter_features(net, noise)) > 0
    # odd sizes are padded to the network's downsampling factor
    assert segmenter_features(net, images[:, :, :61, :62]).shape == (4, 64)


def test_train_segmenter_is_seeded(synthetic_pairs):
    images, masks = synthetic_pairs
    runs = [train_segmenter(images, masks, steps=2, seed=s, patch_size=32, batch_size=2) for s in (5, 5, 6)]
    weights = [torch.cat([p.detach().flatten() for p in net.parameters()]) for net in runs]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_train_segmenter_rejects_bad_input(synthetic_pairs):
    images, masks = synthetic_pairs
    with pytest.raises(ValueError, match="exceeds the image size"):
        train_segmenter(images, masks, steps=1, patch_size=128)
    with pytest.raises(ValueError, match="divisible"):
        train_segmenter(images, masks, steps=1, patch_size=50)
    with pytest.raises(ValueError, match="3 channel"):
        train_segmenter(images, masks[:, :2], steps=1)
