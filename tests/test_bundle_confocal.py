"""Tests of ``bundles/confocal_enhance``: every config end to end through ``python -m monai.bundle run`` on tiny
synthetic data, and unit tests of the pieces behind them (pair files, plane-wise inferer, dtype restoration, the
evaluation table).

The tiny stack is procedural (16 planes of 64 px, no real data); PSF grids, patches and networks are shrunk on the
command line so that each bundle run takes a few seconds on one CPU thread.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from PIL import Image

from conftest import load_trained_network

from emgan_monai.losses import L1SSIMLoss
from emgan_monai.networks import ResidualUNetGenerator
from emgan_monai.transforms import ScalePercentiled
from emgan_monai.evaluation.confocal import evaluate_methods
from emgan_monai.data.confocal_pairs import image_datalist, make_sample, occupied_planes, prepare_pairs
from emgan_monai.data.specimens import procedural_nuclei
from emgan_monai.inferers import PlanewiseInferer
from emgan_monai.transforms import InvertToInputDtyped

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "confocal_enhance"
CONFIGS = BUNDLE / "configs"
TINY_NET = ["--generator_channels", "[8,16,32,64]"]
TINY_DATA = ["--procedural_shape", "[8,32,32]", "--n_procedural_train", "1", "--n_na_train", "1", "--n_eval_planes", "2",
             "--psf_max_lateral", "31", "--train_kinds", "['puncta','filaments']"]  # fmt: skip
TINY_TRAIN = [*TINY_NET, *TINY_DATA, "--patch_size", "32", "--batch_size", "2", "--roi_size", "32",
              "--discriminator_channels", "8", "--val_interval", "1", "--save_interval", "1"]  # fmt: skip


def bundle_run(config: str | list[str], *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` of ``config`` (a file name or a list to merge) with CLI overrides."""
    files = [config] if isinstance(config, str) else config
    config_arg = "[" + ",".join(f"'{CONFIGS / c}'" for c in files) + "]"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg, *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def tiny_generator() -> ResidualUNetGenerator:
    return ResidualUNetGenerator(2, 1, 1, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=2, norm=None)


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("confocal_data")
    volume = procedural_nuclei((16, 64, 64), n_nuclei=5, radius_um=(2.5, 4.0), seed=3)
    tifffile.imwrite(root / "nuclei.tif", np.round(volume * 4000 + 100).astype(np.uint16))
    return root


@pytest.fixture(scope="module")
def trained(stack_dir, tmp_path_factory) -> dict[str, Path]:
    """The two-stage recipe for one epoch: pixel pre-training, then adversarial fine-tuning from its weights."""
    base = tmp_path_factory.mktemp("confocal_runs")
    common = ["--dataset_dir", str(stack_dir), "--data_cache_dir", str(base / "data"), "--max_epochs", "1",
              *TINY_TRAIN]  # fmt: skip
    pixel = bundle_run(["train.json", "train_pixel.json"], *common, "--output_dir", str(base / "pixel"))
    gan = bundle_run("train.json", *common, "--output_dir", str(base / "gan"), "--init_ckpt",
                     str(base / "pixel" / "model.pt"), "--adv_ramp_iterations", "2")  # fmt: skip
    return {"base": base, "gan": base / "gan", "pixel": base / "pixel", "gan_log": gan.stdout + gan.stderr,
            "pixel_log": pixel.stdout + pixel.stderr}  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# bundle configs end to end
