"""Training data of the confocal bundle: independent specimens, fresh noise per sample, camera model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from emgan_monai.data.confocal_training import prepare_confocal_data, render_clean_planes, stack_blocks
from emgan_monai.engines import GeneratorLoss, PairedGANTrainer
from emgan_monai.physics.pair_synthesis import SimulationRanges, camera_noise
from emgan_monai.transforms import RandCameraNoised

TINY = {"procedural_shape": (8, 32, 32), "n_procedural_train": 1, "n_na_train": 1, "n_eval_planes": 2,
        "psf_max_lateral": 31, "train_kinds": ("puncta", "filaments")}  # fmt: skip


def _stack(tmp_path: Path, blocks: tuple[str, ...] = ("train", "val", "test")) -> Path:
    """A (10, 64, 64) uint16 stack with bright cubes only in the named lateral blocks."""
    vol = np.full((10, 64, 64), 100, np.uint16)
    centres = {"train": (32, 16), "val": (10, 52), "test": (50, 52)}
    for name in blocks:
        y, x = centres[name]
        vol[3:7, y - 4 : y + 4, x - 4 : x + 4] = 3000
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "nuclei.tif"
    tifffile.imwrite(path, vol)
    return path


def test_camera_noise_statistics() -> None:
    signal = np.full((200, 200), 2.0)
    signal[0, 0] = 4.0  # peak: photons at the brightest pixel
    img = camera_noise(signal, photons=100.0, background=10.0, read_noise=2.0, offset=100.0, rng=0)
    body = img[1:, 1:]
    assert img.dtype == np.float32 and img.shape == signal.shape
    assert body.mean() == pytest.approx(50.0 + 10.0 + 100.0, rel=0.01)
    assert body.var() == pytest.approx(60.0 + 4.0, rel=0.05)  # shot noise (mean e-) + read noise^2
    np.testing.assert_array_equal(img, camera_noise(signal, 100.0, 10.0, 2.0, 100.0, rng=0))


def test_rand_camera_noise_draws_fresh_noise_and_acquisitions() -> None:
    t = RandCameraNoised("signal", output_keys="image", photons=(20.0, 2000.0), background=(0.0, 0.0),
                         read_noise=(0.0, 0.0), offset=0.0)  # fmt: skip
    t.set_random_state(0)
    signal = np.ones((1, 64, 64), np.float32)
    a, b = t({"signal": signal})["image"], t({"signal": signal})["image"]
    assert a.shape == signal.shape and not np.array_equal(a, b)
    means = [t({"signal": signal})["image"].mean() for _ in range(30)]
    assert 20.0 <= min(means) and max(means) <= 2000.0 and max(means) / min(means) > 5  # budgets vary per sample
    t.set_random_state(0)
    np.testing.assert_array_equal(t({"signal": torch.as_tensor(signal)})["image"].numpy(), a)  # seeded, tensors too
    with pytest.raises(ValueError, match="photons"):
        RandCameraNoised("signal", photons=(0.0, 10.0))


def test_test_block_lights_no_training_input(tmp_path) -> None:
    """Fluorophores of the test block (and only they) are moved: the training planes of the stack do not change."""
    ranges = SimulationRanges()
    a = prepare_confocal_data(_stack(tmp_path / "a"), tmp_path / "ca", **TINY)
    b = prepare_confocal_data(_stack(tmp_path / "b", ("train", "val")), tmp_path / "cb", **TINY)
    sa = [d["signal"] for d in a["train"] if d["specimen"] == "nuclei"]
    sb = [d["signal"] for d in b["train"] if d["specimen"] == "nuclei"]
    assert sa and len(sa) == len(sb)
    for x, y in zip(sa, sb):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6 * float(x.max()))
    # ... while a whole-stack rendering would have lit them: the test cube shines into the training region
    whole = tifffile.imread(tmp_path / "a" / "nuclei.tif").astype(np.float32) - 100
    signal, _, _ = render_clean_planes(whole, 1.2, ranges, (0.29, 0.26, 0.26), [5], max_lateral=31)
    assert signal[0, 40:50, 26:34].max() > 1e-3 * signal.max()
    assert {"train", "val", "test", "loso"} <= set(a) and len(a["test"]) == 2 and len(a["loso"]) == 4


def test_splits_and_cache(tmp_path) -> None:
    stack = _stack(tmp_path)
    data = prepare_confocal_data(stack, tmp_path / "c", **TINY)
    kinds = {d["specimen"].rstrip("0123456789") for d in data["train"]}
    assert kinds == {"nuclei", "puncta", "filaments"}  # the held-out kind (vesicles) is never trained on
    loso = json.loads((Path(data["loso"][0]["image"]).parents[1] / "pairs.json").read_text())
    assert loso["specimen"].startswith("vesicles") and all(0.0 < r["na"] < 1.33 for r in loso["pairs"])
    item = data["train"][0]
    assert item["signal"].shape == item["label"].shape and item["signal"].ndim == 3
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*") if p.is_file()}
    again = prepare_confocal_data(stack, tmp_path / "c", **TINY)  # cached: nothing re-rendered
    assert stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "c").rglob("*") if p.is_file()}
    assert [d["image"] for d in again["test"]] == [d["image"] for d in data["test"]]
    blocks = stack_blocks(np.zeros((2, 64, 64)))
    assert sum(b.shape[1] * b.shape[2] for b in blocks.values()) < 64 * 64  # disjoint, gaps between blocks
    with pytest.raises(ValueError, match="must not be among"):
        prepare_confocal_data(stack, tmp_path / "d", heldout_kind="puncta", **{**TINY, "train_kinds": ("puncta",)})
    with pytest.raises(FileNotFoundError, match="no confocal stack"):
        prepare_confocal_data(tmp_path / "missing", tmp_path / "d")


def test_adversarial_weight_ramps_linearly() -> None:
    g = torch.nn.Conv2d(1, 1, 3, padding=1)
    d = torch.nn.Conv2d(2, 1, 3, padding=1)
    trainer = PairedGANTrainer("cpu", 1, [], g, torch.optim.Adam(g.parameters()), d, torch.optim.Adam(d.parameters()),
                               generator_loss=GeneratorLoss(lambda_adv=0.1, adv_warmup=100))  # fmt: skip
    weights = []
    for it in (0, 50, 100, 1000):
        trainer.state.iteration = it
        weights.append(trainer.adv_weight())
    assert weights == pytest.approx([0.0, 0.05, 0.1, 0.1])
    with pytest.raises(ValueError, match="lambda_adv"):
        GeneratorLoss(lambda_adv=-1.0)
