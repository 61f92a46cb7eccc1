"""Tests of ``bundles/confocal_enhance``: every config end to end through ``python -m monai.bundle run`` on tiny
synthetic data (``inference.json`` and ``train.json`` alone, ``train_pixel.json``, ``evaluate.json``,
``real_pairs.json`` and ``multi_gpu_train.json`` as overlays after ``train.json``), the contracts a MONAI user relies
on (the generator scripts to TorchScript, ``network_def`` and data settings agree between the standalone configs,
MONAI Label's stock ``BundleInferTask`` finds what it reads in ``inference.json``), and unit tests of the pieces behind
them (pair files, plane-wise inferer, dtype restoration, the evaluation steps).

The tiny stack is procedural (16 planes of 64 px, no real data) and named ``pollen.tif`` so that names derived from
the user's stack are checked; PSF grids, patches and networks are shrunk on the command line so that each bundle run
takes a few seconds on one CPU thread.
"""

from __future__ import annotations

import importlib.util
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
from conftest import load_trained_network
from monai.data import MetaTensor
from PIL import Image

from emgan_monai.data.fluorescence import image_datalist, split_real_pairs
from emgan_monai.data.specimens import procedural_nuclei
from emgan_monai.evaluation.confocal import (
    HeldOutComparison,
    MetricsReport,
    RichardsonLucyBaseline,
)
from emgan_monai.inferers import PlanewiseInferer
from emgan_monai.io import read_tiff, write_tiff
from emgan_monai.losses import L1SSIMLoss
from emgan_monai.networks import ResidualUNetGenerator
from emgan_monai.transforms import InvertToInputDtyped, ScalePercentiled

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "confocal_enhance"
CONFIGS = BUNDLE / "configs"
TINY_NET = ["--generator_channels", "[8,16,32,64]"]
TINY_DATA = ["--stack_name", "pollen.tif", "--procedural_shape", "[8,32,32]", "--n_procedural_train", "1", "--n_na_train", "1", "--n_eval_planes", "2",
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
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def tiny_generator() -> ResidualUNetGenerator:
    return ResidualUNetGenerator(2, 1, 1, channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=2, norm=None)


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("confocal_data")
    volume = procedural_nuclei((16, 64, 64), n_nuclei=5, radius_um=(2.5, 4.0), seed=3)
    tifffile.imwrite(root / "pollen.tif", np.round(volume * 4000 + 100).astype(np.uint16))
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
    assert not any(
        "norm" in k.split(".")[-2] for k in ckpt["discriminator"] if "." in k and "parametrizations" not in k
    )
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
    bundle_run(["train.json", "evaluate.json"], "--dataset_dir", str(stack_dir), "--data_cache_dir",
               str(trained["base"] / "data"), "--gan_ckpt", str(trained["gan"] / "model.pt"), "--pixel_ckpt", str(trained["pixel"] / "model.pt"),
               "--output_dir", str(out), "--rl_candidates", "[1,3]", "--roi_size", "64",
               *TINY_NET, *TINY_DATA)  # fmt: skip
    result = json.loads((out / "metrics.json").read_text())
    # the held-out block of the user's stack (named after it) and the leave-one-structure-out set
    assert list(result["sets"]) == ["test: held-out pollen block (no light shared with training)",
                                    "leave-one-structure-out: vesicles (never trained on)"]  # fmt: skip
    test_rows = next(iter(result["sets"].values()))["per_image"]["wide-field input"]
    assert {r["specimen"] for r in test_rows} == {"pollen"}
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
    again = bundle_run(["train.json", "evaluate.json"], "--dataset_dir", str(stack_dir), "--data_cache_dir", str(trained["base"] / "data"),
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
    # the sample states 0.26 um pixels, the model's: nothing resampled, and the output carries the input's size
    assert (
        read_tiff(out / "widefield_sample_confocal.tif").spacing
        == read_tiff(BUNDLE / "sample" / "widefield_sample.tif").spacing
        == {"X": 0.26, "Y": 0.26}
    )


# ---------------------------------------------------------------------------------------------------------------------
# a user's own files: input contract, physical scale, memory, output names (shipped weights, real bad inputs)
# ---------------------------------------------------------------------------------------------------------------------
SHIPPED = pytest.mark.skipif(not (BUNDLE / "models" / "model.pt").is_file(), reason="shipped weights not present")


def cli_run(*overrides: str) -> subprocess.CompletedProcess:
    """``emgan-monai run confocal_enhance inference --key value ...`` (the console entry point's module)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "emgan_monai.cli", "run", "confocal_enhance", "inference", *overrides]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def failure_lines(stderr: str) -> dict[str, str]:
    """``{file name: reason}`` of the failure list a batch run prints at its end."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\d+ of \d+ input\(s\) failed:", line))
    return {Path(line.strip().split(": ", 1)[0]).name: line.strip().split(": ", 1)[1] for line in lines[start + 1 :]}