# ---------------------------------------------------------------------------------------------------------------------
def test_train_gan_writes_loadable_generator(trained) -> None:
    out = trained["gan"]
    net = tiny_generator()
    net.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
    ckpt = torch.load(out / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    assert (out / "model_best_ssim.pt").is_file()
    assert "val_ssim" in trained["gan_log"] and "g_adv" in trained["gan_log"]
    # the discriminator is spectrally normalised and has no normalisation layer
    assert any(k.endswith("parametrizations.weight.original") for k in ckpt["discriminator"])
    assert not any("norm" in k.split(".")[-2] for k in ckpt["discriminator"] if "." in k and "parametrizations" not in k)
    # fine-tuning started from the pixel model: one epoch of a small ramped adversarial weight stays close to it
    pixel = torch.load(trained["pixel"] / "model.pt", map_location="cpu", weights_only=True)
    fresh = tiny_generator().state_dict()
    gan = net.state_dict()
    k = next(k for k in gan if k.endswith("weight") and gan[k].ndim == 4)
    assert (gan[k] - pixel[k]).norm() < (fresh[k] - pixel[k]).norm()


def test_train_pixel_only_has_no_discriminator(trained) -> None:
    out = trained["pixel"]
    tiny_generator().load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))
    ckpt = torch.load(out / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert "discriminator" not in ckpt and "generator" in ckpt
    assert "g_adv" not in trained["pixel_log"] and "val_ssim" in trained["pixel_log"]


def test_evaluate_table(trained, stack_dir, tmp_path) -> None:
    out = tmp_path / "eval"
    bundle_run("evaluate.json", "--dataset_dir", str(stack_dir), "--data_cache_dir", str(trained["base"] / "data"),
               "--gan_ckpt", str(trained["gan"] / "model.pt"), "--pixel_ckpt", str(trained["pixel"] / "model.pt"),
               "--output_dir", str(out), "--rl_candidates", "[1,3]", "--roi_size", "64",
               *TINY_NET, *TINY_DATA)  # fmt: skip
    result = json.loads((out / "metrics.json").read_text())
    assert len(result["sets"]) == 2  # held-out specimen block and the leave-one-structure-out set
    assert any("vesicles" in name for name in result["sets"])
    for held_out in result["sets"].values():
        methods = list(held_out["summary"])
        assert len(methods) == 4 and methods[0] == "wide-field input" and methods[1].startswith("Richardson-Lucy")
        for scores in held_out["summary"].values():
            assert set(scores) == {"ssim", "psnr", "mse", "nrmse", "frc", "hf_power"}
            assert all(math.isfinite(v["mean"]) for v in scores.values())
    assert result["rl"]["iterations"] in (1, 3)
    table = (out / "metrics.md").read_text()
    assert table.count("\n| ") == 2 * 5  # two tables: header + 4 methods each
    # never overwrite silently
    again = bundle_run("evaluate.json", "--dataset_dir", str(stack_dir), "--data_cache_dir", str(trained["base"] / "data"),
                       "--gan_ckpt", str(trained["gan"] / "model.pt"), "--pixel_ckpt", str(trained["pixel"] / "model.pt"),
                       "--output_dir", str(out), *TINY_NET, *TINY_DATA, check=False)  # fmt: skip
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr


def test_inference_16bit_odd_size_and_3d_stack(trained, tmp_path) -> None:
    """A 1000 x 700 uint16 image and a 3D uint8 stack come back with their shape and dtype, plus PNG previews."""
    rng = np.random.default_rng(0)
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(inp / "big16.tif", rng.integers(100, 4000, size=(1000, 700), dtype=np.uint16))
    stack = rng.integers(0, 200, size=(3, 70, 90), dtype=np.uint8)
    tifffile.imwrite(inp / "stack8.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "out"
    args = ["--input_dir", str(inp), "--output_dir", str(out), "--ckpt_path", str(trained["gan"] / "model.pt"),
            "--roi_size", "128", *TINY_NET]  # fmt: skip
    bundle_run("inference.json", *args)
    big = tifffile.imread(out / "big16_confocal.tif")
    assert big.shape == (1000, 700) and big.dtype == np.uint16
    stack = tifffile.imread(out / "stack8_confocal.tif")
    assert stack.shape == (3, 70, 90) and stack.dtype == np.uint8
    for stem in ("big16", "stack8"):
        png = np.asarray(Image.open(out / f"{stem}_preview.png"))
        assert png.ndim == 3 and png.shape[2] == 3
    refused = bundle_run("inference.json", *args, check=False)
    assert refused.returncode != 0 and "already exists" in refused.stdout + refused.stderr
    bundle_run("inference.json", *args, "--overwrite", "true")


@pytest.mark.skipif(not (BUNDLE / "models" / "model.pt").is_file(), reason="shipped weights not present")
def test_inference_default_sample_with_shipped_weights(tmp_path) -> None:
    out = tmp_path / "demo"
    bundle_run("inference.json", "--output_dir", str(out))
    src = tifffile.imread(BUNDLE / "sample" / "widefield_sample.tif")
    pred = tifffile.imread(out / "widefield_sample_confocal.tif")
    assert pred.shape == src.shape and pred.dtype == src.dtype
    assert (out / "widefield_sample_preview.png").is_file()


def test_multi_gpu_train_two_ranks_on_cpu(stack_dir, trained, tmp_path) -> None:
    """``train.json`` + ``multi_gpu_train.json`` under ``torchrun --nproc_per_node=2`` (gloo): ranks stay identical."""
    out = tmp_path / "ddp"
    extra = tmp_path / "save_each_rank.json"
    extra.write_text(json.dumps({"finalize": [
        "$torch.save(@network.module.state_dict(), os.path.join(@output_dir, 'rank' + str(dist.get_rank()) + '.pt'))",
        "$emgan_monai.engines.utils.leave_process_group()",
    ]}))  # fmt: skip
    files = [*(CONFIGS / c for c in ("train.json", "multi_gpu_train.json")), extra]
    configs = "[" + ",".join(f"'{p}'" for p in files) + "]"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle",
           "run", "--config_file", configs, "--dataset_dir", str(stack_dir), "--data_cache_dir",
           str(trained["base"] / "data"), "--output_dir", str(out), "--max_epochs", "1", *TINY_TRAIN,
           "--init_ckpt", str(trained["pixel"] / "model.pt"),
           "--device", "$torch.device('cpu')"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    w0 = torch.load(out / "rank0.pt", map_location="cpu", weights_only=True)
    w1 = torch.load(out / "rank1.pt", map_location="cpu", weights_only=True)
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0)
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in saved)