def sample_plane() -> np.ndarray:
    """The embedded wide-field sample (200 x 264 uint16, 0.26 um pixels)."""
    return tifffile.imread(BUNDLE / "sample" / "widefield_sample.tif")


@SHIPPED
def test_inference_refuses_inputs_that_break_the_contract_and_processes_the_rest(tmp_path) -> None:
    """RGB, two-channel, NaN, constant, bool and a 2.6 um file (10x the model's pixel size) are each refused in one
    line naming the file and the problem (sizes and the key to set for the scale); the good file is enhanced; exit 1."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    rng = np.random.default_rng(0)
    plane = sample_plane()[:120, :140]
    write_tiff(inp / "good.tif", plane, spacing={"X": 0.26, "Y": 0.26}, unit="um")
    tifffile.imwrite(inp / "rgb.tif", rng.integers(0, 255, (120, 140, 3), dtype=np.uint8), photometric="rgb")
    tifffile.imwrite(inp / "two_channels.tif", np.stack([plane, plane]), imagej=True, metadata={"axes": "CYX"})
    noisy = plane.astype(np.float32)
    noisy[5, 7] = np.nan
    tifffile.imwrite(inp / "nan.tif", noisy)
    tifffile.imwrite(inp / "constant.tif", np.full((120, 140), 100, np.uint16))
    tifffile.imwrite(inp / "binary.tif", plane > plane.mean())
    write_tiff(inp / "coarse.tif", plane, spacing={"X": 2.6, "Y": 2.6}, unit="um")
    run = bundle_run("inference.json", "--input_dir", str(inp), "--output_dir", str(out), check=False)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "6 of 7 input(s) failed:" in run.stderr
    reasons = failure_lines(run.stderr)
    assert set(reasons) == {"rgb.tif", "two_channels.tif", "nan.tif", "constant.tif", "binary.tif", "coarse.tif"}
    assert all(r.startswith("DataError:") and "\n" not in r for r in reasons.values())
    assert "an RGB colour image" in reasons["rgb.tif"]
    assert "2 channels" in reasons["two_channels.tif"]
    assert "1 NaN or infinite value(s)" in reasons["nan.tif"]
    assert "a constant image (all 16800 pixels are 100)" in reasons["constant.tif"]
    assert "binary (bool)" in reasons["binary.tif"]
    contract = "this bundle accepts single-channel 2D images (Y, X) or 3D stacks (Z, Y, X)"
    assert all(contract in reasons[f] for f in ("rgb.tif", "two_channels.tif", "nan.tif", "constant.tif"))
    coarse = reasons["coarse.tif"]
    assert "pixel size 2.6 um/px (from the file) is 10x larger than the model's 0.26 um/px" in coarse
    assert "--max_rescale 4" in coarse and "--pixel_size" in coarse
    assert sorted(p.name for p in out.iterdir()) == ["good_confocal.tif", "good_preview.png"]
    assert tifffile.imread(out / "good_confocal.tif").shape == plane.shape


@SHIPPED
def test_inference_resamples_calibrated_inputs_to_the_model_pixel_size_and_back(tmp_path) -> None:
    """A plane at 0.26 um (the model's size), the same plane upsampled 2x and stated at 0.13 um, and a 3D stack at
    0.52 um / 0.9 um steps: outputs have the inputs' shapes, dtypes and pixel sizes, and the 0.13 um result binned 2x
    matches the 0.26 um one (the network saw the same scale); read as 0.26 um (--pixel_size) the same pixels give a
    different result. An uncalibrated file is taken at 0.26 um, which the log says."""
    plane = sample_plane()[:100, :120]
    fine = np.repeat(np.repeat(plane, 2, 0), 2, 1)
    stack = np.stack([sample_plane()[i : i + 60 : 2, i : i + 70 : 2] for i in (0, 20, 40)])  # (3, 30, 35) at 0.52 um
    stack = np.repeat(np.repeat(stack, 2, 1), 2, 2)  # (3, 60, 70): 2x the model's grid spacing at 0.52 um
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    write_tiff(inp / "native.tif", plane, spacing={"X": 0.26, "Y": 0.26}, unit="um")
    write_tiff(inp / "fine.tif", fine, spacing={"X": 0.13, "Y": 0.13}, unit="um")
    write_tiff(inp / "stack.tif", stack, spacing={"X": 0.52, "Y": 0.52, "Z": 0.9}, unit="um")
    tifffile.imwrite(inp / "plain.tif", plane)  # no calibration
    run = cli_run("--input_dir", str(inp), "--output_dir", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "plain.tif: the file states no pixel size; assuming the model's 0.26 um" in run.stdout + run.stderr
    for name, src in (("native", plane), ("fine", fine), ("stack", stack), ("plain", plane)):
        pred = read_tiff(out / f"{name}_confocal.tif")
        assert pred.data.shape == src.shape and pred.data.dtype == src.dtype, name
        if name != "plain":
            assert pred.spacing == read_tiff(inp / f"{name}.tif").spacing and pred.unit == "um", name
    assert read_tiff(out / "stack_confocal.tif").spacing == {"X": 0.52, "Y": 0.52, "Z": 0.9}
    assert read_tiff(out / "plain_confocal.tif").unit is None  # uncalibrated in, uncalibrated out (not 1 um)

    def bin2(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64).reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean((1, 3))

    native = tifffile.imread(out / "native_confocal.tif").astype(np.float64)
    assert np.corrcoef(native.ravel(), bin2(tifffile.imread(out / "fine_confocal.tif")).ravel())[0, 1] > 0.99
    np.testing.assert_array_equal(tifffile.imread(out / "plain_confocal.tif"), native)  # not resampled
    # the same fine pixels declared at the model's size are not resampled, and the result differs
    for name in ("native.tif", "stack.tif", "plain.tif"):
        (inp / name).unlink()
    wrong = cli_run("--input_dir", str(inp), "--output_dir", str(tmp_path / "wrong"), "--pixel_size", "0.26")
    assert wrong.returncode == 0, wrong.stderr[-3000:]
    as_026 = read_tiff(tmp_path / "wrong" / "fine_confocal.tif")
    assert as_026.spacing == {"X": 0.26, "Y": 0.26}  # the size the user gave is what the output carries
    assert np.corrcoef(native.ravel(), bin2(as_026.data).ravel())[0, 1] < 0.95


@SHIPPED
def test_inference_refuses_an_oversized_stack_before_allocating_it(tmp_path) -> None:
    """A 48 x 1000 x 1000 stack of 1.04 um pixels (a 70 kB zlib file) would be 48 x 4000 x 4000 px at the model's
    0.26 um, about 19 GiB to process: refused at once, naming both sizes and --max_memory_gb, and the process never
    grows beyond a fraction of that."""
    import resource

    stack = np.zeros((48, 1000, 1000), np.uint8)
    stack[:, ::50, ::50] = 200
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(
        inp / "huge.tif",
        stack,
        imagej=True,
        resolution=(1 / 1.04, 1 / 1.04),
        metadata={"unit": "um", "axes": "ZYX"},
        compression="zlib",
    )
    run = cli_run("--input_dir", str(inp), "--output_dir", str(tmp_path / "out"))
    assert run.returncode == 1, run.stderr[-3000:]
    (reason,) = failure_lines(run.stderr).values()
    assert reason.startswith(
        "DataError: 48 x 1000 x 1000 px (1.04 um/px) is 48 x 4000 x 4000 px at the model's 0.26 um/px"
    )
    assert re.search(r"would need about 1\d\.\d GiB to process, more than --max_memory_gb 16", reason), reason
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 4 * 2**20  # kB: no 19 GiB was ever allocated
    assert not any((tmp_path / "out").glob("*.tif"))


@SHIPPED
def test_inference_refuses_colliding_output_names_before_writing(tmp_path) -> None:
    """``x.tif`` and ``x.tiff`` would both write ``x_confocal.tif``: even with --overwrite true the run is refused
    before any work (one line, exit 2) and a result already in the output folder is kept; without --overwrite, an
    existing result is refused before any input is processed."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    plane = sample_plane()[:100, :120]
    tifffile.imwrite(inp / "x.tif", plane)
    tifffile.imwrite(inp / "x.tiff", plane[::-1])
    tifffile.imwrite(inp / "y.tif", plane)
    (out / "x_confocal.tif").write_bytes(b"an earlier result")
    run = cli_run("--input_dir", str(inp), "--output_dir", str(out), "--overwrite", "true")
    assert run.returncode == 2, run.stderr[-3000:]
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: {inp}: x.tif and x.tiff would both write x_*: rename one of them (nothing was processed or written)"
    )
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["x_confocal.tif"]
    assert (out / "x_confocal.tif").read_bytes() == b"an earlier result"
    # without the clash, an existing result is refused before any work (y.tif is not processed either)
    (inp / "x.tiff").unlink()
    again = cli_run("--input_dir", str(inp), "--output_dir", str(out))
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith(f"error: {out / 'x_confocal.tif'} already exists")
    assert sorted(p.name for p in out.iterdir()) == ["x_confocal.tif"]