# ---------------------------------------------------------------------------------------------------------------------
# workflow module
# ---------------------------------------------------------------------------------------------------------------------
def test_occupied_planes_skips_empty_planes() -> None:
    stack = np.zeros((10, 32, 32))
    stack[3:8, 10:20, 10:20] = 1000.0
    stack[5, 12, 12] = 5000.0
    assert occupied_planes(stack + 100.0) == [3, 4, 5, 6, 7]
    with pytest.raises(ValueError, match="no signal"):
        occupied_planes(np.ones((4, 8, 8)))
    with pytest.raises(ValueError, match="3D"):
        occupied_planes(np.ones((8, 8)))


def test_prepare_pairs_synthesis_is_cached_and_seeded(stack_dir, tmp_path) -> None:
    kwargs = {"psf_shape": (15, 31, 31), "n_train_per_plane": 1, "n_eval_per_plane": 1}
    first = prepare_pairs(stack_dir, tmp_path / "p", **kwargs)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "p").rglob("*.tif")}
    again = prepare_pairs(stack_dir, tmp_path / "p", **kwargs)  # same request: reused, nothing rewritten
    assert first == again and stamp == {p: p.stat().st_mtime_ns for p in (tmp_path / "p").rglob("*.tif")}
    other = prepare_pairs(stack_dir / "nuclei.tif", tmp_path / "q", **kwargs)  # a stack file works too
    a = tifffile.imread(first["test"][0]["image"])
    b = tifffile.imread(other["test"][0]["image"])
    np.testing.assert_array_equal(a, b)  # same seed -> identical pair


def test_prepare_pairs_real_folder_split_by_file(tmp_path) -> None:
    for sub in ("wf", "confocal"):
        (tmp_path / sub).mkdir()
        for i in range(6):
            tifffile.imwrite(tmp_path / sub / f"cell{i}.tif", np.full((16, 16), i, dtype=np.uint16))
    split = prepare_pairs(tmp_path, tmp_path / "unused", heldout_fraction=0.3)
    names = {k: [Path(d["image"]).name for d in v] for k, v in split.items()}
    assert names == {"train": ["cell0.tif", "cell1.tif", "cell2.tif", "cell3.tif"], "val": ["cell4.tif"],
                     "test": ["cell5.tif"]}  # fmt: skip
    with pytest.raises(FileNotFoundError, match="neither a folder of real pairs"):
        prepare_pairs(tmp_path / "wf", tmp_path / "x")


def test_planewise_inferer_shapes() -> None:
    net = tiny_generator().eval()
    inferer = PlanewiseInferer(roi_size=32, sw_batch_size=2)
    with torch.no_grad():
        assert inferer(torch.rand(1, 1, 45, 70), net).shape == (1, 1, 45, 70)
        assert inferer(torch.rand(1, 1, 40, 50, 3), net).shape == (1, 1, 40, 50, 3)
        identity = inferer(torch.rand(1, 1, 50, 30), lambda x: x)
    assert identity.shape == (1, 1, 50, 30)
    with pytest.raises(ValueError, match="roi_size"):
        PlanewiseInferer(roi_size=(32, 32, 32))
    with pytest.raises(ValueError, match="expected"):
        inferer(torch.rand(1, 40, 50), net)


def test_invert_to_input_dtype_restores_uint16() -> None:
    raw = np.arange(20 * 30, dtype=np.int32).reshape(1, 20, 30) * 50  # LoadImage widens uint16 to int32
    img = MetaTensor(torch.as_tensor(raw), meta={"original_dtype": "uint16"})
    d = ScalePercentiled("image")({"image": img})
    d["pred"] = d["image"].clone()
    out = InvertToInputDtyped("pred")(d)["pred"]
    assert out.dtype == torch.uint16
    np.testing.assert_allclose(out.numpy().astype(np.int64), raw, atol=1)
    with pytest.raises(ValueError, match="percentile_scale"):
        InvertToInputDtyped("pred")({"image": torch.zeros(1, 4, 4), "pred": torch.zeros(1, 4, 4)})


def test_l1_ssim_loss() -> None:
    x = torch.rand(2, 1, 32, 32)
    assert float(L1SSIMLoss(ssim_weight=0.5)(x, x)) == pytest.approx(0.0, abs=1e-5)
    assert float(L1SSIMLoss(ssim_weight=0.0)(x, x + 0.1)) == pytest.approx(0.1, abs=1e-5)
    assert float(L1SSIMLoss(ssim_weight=0.5)(x, torch.rand(2, 1, 32, 32))) > 0.2
    with pytest.raises(ValueError, match="ssim_weight"):
        L1SSIMLoss(ssim_weight=2.0)


def test_make_sample_is_deterministic_and_refuses_overwrite(tmp_path) -> None:
    a = make_sample(tmp_path / "a", shape_zyx=(9, 40, 50), seed=1)
    b = make_sample(tmp_path / "b", shape_zyx=(9, 40, 50), seed=1)
    img = tifffile.imread(a["widefield"])
    assert img.dtype == np.uint16 and img.shape == (40, 50)
    np.testing.assert_array_equal(img, tifffile.imread(b["widefield"]))
    with pytest.raises(FileExistsError):
        make_sample(tmp_path / "a", shape_zyx=(9, 40, 50), seed=1)
    assert image_datalist(tmp_path / "a") == [{"image": a["widefield"]}]  # reference/ is not an input
    with pytest.raises(ValueError, match="no TIFF"):
        image_datalist(tmp_path)  # only sub-folders, no TIFF