@SHIPPED
@pytest.mark.needs_data
def test_inference_resamples_a_real_stack_stated_at_a_finer_pixel_size(tmp_path) -> None:
    """Three planes of the REAL cells3d nuclei stack (``fluorescence/nuclei.tif``, 0.26 um lateral, 0.29 um axial,
    stored uncalibrated) written with that calibration, and the same planes upsampled 2x and stated at 0.13 um: both
    come back with their own shape and voxel size, and the finer one, binned 2x, matches the native result."""
    from conftest import require_data

    stack = tifffile.imread(require_data("fluorescence", "nuclei.tif"))[28:31, 60:180, 50:190]
    fine = np.repeat(np.repeat(stack, 2, 1), 2, 2)
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    write_tiff(inp / "nuclei_native.tif", stack, spacing={"X": 0.26, "Y": 0.26, "Z": 0.29}, unit="um")
    write_tiff(inp / "nuclei_fine.tif", fine, spacing={"X": 0.13, "Y": 0.13, "Z": 0.29}, unit="um")
    run = cli_run("--input_dir", str(inp), "--output_dir", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    native, finer = read_tiff(out / "nuclei_native_confocal.tif"), read_tiff(out / "nuclei_fine_confocal.tif")
    assert native.data.shape == stack.shape and finer.data.shape == fine.shape and finer.data.dtype == np.uint16
    assert native.spacing == {"X": 0.26, "Y": 0.26, "Z": 0.29} and finer.spacing == {"X": 0.13, "Y": 0.13, "Z": 0.29}
    binned = finer.data.astype(np.float64).reshape(3, 120, 2, 140, 2).mean((2, 4))
    for z in range(3):
        assert np.corrcoef(native.data[z].astype(np.float64).ravel(), binned[z].ravel())[0, 1] > 0.99, z


def test_inference_keys_are_documented() -> None:
    """``emgan-monai keys confocal_enhance inference`` describes every user-facing key, and the README lists them."""
    from emgan_monai.cli import user_keys

    keys = user_keys([CONFIGS / "inference.json"])
    for key in (
        "input_dir",
        "output_dir",
        "overwrite",
        "pixel_size",
        "model_pixel_size",
        "max_rescale",
        "max_memory_gb",
        "device",
        "roi_size",
        "ckpt_path",
    ):
        assert keys[key][1], f"no _comment_{key}"
    assert all(doc for _, doc in keys.values()), [k for k, (_, doc) in keys.items() if not doc]
    readme = (BUNDLE / "docs" / "README.md").read_text()
    assert all(f"`{key}`" in readme for key in keys), [k for k in keys if f"`{k}`" not in readme]


def test_check_image_input_states_each_problem() -> None:
    """The contract step of ``inference.json`` on loaded (channel-first) images: one line per problem, file named."""
    from emgan_monai.errors import DataError
    from emgan_monai.transforms.image_input import CheckImageInputd

    check = CheckImageInputd("image", accepts="ACCEPTED")
    good = MetaTensor(torch.rand(1, 40, 30), meta={"filename_or_obj": "a.tif"})
    assert check({"image": good})["image"] is good
    assert check({"image": MetaTensor(torch.arange(1200, dtype=torch.int32).reshape(1, 40, 30, 1))})  # 3D, one plane
    nan = torch.rand(1, 40, 30)
    nan[0, 3, 4] = float("inf")
    cases = [
        (torch.rand(3, 40, 30), {"tiff_axes": "YXS"}, "an RGB colour image (3 samples per pixel, TIFF axes YXS)"),
        (torch.rand(2, 40, 30), {"tiff_axes": "CYX"}, "2 channels (2 x 30 x 40, TIFF axes CYX); split the channels"),
        (torch.rand(1, 40), {}, "1 spatial dimension (shape (40,)"),
        (torch.rand(1, 40, 30) > 0.5, {}, "a binary (bool) image"),
        (torch.rand(1, 40, 30, dtype=torch.complex64), {}, "complex values"),
        (nan, {}, "1 NaN or infinite value(s) out of 1200"),
        (torch.full((1, 40, 30), 3, dtype=torch.int32), {"original_dtype": "uint16"}, "a constant image (all 1200 pixels are 3)"),
    ]  # fmt: skip
    for x, meta, problem in cases:
        with pytest.raises(DataError) as info:
            check({"image": MetaTensor(x, meta={"filename_or_obj": "in/b.tif", **meta})})
        assert str(info.value).startswith(f"in/b.tif: {problem}") and str(info.value).endswith(
            "; this bundle accepts ACCEPTED"
        )
        assert "\n" not in str(info.value)


def test_pixel_size_round_trip_and_refusals() -> None:
    """The transform behind the resampling: a (1, X, Y, Z) stack at 0.52 um goes to the model's 0.26 um grid and,
    through MONAI's Invertd, back onto its own grid with its own affine (X and Y only); refusals name the sizes; a
    one-hot mask in nm with every axis resampled comes back one-hot (area + arg-max) on its own grid."""
    from monai.transforms import Compose, Invertd

    from emgan_monai.errors import DataError
    from emgan_monai.transforms.pixel_size import PixelSized

    affine = torch.diag(torch.tensor([0.52, 0.52, 0.9, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.rand(1, 30, 40, 3), affine=affine, meta={"unit": "um", "filename_or_obj": "s.tif"})
    lateral = PixelSized("image", model_pixel_size=0.26, unit="um", spatial_axes="lateral")
    pre = Compose([lateral])
    d = pre({"image": img})
    assert d["image"].shape == (1, 60, 80, 3)
    assert torch.allclose(d["image"].affine.diagonal(), torch.tensor([0.26, 0.26, 0.9, 1.0], dtype=torch.float64))
    d["pred"] = d["image"] * 2
    back = Invertd(["pred", "image"], transform=pre, orig_keys=["image", "image"], nearest_interp=False)(d)
    assert back["pred"].shape == back["image"].shape == (1, 30, 40, 3)
    assert torch.equal(back["pred"].affine, affine) and back["pred"].meta["unit"] == "um"
    assert torch.allclose(back["pred"], 2 * back["image"], atol=1e-5)
    same = lateral(
        {
            "image": MetaTensor(
                torch.rand(1, 30, 40), affine=torch.diag(torch.tensor([0.261, 0.261, 1.0])), meta={"unit": "um"}
            )
        }
    )["image"]
    assert same.shape == (1, 30, 40)  # within 1 %: not resampled
    with pytest.raises(
        DataError,
        match=r"s\.tif: pixel size 0\.05 um/px \(from the file\) is 5\.2x smaller than the model's 0\.26 um/px",
    ):
        lateral(
            {
                "image": MetaTensor(
                    torch.rand(1, 30, 40),
                    affine=torch.diag(torch.tensor([0.05, 0.05, 1.0])),
                    meta={"unit": "um", "filename_or_obj": "s.tif"},
                )
            }
        )
    with pytest.raises(DataError, match="--max_memory_gb must be a positive number"):
        PixelSized("image", model_pixel_size=0.26, max_memory_gb=0)
    # a one-hot mask at 4.6 nm, all axes, to 18.4 nm: area + arg-max, still one-hot; the inverse restores the grid
    labels = torch.randint(0, 3, (41, 37))
    onehot = torch.nn.functional.one_hot(labels, 3).permute(2, 0, 1).to(torch.uint8)
    mask = MetaTensor(
        onehot, affine=torch.diag(torch.tensor([4.6, 4.6, 1.0], dtype=torch.float64)), meta={"unit": "nm"}
    )
    masks = PixelSized("image", model_pixel_size=18.4, unit="nm", spatial_axes="all", mode="onehot", max_rescale=8)
    small = Compose([masks])({"image": mask})
    assert small["image"].shape == (3, 10, 9) and small["image"].dtype == torch.float32
    assert torch.equal(small["image"].sum(0), torch.ones(10, 9))
    assert torch.allclose(
        small["image"].affine.diagonal()[:2], torch.tensor([4.6 * 41 / 10, 4.6 * 37 / 9], dtype=torch.float64)
    )
    small["pred"] = small["image"][:1]
    em = Invertd("pred", transform=Compose([masks]), orig_keys="image", nearest_interp=False)(small)["pred"]
    assert em.shape == (1, 41, 37) and torch.equal(em.affine, mask.affine) and em.meta["unit"] == "nm"
    with pytest.raises(
        DataError, match=r"pixel size 500 nm/px \(from the file\) is 27\.2x larger than the model's 18\.4 nm/px"
    ):
        masks({"image": MetaTensor(onehot, affine=torch.diag(torch.tensor([500.0, 500.0, 1.0])), meta={"unit": "nm"})})


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
# contracts of the standalone configs: TorchScript, repeated definitions, MONAI Label
# ---------------------------------------------------------------------------------------------------------------------
def _parser(config: str, **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


def test_generator_scripts_to_torchscript_with_the_eager_outputs() -> None:
    """``network_def`` of ``inference.json`` compiles with ``torch.jit.script`` (the model zoo's ``ckpt_export``) and
    gives the eager outputs; the input checks survive scripting."""
    net = _parser("inference.json").get_parsed_content("network_def").eval()
    weights = BUNDLE / "models" / "model.pt"
    if weights.is_file():  # the shipped state dict loads strictly (keys unchanged)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    scripted = torch.jit.script(net)
    x = torch.rand(2, 1, 64, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=0)
    for model in (net, scripted):
        with pytest.raises(Exception, match=r"spatial size \(30, 40\) must be divisible by prod\(strides\) = 8"):
            model(torch.rand(1, 1, 30, 40))
        with pytest.raises(Exception, match=r"expected a 4D tensor \(B, C, H, W\), got shape \(1, 30, 40\)"):
            model(torch.rand(1, 30, 40))


@pytest.mark.parametrize(
    "overrides",
    [{}, {"generator_channels": [8, 16, 32, 64], "num_res_units": 1, "generator_norm": "INSTANCE", "roi_size": 64}],
)
def test_inference_and_train_define_the_same_network_and_data_settings(overrides) -> None:
    """The definitions ``inference.json`` and ``train.json`` both carry stay identical, also under CLI overrides."""
    inf, train = _parser("inference.json", **overrides), _parser("train.json", **overrides)
    own = {"imports", "initialize", "run", "dataset_dir", "output_dir"}  # what each config has for itself
    shared = sorted((set(inf.config) & set(train.config)) - own)
    assert {"network_def", "generator_channels", "generator_strides", "num_res_units", "roi_size"} <= set(shared)
    for key in shared:
        assert inf.config[key] == train.config[key], key
    a, b = inf.get_parsed_content("network_def"), train.get_parsed_content("network_def")
    resolved = [p.get_parsed_content("network_def", instantiate=False, lazy=False).get_config() for p in (inf, train)]
    assert resolved[0] == resolved[1]
    assert resolved[0]["channels"] == overrides.get("generator_channels", [32, 64, 128, 256])
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    # the network sees the same intensities and tiles in inference as in training / validation
    scales = [next(t.scaler for t in p.get_parsed_content(k).transforms if isinstance(t, ScalePercentiled))
              for p, k in ((inf, "preprocessing"), (train, "validate#preprocessing"))]  # fmt: skip
    assert (scales[0].lower, scales[0].upper) == (scales[1].lower, scales[1].upper)
    i_inf = inf.get_parsed_content("inferer").inferer_2d
    i_val = train.get_parsed_content("validate#inferer").inferer_2d
    for attr in ("roi_size", "sw_batch_size", "overlap"):
        assert getattr(i_inf, attr) == getattr(i_val, attr), attr
    assert i_inf.roi_size == (overrides.get("roi_size", 256),) * 2


@pytest.mark.skipif(not (BUNDLE / "models" / "model.pt").is_file(), reason="shipped weights not present")
def test_inference_config_serves_through_monai_label_stock_bundle_task(tmp_path) -> None:
    """What monailabel's stock ``BundleInferTask`` (0.8.5) does with ``configs/inference.json``, step by step.

    It reads that one file, sets ``bundle_root``, instantiates ``network_def`` and loads ``models/model.pt`` into it,
    takes the transforms of ``preprocessing`` (``LoadImaged`` with ``image_only=False``) and ``postprocessing``
    without ``SaveImaged`` instances, applies ``inferer`` to ``data["image"][None]`` and writes ``data["pred"]`` itself.
    Nothing left in ``postprocessing`` may write files, and the prediction must equal the one of
    ``monai.bundle run``.
    """
    from monai.bundle import ConfigParser
    from monai.transforms import Compose, LoadImaged, SaveImaged

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.config.update({"bundle_root": str(BUNDLE), "device": "cpu"})
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert next(iter(meta["network_data_format"]["inputs"])) == "image"
    assert next(iter(meta["network_data_format"]["outputs"])) == "pred"
    net = parser.get_parsed_content("network_def", instantiate=True)
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu"), strict=True)
    pre = list(parser.get_parsed_content("preprocessing", instantiate=True).transforms)
    assert isinstance(pre[0], LoadImaged) and pre[0].keys == ("image",)
    pre[0]._loader.image_only = False  # as BundleInferTask.pre_transforms does
    post = [t for t in parser.get_parsed_content("postprocessing", instantiate=True).transforms
            if not isinstance(t, SaveImaged)]  # fmt: skip
    # no writer survives the filter; the channel is squeezed last, as monailabel's writer expects (H, W[, D])
    assert [type(t).__name__ for t in post] == ["Invertd", "InvertToInputDtyped", "SqueezeDimd"]
    inferer = parser.get_parsed_content("inferer", instantiate=True)
    sample = BUNDLE / "sample" / "widefield_sample.tif"
    data = Compose(pre)({"image": str(sample)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], net.eval())[0]
    pred = np.squeeze(np.asarray(Compose(post)(data)["pred"]))
    bundle_run("inference.json", "--output_dir", str(tmp_path / "run"))
    expected = tifffile.imread(tmp_path / "run" / "widefield_sample_confocal.tif")
    assert pred.dtype == expected.dtype  # the input file's dtype, restored before any writer
    np.testing.assert_array_equal(pred.T, expected)  # MONAI's reader layout (X, Y); savers write (Y, X)


# ---------------------------------------------------------------------------------------------------------------------
# workflow module
# ---------------------------------------------------------------------------------------------------------------------
def test_split_real_pairs_by_file(tmp_path) -> None:
    for sub in ("wf", "confocal"):
        (tmp_path / sub).mkdir()
        for i in range(6):
            tifffile.imwrite(tmp_path / sub / f"cell{i}.tif", np.full((16, 16), i, dtype=np.uint16))
    split = split_real_pairs(tmp_path, heldout_fraction=0.3)
    names = {k: [Path(d["image"]).name for d in v] for k, v in split.items()}
    assert names == {"train": ["cell0.tif", "cell1.tif", "cell2.tif", "cell3.tif"], "val": ["cell4.tif"],
                     "test": ["cell5.tif"]}  # fmt: skip
    with pytest.raises(FileNotFoundError, match="wf"):
        split_real_pairs(tmp_path / "wf")  # not a folder of pairs


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
    spec = importlib.util.spec_from_file_location("make_confocal_sample", REPO / "scripts" / "make_confocal_sample.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    a = script.make_sample(tmp_path / "a", shape_zyx=(9, 40, 50), seed=1)
    b = script.make_sample(tmp_path / "b", shape_zyx=(9, 40, 50), seed=1)
    img = tifffile.imread(a["widefield"])
    assert img.dtype == np.uint16 and img.shape == (40, 50)
    np.testing.assert_array_equal(img, tifffile.imread(b["widefield"]))
    with pytest.raises(FileExistsError):
        script.make_sample(tmp_path / "a", shape_zyx=(9, 40, 50), seed=1)
    assert image_datalist(tmp_path / "a") == [{"image": a["widefield"]}]  # reference/ is not an input
    with pytest.raises(ValueError, match="no TIFF"):
        image_datalist(tmp_path)  # only sub-folders, no TIFF


def test_evaluation_steps_rank_an_oracle_first(tmp_path) -> None:
    """Baseline, comparison and report of ``evaluate.json`` on real-style pairs (no ``pairs.json``: PSF from optics).

    A 'network' that returns the normalised confocal target scores SSIM 1; the wide-field input scores lower; the
    Richardson-Lucy row is tuned on the validation pairs and named after its iteration count.
    """
    rng = np.random.default_rng(0)
    for sub in ("wf", "confocal"):
        (tmp_path / "real" / sub).mkdir(parents=True)
    for i in range(5):
        conf = np.zeros((32, 32), np.float32)
        conf[rng.integers(0, 32, 12), rng.integers(0, 32, 12)] = 1000.0
        wf = rng.poisson(np.full((32, 32), 20.0) + 0.3 * conf).astype(np.uint16)
        tifffile.imwrite(tmp_path / "real" / "wf" / f"cell{i}.tif", wf)
        tifffile.imwrite(tmp_path / "real" / "confocal" / f"cell{i}.tif", conf)
    split = split_real_pairs(tmp_path / "real", heldout_fraction=0.6)
    targets = [tifffile.imread(d["label"]) for d in split["test"]]

    class Oracle(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.queue = list(targets)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.as_tensor(self.queue.pop(0), dtype=torch.float32)[None, None]

    optics = {"na": 1.2, "wavelength_em_um": 0.52, "n_immersion": 1.33, "spacing_zyx_um": [0.29, 0.26, 0.26],
              "psf_shape": [9, 15, 15]}  # fmt: skip
    baseline = RichardsonLucyBaseline(split["val"], candidates=(1, 2), optics=optics)
    without_psf = RichardsonLucyBaseline(split["val"], candidates=(1, 2))  # real pairs, no optics: no RL row
    assert baseline.applies_to([None]) and not without_psf.applies_to([None])
    comparison = HeldOutComparison({"oracle": Oracle()}, lambda x, net: net(x), baseline=baseline)
    report = MetricsReport(tmp_path / "e")
    report.check()
    result = report.write(comparison({"held-out cells": split["test"]}))
    s = result["sets"]["held-out cells"]["summary"]
    assert list(s) == ["wide-field input", f"Richardson-Lucy ({result['rl']['iterations']} it., true PSF)", "oracle"]
    assert s["oracle"]["ssim"]["mean"] == pytest.approx(1.0, abs=1e-6)
    assert s["wide-field input"]["ssim"]["mean"] < 0.99
    assert json.loads((tmp_path / "e" / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert "### held-out cells (2 pairs)" in (tmp_path / "e" / "metrics.md").read_text()
    with pytest.raises(FileExistsError, match="already exists"):
        MetricsReport(tmp_path / "e").check()
    no_rl = HeldOutComparison({}, lambda x, net: net(x), baseline=without_psf)({"t": split["test"]})
    assert no_rl["rl"] is None and list(no_rl["sets"]["t"]["summary"]) == ["wide-field input"]


@pytest.mark.skipif(not (BUNDLE / "models" / "model_pixel.pt").is_file(), reason="shipped weights not present")
def test_shipped_networks_beat_richardson_lucy_on_the_embedded_sample() -> None:
    """Quality guard of the shipped weights on ``sample/`` (procedural nuclei, never trained on).

    Richardson-Lucy gets the true PSF of the sample (NA 1.2, the synthesis grid). Against the protocol of
    ``evaluate.json`` (iterations tuned on the validation pairs: 30) both networks must win in SSIM and PSNR; against
    the iteration count that is best *on this very image* (an oracle no user has) they must still win in PSNR.
    """
    from emgan_monai.metrics.image_quality import (
        image_quality,
        richardson_lucy_baseline,
        tune_rl_iterations,
    )
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
    bundle_run(["train.json", "evaluate.json", "real_pairs.json"], *common, "--output_dir", str(out), "--optics", optics,
               "--gan_ckpt", str(tmp_path / "px" / "model.pt"), "--pixel_ckpt", str(tmp_path / "px" / "model.pt"),
               "--rl_candidates", "[1,2]", "--roi_size", "32", *TINY_NET)  # fmt: skip
    result = json.loads((out / "metrics.json").read_text())
    (held_out,) = result["sets"].values()
    assert held_out["n"] == 1 and [Path(r["image"]).name for r in held_out["per_image"]["wide-field input"]] == [
        "cell5.tif"
    ]
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
    tiny[tiny.index("--stack_name") + 1] = "nuclei.tif"  # the real stack, not the tiny test's pollen.tif
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