def test_evaluate_methods_ranks_an_oracle_first(stack_dir, tmp_path) -> None:
    """A 'network' that returns the normalised confocal target scores SSIM 1; the wide-field input scores lower."""
    split = prepare_pairs(stack_dir, tmp_path / "p", psf_shape=(15, 31, 31), n_train_per_plane=1, n_eval_per_plane=1)
    targets = {Path(d["image"]).name: tifffile.imread(d["label"]) for d in split["test"]}

    class Oracle(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.queue = list(targets.values())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(self.queue.pop(0), dtype=torch.float32)[None, None]

    result = evaluate_methods(split["val"], split["test"], {"oracle": Oracle()}, lambda x, net: net(x), tmp_path / "e",
                              rl_candidates=(1, 2), rl_psf_shape=(15, 31, 31))  # fmt: skip
    s = result["summary"]
    assert s["oracle"]["ssim"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert s["wide-field input"]["ssim"]["mean"] < 0.99
    assert (tmp_path / "e" / "metrics.md").is_file()


@pytest.mark.skipif(not (BUNDLE / "models" / "model_pixel.pt").is_file(), reason="shipped weights not present")
def test_shipped_networks_beat_richardson_lucy_on_the_embedded_sample() -> None:
    """Quality guard of the shipped weights on ``sample/`` (procedural nuclei, never trained on).

    Richardson-Lucy gets the true PSF of the sample (NA 1.2, the synthesis grid). Against the protocol of
    ``evaluate.json`` (iterations tuned on the validation pairs: 30) both networks must win in SSIM and PSNR; against
    the iteration count that is best *on this very image* (an oracle no user has) they must still win in PSNR.
    """
    from emgan_monai.metrics.image_quality import image_quality, richardson_lucy_baseline, tune_rl_iterations
    from emgan_monai.physics.optics import widefield_psf

    wf = tifffile.imread(BUNDLE / "sample" / "widefield_sample.tif").astype(np.float32)
    target = tifffile.imread(BUNDLE / "sample" / "reference" / "confocal_sample.tif").astype(np.float32)
    psf = widefield_psf((61, 63, 63), (0.29, 0.26, 0.26), na=1.2).sum(axis=0)
    rl_val = image_quality(richardson_lucy_baseline(wf, psf, 30), target, data_range=1.0, normalize="minmse")
    oracle_it = tune_rl_iterations([(wf, target)], psf, candidates=(1, 2, 3, 5, 10, 20, 40))
    rl_oracle = image_quality(richardson_lucy_baseline(wf, psf, oracle_it), target, data_range=1.0, normalize="minmse")
    x = ScalePercentiled("image")({"image": torch.from_numpy(wf)[None]})["image"].as_tensor()[None]
    inferer = PlanewiseInferer(roi_size=256, sw_batch_size=2)
    for name in ("model_pixel.pt", "model.pt"):
        net = ResidualUNetGenerator(2, 1, 1, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2,
                                    norm=None, act="PRELU", global_residual=True)  # fmt: skip
        net.load_state_dict(torch.load(BUNDLE / "models" / name, map_location="cpu", weights_only=True))
        with torch.no_grad():
            pred = inferer(x, net.eval())[0, 0].numpy()
        q = image_quality(pred, target, data_range=1.0, normalize="minmse")
        assert q["ssim"] >= rl_val["ssim"] and q["psnr"] >= rl_val["psnr"], (name, q, "Richardson-Lucy 30 it.", rl_val)
        assert q["psnr"] >= rl_oracle["psnr"] + 1.0, (name, q, f"Richardson-Lucy {oracle_it} it. (oracle)", rl_oracle)


def test_real_pairs_train_and_evaluate(tmp_path) -> None:
    """``real_pairs.json`` merged after train.json / evaluate.json: a folder of wf/ + confocal/ TIFF pairs."""
    rng = np.random.default_rng(0)
    data = tmp_path / "real"
    for sub in ("wf", "confocal"):
        (data / sub).mkdir(parents=True)
    for i in range(6):
        conf = np.zeros((48, 48), np.float32)
        conf[rng.integers(0, 48, 30), rng.integers(0, 48, 30)] = 1000.0
        wf = rng.poisson(np.full((48, 48), 20.0) + 0.3 * conf).astype(np.uint16)
        tifffile.imwrite(data / "wf" / f"cell{i}.tif", wf)
        tifffile.imwrite(data / "confocal" / f"cell{i}.tif", conf)
    common = ["--dataset_dir", str(data), "--data_cache_dir", str(tmp_path / "unused")]
    bundle_run(["train.json", "train_pixel.json", "real_pairs.json"], *common, "--output_dir", str(tmp_path / "px"),
               "--max_epochs", "1", *TINY_NET, "--patch_size", "32", "--batch_size", "2", "--roi_size", "32",
               "--val_interval", "1")  # fmt: skip
    out = tmp_path / "eval"
    optics = "{'na': 1.2, 'wavelength_em_um': 0.52, 'n_immersion': 1.33, 'spacing_zyx_um': [0.29, 0.26, 0.26], 'psf_shape': [9, 15, 15]}"
    bundle_run(["evaluate.json", "real_pairs.json"], *common, "--output_dir", str(out), "--optics", optics,
               "--gan_ckpt", str(tmp_path / "px" / "model.pt"), "--pixel_ckpt", str(tmp_path / "px" / "model.pt"),
               "--rl_candidates", "[1,2]", "--roi_size", "32", *TINY_NET)  # fmt: skip
    result = json.loads((out / "metrics.json").read_text())
    (held_out,) = result["sets"].values()
    assert held_out["n"] == 1 and [Path(r["image"]).name for r in held_out["per_image"]["wide-field input"]] == ["cell5.tif"]
    assert len(held_out["summary"]) == 4  # input, Richardson-Lucy (from --optics), two networks


def test_real_nuclei_stack_train_then_inference(real_data, tmp_path) -> None:
    """The two-stage recipe for one epoch each on pairs rendered from the REAL confocal nuclei stack (``fluorescence/
    nuclei.tif``, shrunk patches and networks), then ``inference.json`` with the GAN weights on the held-out wide-field
    planes of that stack and on a raw uint16 sub-stack of the real stack."""
    folder = real_data / "fluorescence"
    if not (folder / "nuclei.tif").is_file():
        pytest.skip(f"real confocal stack not found at {folder / 'nuclei.tif'}")
    tiny = list(TINY_TRAIN)
    tiny[tiny.index("--batch_size") + 1] = "16"  # a few iterations per epoch
    common = ["--dataset_dir", str(folder), "--data_cache_dir", str(tmp_path / "data"), "--max_epochs", "1",
              "--stack_repeats", "1", *tiny]  # fmt: skip
    pixel = bundle_run(["train.json", "train_pixel.json"], *common, "--output_dir", str(tmp_path / "pixel"))
    assert pixel.returncode == 0
    gan_dir = tmp_path / "gan"
    gan = bundle_run("train.json", *common, "--output_dir", str(gan_dir), "--init_ckpt",
                     str(tmp_path / "pixel" / "model.pt"), "--adv_ramp_iterations", "2")  # fmt: skip
    pixel_log, log = pixel.stdout + pixel.stderr, gan.stdout + gan.stderr
    assert "rendered nuclei" in pixel_log, pixel_log[-3000:]  # pairs were rendered from the real stack (then cached)
    assert "val_ssim" in log and "g_adv" in log, log[-3000:]
    n_train = int(re.search(r"confocal data: \{'train': (\d+)", pixel_log + log).group(1))
    assert n_train > 16
    ckpt = torch.load(gan_dir / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"generator", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    steps = math.ceil(n_train / 16)
    assert ckpt["trainer"]["iteration"] == steps and ckpt["trainer"]["epoch_length"] == steps

    load_trained_network(CONFIGS / "train.json", BUNDLE, gan_dir / "model.pt", generator_channels=[8, 16, 32, 64])

    # inputs: the held-out wide-field planes rendered from the real stack, and a raw real 3D uint16 sub-stack
    inp = tmp_path / "in"
    inp.mkdir()
    heldout = sorted((tmp_path / "data").glob("eval_*/test/*/wf/*.tif"))
    assert heldout, "no held-out test planes were written"
    expected = {}
    for path in heldout[:2]:
        plane = tifffile.imread(path)
        tifffile.imwrite(inp / path.name, plane)
        expected[path.stem] = (plane.shape, plane.dtype)
    real = tifffile.imread(folder / "nuclei.tif")[28:31, 40:137, 60:143]
    assert real.dtype == np.uint16
    tifffile.imwrite(inp / "real_nuclei.tif", real, imagej=True, metadata={"axes": "ZYX"})
    expected["real_nuclei"] = (real.shape, real.dtype)
    out = tmp_path / "out"
    bundle_run("inference.json", "--input_dir", str(inp), "--output_dir", str(out), "--ckpt_path",
               str(gan_dir / "model.pt"), "--roi_size", "32", *TINY_NET)  # fmt: skip
    for stem, (shape, dtype) in expected.items():
        pred = tifffile.imread(out / f"{stem}_confocal.tif")
        assert pred.shape == shape and pred.dtype == dtype, (stem, pred.shape, pred.dtype)
        values = pred.astype(np.float64)
        assert np.isfinite(values).all() and values.std() > 0, stem
        assert (out / f"{stem}_preview.png").is_file()
