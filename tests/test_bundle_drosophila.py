"""End-to-end tests of every config of ``bundles/drosophila_skip_patch`` through ``python -m monai.bundle run``.

All runs use one tiny synthetic stack in the real folder layout (6 sections of 64 px; 4 training, 2 held-out) at
resolution 64 (stage 1 trains on 32 px crops of the 64 px sections, a 2 x 2 latent grid); the training outputs are
shared between tests through module-scoped fixtures.
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
from conftest import load_trained_network
from PIL import Image

from emgan_monai.bundle_utils import config_files
from emgan_monai.data.drosophila import make_synthetic_stack
from emgan_monai.evaluation.drosophila import C2ST_SETS
from emgan_monai.handlers import averaged_model_state

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "drosophila_skip_patch"
CONFIGS = BUNDLE / "configs"
RES = 64
TINY = ["--n_train", "4", "--n_val", "2", "--resolution", str(RES), "--discriminator_channels", "8"]
#: stage 2: a small NoiseUNet (every config that loads the stage-2 weights takes it)
TINY_EM = ["--em_channels", "[4, 8, 8, 8]"]
#: stage 1: sections of RES px, crops of RES / 2 px, two iterations of batch 4
TINY_MASK = [
    "--section_size",
    str(RES),
    "--crop_size",
    str(RES // 2),
    "--batch_size",
    "4",
    "--iterations_per_epoch",
    "2",
    "--generator_channels",
    "[16, 8, 8, 8, 8]",
]


#: evaluate.json is an overlay merged after inference.json
EVALUATE = ["inference.json", "evaluate.json"]


def bundle_run(
    config: str | list[str], *overrides: str, check: bool = True, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run`` of ``config`` (a standalone config file name, or a base config and its overlays
    to merge) with CLI overrides, from ``cwd``."""
    files = config_files(BUNDLE, *([config] if isinstance(config, str) else config))
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(f"'{f}'" for f in files) + "]"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg, *overrides]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        )
    return proc


def _parser(config: str | list[str], **overrides):
    """``ConfigParser`` of ``config`` (a name or a base config and its overlays) with ``overrides``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, *([config] if isinstance(config, str) else config)))
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


def _parsed(config: str | list[str], key: str, **overrides):
    return _parser(config, **overrides).get_parsed_content(key)


def _resolved(config: str | list[str], key: str, **overrides):
    """``key`` of ``config`` with every reference substituted, nothing instantiated or evaluated (plain data)."""
    from monai.bundle.config_item import ConfigItem

    def plain(x):
        if isinstance(x, ConfigItem):
            return plain(x.get_config())
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x

    return plain(_parser(config, **overrides).get_parsed_content(key, instantiate=False, eval_expr=False))


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dros_data")
    make_synthetic_stack(root / "stack1", n_sections=6, size=64, seed=3)
    return root


@pytest.fixture(scope="module")
def stage1_run(stack_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    bundle_run(
        "train_mask.json",
        "--dataset_dir",
        str(stack_dir),
        "--output_dir",
        str(out),
        "--max_epochs",
        "1",
        "--save_interval",
        "1",
        "--orientation_start_epoch",
        "0",
        *TINY,
        *TINY_MASK,
    )  # every term on
    return out


@pytest.fixture(scope="module")
def stage2_runs(stack_dir, tmp_path_factory) -> dict:
    """A 1-epoch stage-2 run, then ``--resume true`` continuing it to 2 epochs in the same folder."""
    out = tmp_path_factory.mktemp("stage2")
    args = [
        "--dataset_dir",
        str(stack_dir),
        "--output_dir",
        str(out),
        "--val_interval",
        "1",
        "--save_interval",
        "1",
        "--batch_size",
        "2",
        "--iterations_per_epoch",
        "2",
        *TINY,
        *TINY_EM,
    ]
    first = bundle_run("train.json", *args, "--max_epochs", "1")
    epoch1 = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    second = bundle_run("train.json", *args, "--max_epochs", "2", "--resume", "true")
    return {"dir": out, "first": first, "second": second, "epoch1_files": epoch1}


def test_train_mask_writes_loadable_generator(stage1_run):
    weights = stage1_run / "model.pt"
    assert weights.is_file()
    assert (stage1_run / "checkpoints" / "checkpoint_final.pt").is_file()
    net = _parsed("train_mask.json", "network_def", generator_channels=[16, 8, 8, 8, 8])
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    latent = _parsed("train_mask.json", "latent_shape", crop_size=RES)
    with torch.no_grad():
        out = net(torch.randn(2, *latent))
    assert out.shape == (2, 2, RES, RES) and out.abs().max() < 1  # signed-distance maps (mitochondria, membrane)
    from emgan_monai.networks.two_stage_generator import hard_mask

    mask = hard_mask(out)  # decoded to one-hot classes, as stage 2 takes them
    assert mask.shape == (2, 3, RES, RES)
    torch.testing.assert_close(mask.sum(1), torch.ones(2, RES, RES))
    # the full checkpoint holds everything needed to continue: generator, EMA, discriminator, optimisers, step
    ckpt = torch.load(stage1_run / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"generator", "g_ema", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    assert ckpt["trainer"]["iteration"] == 2


def _finetune_moves_from(config: str, init: Path, out: Path, args: list[str], net_overrides: dict) -> None:
    """``--init_checkpoint`` starts a new run (new data, step 0) from the weights and optimisers of a checkpoint."""
    bundle_run(config, *args, "--output_dir", str(out), "--max_epochs", "1", "--init_checkpoint", str(init))
    before = torch.load(init, map_location="cpu", weights_only=True)
    after = torch.load(out / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert after["trainer"]["iteration"] == 2  # a new run ...
    key = next(k for k in before["generator"] if k.endswith("weight"))
    moved = (after["generator"][key] - before["generator"][key]).abs().max()
    fresh = _parsed(config, "network_def", **net_overrides).state_dict()[key]
    assert 0 < moved < (fresh - before["generator"][key]).abs().max()  # ... that continued from the checkpoint


def test_train_mask_switches_the_orientation_term_on_after_its_start_epoch(tmp_path):
    from ignite.engine import Engine, Events

    parser = _parser("train_mask.json", orientation_start_epoch=3, output_dir=str(tmp_path))
    loss = parser.get_parsed_content("texture_loss")
    schedule = [h for h in parser.get_parsed_content("train#handlers") if type(h).__name__ == "AttributeSchedule"]
    assert len(schedule) == 1 and schedule[0].obj is loss  # the trainer's texture loss, not a copy
    engine = Engine(lambda e, b: None)
    schedule[0].attach(engine)
    weights = []
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.append(loss.w_orientation))
    engine.run([0], max_epochs=5)
    assert weights == [0.0, 0.0, 0.0, parser["lambda_orientation"], parser["lambda_orientation"]]
    assert parser["lambda_orientation"] > 0


def test_train_mask_finetunes_from_a_full_checkpoint(stack_dir, stage1_run, tmp_path):
    _finetune_moves_from(
        "train_mask.json",
        stage1_run / "checkpoints" / "checkpoint_final.pt",
        tmp_path / "ft1",
        ["--dataset_dir", str(stack_dir), *TINY, *TINY_MASK],
        {"generator_channels": [16, 8, 8, 8, 8]},
    )


def test_train_em_finetunes_from_a_full_checkpoint(stack_dir, stage2_runs, tmp_path):
    _finetune_moves_from(
        "train.json",
        stage2_runs["dir"] / "checkpoints" / "checkpoint_final.pt",
        tmp_path / "ft2",
        [
            "--dataset_dir",
            str(stack_dir),
            "--batch_size",
            "2",
            "--iterations_per_epoch",
            "2",
            "--val_interval",
            "1",
            *TINY,
            *TINY_EM,
        ],
        {"em_channels": [4, 8, 8, 8]},
    )


#: where each standalone config defines the stage-2 (mask -> EM) network and the stage-1 (noise -> mask) generator
STAGE2_DEFS = {"train.json": "network_def", "inference_mask2em.json": "network_def", "inference.json": "em_network_def"}
STAGE1_DEFS = {"train_mask.json": "network_def", "inference.json": "mask_network_def"}
#: settings repeated across standalone configs (the zoo's way: each config carries what it needs)
REPEATED = {
    "em_channels": ("train.json", "inference.json", "inference_mask2em.json"),
    "em_noise": ("train.json", "inference.json", "inference_mask2em.json"),
    "em_antialias": ("train.json", "inference.json", "inference_mask2em.json"),
    "em_border_pad": ("inference.json", "inference_mask2em.json"),
    "latent_channels": ("train_mask.json", "inference.json"),
    "latent_stride": ("train_mask.json", "inference.json"),
    "generator_channels": ("train_mask.json", "inference.json"),
    "mask_channels": ("train_mask.json", "inference.json"),
    "generator_output": ("train_mask.json", "inference.json"),
    "noise_blocks": ("train_mask.json", "inference.json"),
    "mask_preprocessing": ("train_mask.json", "evaluate.json"),
    "dataset_dir": ("train.json", "train_mask.json", "inference.json"),
    "bundle_root": ("train.json", "train_mask.json", "inference.json", "inference_mask2em.json"),
}


def test_repeated_definitions_are_identical():
    """No common.json: every ``inference*.json`` / ``train*.json`` stands alone, and what several of them define (the
    stage-2 network, the stage-1 generator, their settings, the real-mask transforms) is identical wherever it is
    repeated, as written and as resolved with and without command-line overrides (the stage-2 border pad apart: it
    has no weights, and only inference uses it); ``inference.json``'s ``network_def`` wraps exactly those two
    networks."""
    assert not (CONFIGS / "common.json").exists()
    raw = {p.name: json.loads(p.read_text()) for p in CONFIGS.glob("*.json") if p.name != "metadata.json"}
    for key, names in REPEATED.items():
        values = [raw[n][key] for n in names]
        assert all(v == values[0] for v in values), (key, names)
    assert raw["inference.json"]["network_def"] == {
        "_target_": "emgan_monai.networks.two_stage_generator.TwoStageGenerator",
        "mask_generator": "@mask_network_def",
        "em_generator": "@em_network_def",
    }
    # the stage-2 border pad has no weights: inference mirrors 16 px around the mask, training crops do without
    assert raw["train.json"]["em_border_pad"] == 0 and raw["inference.json"]["em_border_pad"] == 16

    def weights_def(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "border_pad"}

    for overrides in ({}, {"em_channels": [4, 8, 8, 8], "em_noise": False}):
        resolved = {c: weights_def(_resolved(c, key, **overrides)) for c, key in STAGE2_DEFS.items()}
        want = resolved["train.json"]
        assert want["_target_"] == "emgan_monai.networks.NoiseUNet"
        assert want["channels"] == overrides.get("em_channels", [16, 32, 64, 96])
        assert all(v == want for v in resolved.values()), resolved
        assert weights_def(_resolved(["train.json", "multi_gpu_train.json"], "network_def", **overrides)) == want
        assert weights_def(_resolved(EVALUATE, "em_network_def", **overrides)) == want
        assert weights_def(_resolved("inference.json", "network_def", **overrides)["em_generator"]) == want
    for overrides in ({}, {"generator_channels": [8, 8, 8, 8, 8], "latent_channels": 4}):
        resolved = {c: _resolved(c, key, **overrides) for c, key in STAGE1_DEFS.items()}
        want = resolved["train_mask.json"]
        assert want["_target_"] == "emgan_monai.networks.mask_generator.LatentGridMaskGenerator"
        assert (want["out_channels"], want["output"], want["noise_blocks"]) == (2, "tanh", 3)
        assert all(v == want for v in resolved.values()), resolved
        assert _resolved(EVALUATE, "mask_network_def", **overrides) == want
        assert _resolved("inference.json", "network_def", **overrides)["mask_generator"] == want
    # paper recipes keep their own networks
    assert (
        _resolved(["train.json", "train_paper.json"], "network_def")["_target_"] == "emgan_monai.networks.Pix2PixUNet"
    )
    assert (
        _resolved(["train_mask.json", "train_mask_paper.json"], "network_def")["_target_"]
        == "emgan_monai.networks.NoiseToMaskGenerator"
    )


def test_evaluation_and_training_share_the_mask_transforms():
    """evaluate.json must see the masks that train_mask.json trains on (area downsampling + argmax, same thresholds),
    and inference.json / evaluate.json draw full-section latent grids of the generator train_mask.json trains."""
    train = _resolved("train_mask.json", "mask_preprocessing")
    assert _resolved(EVALUATE, "mask_preprocessing") == train
    assert _resolved(EVALUATE, "mask_preprocessing", resolution=RES) == _resolved(
        "train_mask.json", "mask_preprocessing", section_size=RES
    )
    for name in ("inference.json", EVALUATE):
        assert _parsed(name, "latent_shape") == [16, 16, 16], name
        crops = _parsed("train_mask.json", "latent_shape", crop_size=RES)
        assert _parsed(name, "latent_shape", resolution=RES) == crops, name


def test_paper_recipe_config_trains(stack_dir, tmp_path):
    out = tmp_path / "paper"
    bundle_run(
        ["train_mask.json", "train_mask_paper.json"],
        "--dataset_dir",
        str(stack_dir),
        "--output_dir",
        str(out),
        "--max_epochs",
        "1",
        *TINY,
    )
    net = _parsed(["train_mask.json", "train_mask_paper.json"], "network_def", resolution=RES)
    assert type(net).__name__ == "NoiseToMaskGenerator"  # the paper's network, not the base config's
    net.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))  # strict: its weights


def test_train_em_and_resume(stage2_runs):
    out = stage2_runs["dir"]
    assert "checkpoint_epoch=1.pt" in stage2_runs["epoch1_files"]
    assert "checkpoint_epoch=2.pt" not in stage2_runs["epoch1_files"]
    # the second run resumed from epoch 1 instead of training from scratch
    log = stage2_runs["second"].stdout + stage2_runs["second"].stderr
    assert re.search(r"resume: \w+ \S*checkpoint_epoch=1\.pt", log), log[-3000:]
    assert "Epoch[2] Complete" in log and "Epoch[1] Complete" not in log, log[-3000:]
    assert (out / "checkpoints" / "checkpoint_epoch=2.pt").is_file()
    ckpt = torch.load(out / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["iteration"] == 4 and ckpt["trainer"]["epoch_length"] == 2
    # the full checkpoint holds everything needed to continue: generator, EMA, discriminator, optimisers, step
    assert {"generator", "g_ema", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    # validation ran; model.pt is the EMA generator and loads into network_def
    assert "val_ssim" in log
    net = _parsed("train.json", "network_def", em_channels=[4, 8, 8, 8])
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    net.load_state_dict(saved)
    ema = averaged_model_state(ckpt["g_ema"])
    for k in saved:
        torch.testing.assert_close(saved[k], ema[k])
    with torch.no_grad():
        em = net(torch.rand(1, 3, RES, RES))
    assert em.shape == (1, 1, RES, RES) and 0 <= em.min() and em.max() <= 1


def test_load_ema_generator_reads_full_checkpoints_and_plain_weights(stage2_runs):
    """The scripts' loader gives the EMA generator of a full checkpoint and the weights of a plain state dict."""
    from monai.bundle import ConfigParser

    from emgan_monai.handlers.ema import load_ema_generator

    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, "train.json"))
    parser.update({"bundle_root": str(BUNDLE), "em_channels": [4, 8, 8, 8]})
    ckpt = stage2_runs["dir"] / "checkpoints" / "checkpoint_final.pt"
    from_ckpt = load_ema_generator(parser.get(), ckpt, recalibrate=False)
    assert not from_ckpt.training
    ema = averaged_model_state(torch.load(ckpt, map_location="cpu", weights_only=True)["g_ema"])
    for k, v in from_ckpt.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)
    from_plain = load_ema_generator(parser.get(), stage2_runs["dir"] / "model.pt")
    for k, v in from_plain.state_dict().items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0)  # model.pt is that EMA


def test_paper_stage2_recipe_config_trains(stack_dir, tmp_path):
    """``train_paper.json``: the pix2pix recipe of the paper (kept for a GPU) still trains and saves its U-Net."""
    out = tmp_path / "paper2"
    bundle_run(
        ["train.json", "train_paper.json"],
        "--dataset_dir",
        str(stack_dir),
        "--output_dir",
        str(out),
        "--max_epochs",
        "1",
        *TINY,
    )
    net = _parsed(["train.json", "train_paper.json"], "network_def", resolution=RES)
    assert type(net).__name__ == "Pix2PixUNet"  # the paper's network, not the base config's
    net.load_state_dict(torch.load(out / "model.pt", map_location="cpu", weights_only=True))  # strict: its weights


@pytest.fixture(scope="module")
def two_stage_weights(stage1_run, stage2_runs, tmp_path_factory) -> Path:
    """``model.pt`` of the tiny runs: the state dict of inference.json's ``network_def`` (both stages)."""
    from emgan_monai.networks.two_stage_generator import TwoStageGenerator

    path = tmp_path_factory.mktemp("two_stage") / "model.pt"
    stages = [
        torch.load(d / "model.pt", map_location="cpu", weights_only=True) for d in (stage1_run, stage2_runs["dir"])
    ]
    torch.save(TwoStageGenerator.combine_state_dicts(*stages), path)
    return path


#: inference.json / evaluate.json with the tiny networks of the fixtures
TINY_TWO_STAGE = [*TINY_EM, "--resolution", str(RES), "--generator_channels", "[16, 8, 8, 8, 8]"]


def test_inference_pairs_and_no_overwrite(stage1_run, stage2_runs, two_stage_weights, tmp_path):
    """inference.json end to end on tiny networks: the files of each pair, equal to the in-memory draws of the same
    seed (data.drosophila_synthesis.generate with the two stages), a montage and synthesis.json; a second run refuses
    to replace anything, one with --overwrite true replaces the pairs and rewrites the record."""
    from emgan_monai.data.drosophila_synthesis import generate

    out = tmp_path / "pairs"
    args = [
        "--ckpt_path",
        str(two_stage_weights),
        *TINY_TWO_STAGE,
        "--num_pairs",
        "3",
        "--batch_size",
        "2",
        "--output_dir",
        str(out),
        "--seed",
        "7",
    ]
    bundle_run("inference.json", *args)
    mask_net = _parsed("train_mask.json", "network_def", generator_channels=[16, 8, 8, 8, 8])
    mask_net.load_state_dict(torch.load(stage1_run / "model.pt", map_location="cpu", weights_only=True))
    pad = json.loads((CONFIGS / "inference.json").read_text())["em_border_pad"]  # inference's only difference
    em_net = _parsed("train.json", "network_def", em_channels=[4, 8, 8, 8], em_border_pad=pad)
    em_net.load_state_dict(torch.load(stage2_runs["dir"] / "model.pt", map_location="cpu", weights_only=True))
    masks, ems = generate(mask_net, em_net, 3, [16, RES // 16, RES // 16], seed=7, batch_size=2)
    for i in range(3):
        mask_png = np.asarray(Image.open(out / f"mask_{i:04d}.png"))
        assert mask_png.dtype == np.uint8 and mask_png.shape == (RES, RES, 3)
        labels = tifffile.imread(out / f"mask_{i:04d}.tif")
        assert labels.dtype == np.uint8 and labels.shape == (RES, RES) and set(np.unique(labels)) <= {0, 1, 2}
        np.testing.assert_array_equal(labels, masks[i].argmax(0).numpy())
        np.testing.assert_array_equal(mask_png, (masks[i].numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
        em_png = np.asarray(Image.open(out / f"em_{i:04d}.png"))
        assert em_png.dtype == np.uint8 and em_png.shape == (RES, RES)
        em_tif = tifffile.imread(out / f"em_{i:04d}.tif")
        assert em_tif.dtype == np.uint16 and em_tif.shape == (RES, RES)
        np.testing.assert_array_equal(em_tif, np.round(ems[i, 0].numpy() * 65535).astype(np.uint16))
        np.testing.assert_array_equal(em_png, np.round(ems[i, 0].numpy() * 255).astype(np.uint8))
    assert not (out / "mask_0003.png").exists()
    assert np.asarray(Image.open(out / "montage.png")).ndim == 3
    record = json.loads((out / "synthesis.json").read_text())
    assert record["num_pairs"] == 3 and len(record["pairs"]) == 3 and record["seed"] == 7

    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    again = bundle_run("inference.json", *args, check=False)
    assert again.returncode != 0
    assert "already exists" in again.stdout + again.stderr
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert after == before
    bundle_run("inference.json", *args[:-1], "8", "--overwrite", "true")  # another seed, same names: replaced
    assert (out / "em_0000.tif").read_bytes() != before["em_0000.tif"][1]
    assert json.loads((out / "synthesis.json").read_text())["seed"] == 8


def test_inference_mask2em_any_size(stage2_runs, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    rgb = colours[rng.integers(0, 3, (45, 53))]  # odd, non-square, smaller than the 64 px window
    Image.fromarray(rgb).save(masks / "drawn.png")
    labels = rng.integers(0, 3, (77, 69)).astype(np.uint8)  # odd, larger than the window: several tiles
    tifffile.imwrite(masks / "labels.tif", labels)
    out = tmp_path / "em"
    bundle_run(
        "inference_mask2em.json",
        "--input_dir",
        str(masks),
        "--input_pattern",
        "*",
        "--output_dir",
        str(out),
        "--em_weights",
        str(stage2_runs["dir"] / "model.pt"),
        *TINY_EM,
        "--resolution",
        str(RES),
    )
    for stem, shape in (("drawn", (45, 53)), ("labels", (77, 69))):
        em = tifffile.imread(out / f"{stem}_em.tif")
        assert em.dtype == np.uint16 and em.shape == shape
        assert em.max() > 0
        png = np.asarray(Image.open(out / f"{stem}_em.png"))
        assert png.dtype == np.uint8 and png.shape == shape


def test_evaluate_metrics(stack_dir, two_stage_weights, tmp_path):
    out = tmp_path / "eval"
    bundle_run(
        EVALUATE,
        "--dataset_dir",
        str(stack_dir),
        "--output_dir",
        str(out),
        "--ckpt_path",
        str(two_stage_weights),
        *TINY_TWO_STAGE,
        "--n_train",
        "4",
        "--n_val",
        "2",
        "--num_generated",
        "4",
        "--segmenter_steps",
        "4",
        "--c2st_steps",
        "3",
        "--c2st_seeds",
        "2",
        "--c2st_patch",
        "32",
        "--downstream_steps",
        "2",
        "--downstream_seeds",
        "2",
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert {
        "c2st",
        "downstream_segmentation",
        "stage1_morphology",
        "stage2_quality_heldout",
        "stage2_fcn_score",
        "stage2_feature_distances",
        "stage2_texture",
        "stage2_relief",
    } <= set(metrics)
    relief = metrics["stage2_relief"]
    assert list(relief) == ["real_heldout", "generated_from_heldout_masks", "generated_from_generated_masks"]
    assert all(set(r) == {"x", "y"} and all(math.isfinite(v) for v in r.values()) for r in relief.values())
    grain = metrics["stage2_grain_anisotropy"]
    assert list(grain) == list(relief) and all(set(g) == {"x_over_y", "diagonals"} for g in grain.values())
    for key in ("hole_fraction", "n_mitochondria", "membrane_fraction", "membrane_components", "mito_area"):
        assert key in metrics["stage1_morphology"]
    per = metrics["stage1_morphology"]["periodicity"]
    assert {"spectral_peak", "autocorr_peak", "orientation_coherence", "diversity"} <= set(per)
    assert 0 <= per["orientation_coherence"]["real"] <= 1 and 0 <= per["orientation_coherence"]["fake_max"] <= 1
    assert per["diversity"]["n_mitochondria_std"]["real"] >= 0 and "stage1_morphology_vs_heldout" in metrics
    quality = metrics["stage2_quality_heldout"]
    assert {"ssim", "psnr", "mse"} <= set(quality)
    assert math.isfinite(quality["ssim"]) and -1 <= quality["ssim"] <= 1
    assert set(metrics["stage2_fcn_score"]) == {
        "dice_real_heldout",
        "dice_generated_from_heldout_masks",
        "dice_generated_from_generated_masks",
    }
    assert math.isfinite(metrics["stage2_feature_distances"]["frechet"])
    # texture of generated EM and same-run baselines vs the held-out sections (tiny data: no ordering asserted
    # between real_train and painted_masks, only that every value exists and noise adds high-frequency power)
    texture = metrics["stage2_texture"]
    assert list(texture["sets"]) == [
        "real_train",
        "blurred_real",
        "noisy_real",
        "painted_masks",
        "generated_from_heldout_masks",
        "generated_from_generated_masks",
    ]
    for name, row in texture["sets"].items():
        assert math.isfinite(row["texture_frechet"]) and row["texture_frechet"] >= 0, name
        assert math.isfinite(row["hf_power_ratio"]), name
    assert texture["sets"]["noisy_real"]["hf_power_ratio"] > 1
    assert texture["tile"] == RES // 2 and texture["n_draws"] == 4
    assert texture["sets"]["generated_from_heldout_masks"]["n_tiles"] == 4 * texture["n_heldout_tiles"]
    assert texture["draw_diversity"] >= 0 and all(math.isfinite(v) for v in texture["ratios"].values())
    # the headline: the classifier two-sample test with its reference points, and the downstream segmenters
    c2st = metrics["c2st"]
    assert list(c2st["rows"]) == list(C2ST_SETS) and c2st["rows"]["real_vs_real"]
    assert c2st["patch"] == 32 and c2st["steps"] == 3 and c2st["seeds"] == [0, 1]
    for name, row in c2st["rows"].items():
        assert 0 <= row["accuracy"] <= 1 and len(row["per_seed"]) == 2 and row["accuracy_sd"] >= 0, name
    downstream = metrics["downstream_segmentation"]
    assert list(downstream["dice"]) == ["synthetic_only", "real_only", "real_and_synthetic", "real_only_same_compute"]
    for way, dice in downstream["dice"].items():
        assert {"mito", "membrane", "mean"} == set(dice) and all(0 <= v <= 1 for v in dice.values()), way
    assert downstream["steps"] == 2 and downstream["n_real"] == 4 and downstream["n_generated"] == 4
    assert downstream["seeds"] == [0, 1] and set(downstream["both_minus_real"]) == {"mean", "sd", "per_seed"}
    assert downstream["steps_per_way"]["real_and_synthetic"] == downstream["steps_per_way"]["real_only_same_compute"]
    assert (out / "pca_masks.png").is_file() and (out / "metrics.md").is_file()
    markdown = (out / "metrics.md").read_text()
    assert markdown.startswith("## Headline: classifier two-sample test") and "## Downstream" in markdown
    assert "## Stage 2: texture realism" in markdown and "Diagnostics, not a judge" in markdown
    assert "## Stage 2: directional artefacts" in markdown and "| real_heldout |" in markdown
    grid = metrics["stage2_grid_peaks"]
    assert set(grid) == {"real_heldout", "generated_from_heldout_masks", "generated_from_generated_masks"}
    # period 8: the 33 lattice frequencies, every ratio a finite number (a zero-power image would give inf or nan)
    assert all(len(g["peaks"]) == 33 and all(math.isfinite(v) for v in g["peaks"].values()) for g in grid.values())
    ripple = metrics["stage2_ripple"]
    assert set(ripple) == set(grid) and all(len(r["profile"]) == 16 for r in ripple.values())
    assert all(math.isfinite(r["ripple"]) and r["ripple"] >= 0 for r in ripple.values())
    assert "| ripples |" in markdown


@pytest.mark.skipif(
    not (BUNDLE / "models" / "model.pt").is_file(),
    reason="shipped weights not in bundles/drosophila_skip_patch/models/",
)
def test_inference_with_shipped_weights_from_the_repository_and_the_bundle_folder(tmp_path):
    """The documented commands: from the repository root and from inside the bundle folder (``configs/...``)."""
    out = tmp_path / "shipped"
    bundle_run("inference.json", "--output_dir", str(out))
    assert len(list(out.glob("em_*.tif"))) == 16 and len(list(out.glob("mask_*.png"))) == 16
    assert (out / "montage.png").is_file()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    inside = tmp_path / "inside"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            "configs/inference.json",
            "--output_dir",
            str(inside),
            "--num_pairs",
            "4",
        ],
        cwd=BUNDLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the first batch (4 pairs) of the same seed: the same latents and noise, the same files
    for name in ("em_0000.tif", "em_0003.png", "mask_0001.tif", "mask_0002.png"):
        assert (inside / name).read_bytes() == (out / name).read_bytes(), name


def test_inference_config_has_the_inference_properties():
    """``create_workflow(inference.json, "inference").check_properties()``: nothing missing (MONAI Label, the zoo)."""
    from monai.bundle import create_workflow

    workflow = create_workflow(
        config_file=str(CONFIGS / "inference.json"), workflow_type="inference", bundle_root=str(BUNDLE)
    )
    assert not workflow.check_properties()


def _tiny_two_stage(seed: int = 0, **kwargs):
    from emgan_monai.networks.two_stage_generator import TwoStageGenerator

    torch.manual_seed(seed)
    net = TwoStageGenerator(
        _parsed("inference.json", "mask_network_def", generator_channels=[16, 8, 8, 8, 8]),
        _parsed("inference.json", "em_network_def", em_channels=[4, 8, 8, 8]),
        **kwargs,
    )
    for m in net.modules():  # noise scales of 0 would hide a difference in the injected noise
        if type(m).__name__ == "NoiseInjection":
            torch.nn.init.constant_(m.weight, 0.5)
    return net.eval()


def test_two_stage_generator_scripts_and_matches_the_python_path():
    """``torch.jit.script`` (what ``ckpt_export`` does): the same output as the Python module for the same seed when
    the Python path neither drops small mitochondria nor closes outlines; with them (the default) the masks differ
    only where pixels change class, and the outputs are (B, 4, H, W): EM in [0, 1] then a one-hot mask."""
    net = _tiny_two_stage(close_membranes=False, min_mito_size=0)
    scripted = torch.jit.script(net)
    z = torch.randn(3, 16, 4, 4)
    with torch.no_grad():
        torch.manual_seed(11)
        eager = net(z)
        torch.manual_seed(11)
        script = scripted(z)
    assert eager.shape == (3, 4, 64, 64)
    torch.testing.assert_close(script, eager, rtol=0, atol=0)
    assert 0 <= eager[:, 0].min() and eager[:, 0].max() <= 1
    torch.testing.assert_close(eager[:, 1:].sum(1), torch.ones(3, 64, 64))
    # the default module (closing, speck removal) scripts too, and runs the plain decoding when scripted
    default = _tiny_two_stage()
    with torch.no_grad():
        torch.manual_seed(11)
        closed = default(z)
        torch.manual_seed(11)
        plain = torch.jit.script(default)(z)
    torch.testing.assert_close(plain, script, rtol=0, atol=0)
    assert closed.shape == plain.shape


def test_two_stage_generator_draws_what_the_stage_functions_draw():
    """network_def (one module) == data.drosophila_synthesis.draw_masks + stage 2 for the same latents and seed."""
    from emgan_monai.data.drosophila_synthesis import draw_masks

    net = _tiny_two_stage()
    z = torch.randn(2, 16, 4, 4)
    with torch.no_grad():
        torch.manual_seed(5)
        out = net(z)
        torch.manual_seed(5)
        mask = draw_masks(net.mask_generator, z)
        em = net.em_generator(mask).clamp(0, 1)
    torch.testing.assert_close(out, torch.cat([em, mask], 1), rtol=0, atol=0)


@pytest.mark.skipif(
    not all((BUNDLE / "models" / f).is_file() for f in ("model.pt", "mask_generator.pt", "em_generator.pt")),
    reason="shipped weights not in bundles/drosophila_skip_patch/models/",
)
def test_shipped_model_is_both_stages():
    """models/model.pt (inference.json's network_def) == mask_generator.pt + em_generator.pt, and loads strictly."""
    from emgan_monai.networks.two_stage_generator import TwoStageGenerator

    load = lambda name: torch.load(BUNDLE / "models" / name, map_location="cpu", weights_only=True)  # noqa: E731
    model, mask, em = load("model.pt"), load("mask_generator.pt"), load("em_generator.pt")
    want = TwoStageGenerator.combine_state_dicts(mask, em)
    assert list(model) == list(want)
    for k in want:
        torch.testing.assert_close(model[k], want[k], rtol=0, atol=0)
    _parsed("inference.json", "network_def").load_state_dict(model)
    _parsed("inference_mask2em.json", "network_def").load_state_dict(em)


#: bounds for the shipped stage-1 generator at 256 px. Measured on the real masks of stack 1 (area + argmax):
#: pairwise pixel disagreement between sections 0.33-0.37, strongest spectral peak / radial mean 9-14 (mean 11.5),
#: autocorrelation outside the central lobe 0.10-0.26, membrane orientation coherence 0.04-0.08. The collapsed
#: generator shipped before issue 11 (a 64 px tiling): disagreement 0.04-0.06, spectral peak 140-220,
#: autocorrelation 0.74-0.80. The streaky 0.4.0 generator: spectral peaks up to 33 (mean 18.6), orientation
#: coherence 0.43-0.49. The 0.5.0 generator (these 8 samples): peaks 10.6-12.5, coherence 0.02-0.09.
MIN_DISAGREEMENT = 0.10
MAX_SPECTRAL_PEAK = 20.0
MAX_MEAN_SPECTRAL_PEAK = 1.2 * 11.5
MAX_AUTOCORR = 0.4
MAX_ORIENTATION_COHERENCE = 0.15
#: morphology of the shipped generator's samples (8 at 256 px) against the real sections (all 20, area + argmax):
#: the targets of issue 11 -- mitochondria per image (real 19.2), pooled mitochondrion area (186 px) and membrane
#: fraction (0.213) within 20 %, membrane skeleton components (6.25) within 2x, under 5 % of mitochondria with
#: holes. 0.5.0 on these samples: 20.8, 170 px, 0.209, 7.8, 1.2 %; 0.4.0: 22.6, 165 px, 0.201, 9.7, 4.2 % (64
#: samples); 0.2.0: 19.2, 144 px, 0.150, 285, 1.2 %.
MITO_PER_IMAGE = (0.8 * 19.2, 1.2 * 19.2)
MITO_AREA = (0.8 * 186.3, 1.2 * 186.3)
MEMBRANE_FRACTION = (0.8 * 0.2132, 1.2 * 0.2132)
MAX_SKELETON_COMPONENTS = 2 * 6.25
MAX_HOLE_FRACTION = 0.05


@pytest.mark.skipif(
    not (BUNDLE / "models" / "mask_generator.pt").is_file(),
    reason="shipped stage-1 weights not in bundles/drosophila_skip_patch/models/",
)
def test_shipped_mask_generator_is_not_collapsed_and_draws_tissue():
    """Samples of different seeds must differ like real sections do, no sample may be a periodic tiling or a set of
    parallel streaks, and the samples' morphology must meet the targets of issue 11 (mitochondria, membranes,
    closed outlines, holes)."""
    from emgan_monai.data.drosophila_synthesis import generate
    from emgan_monai.metrics.mask_structure import mask_diversity, mask_periodicity
    from emgan_monai.metrics.morphology import mask_morphology

    net = _parsed("inference.json", "mask_network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "mask_generator.pt", map_location="cpu", weights_only=True))
    latent = _parsed("inference.json", "latent_shape")
    masks, _ = generate(net, None, 8, latent, seed=123)
    assert masks.shape == (8, 3, 256, 256)
    div = mask_diversity(list(masks.numpy()))
    assert div["min_pixel_disagreement"] > MIN_DISAGREEMENT, div
    per = [mask_periodicity(m) for m in masks.numpy()]
    assert max(p["spectral_peak"] for p in per) < MAX_SPECTRAL_PEAK, per
    assert np.mean([p["spectral_peak"] for p in per]) < MAX_MEAN_SPECTRAL_PEAK, per
    assert max(p["autocorr_peak"] for p in per) < MAX_AUTOCORR, per
    assert max(p["orientation_coherence"] for p in per) < MAX_ORIENTATION_COHERENCE, per
    stats = [mask_morphology(m) for m in masks.numpy()]
    n_mito = np.mean([s["n_mitochondria"] for s in stats])
    area = np.mean([a for s in stats for a in s["mito_areas"]])
    membrane = np.mean([s["membrane_fraction"] for s in stats])
    components = np.mean([s["membrane_components"] for s in stats])
    holes = np.mean([s["hole_fraction"] for s in stats])
    assert MITO_PER_IMAGE[0] <= n_mito <= MITO_PER_IMAGE[1], n_mito
    assert MITO_AREA[0] <= area <= MITO_AREA[1], area
    assert MEMBRANE_FRACTION[0] <= membrane <= MEMBRANE_FRACTION[1], membrane
    assert components <= MAX_SKELETON_COMPONENTS, components
    assert holes < MAX_HOLE_FRACTION, holes
    assert np.std([s["n_mitochondria"] for s in stats]) > 0.5  # samples differ in content, not only in layout


def test_multi_gpu_train_two_ranks_on_cpu(stack_dir, tmp_path):
    """``multi_gpu_train.json`` merged after ``train.json`` under ``torchrun --nproc_per_node=2`` (gloo on CPU):
    DDP keeps the two ranks' generators identical; only rank 0 writes checkpoints."""
    out = tmp_path / "ddp"
    extra = tmp_path / "save_each_rank.json"
    extra.write_text(
        json.dumps(
            {
                "finalize": [
                    "$torch.save(@network.state_dict(), os.path.join(@output_dir, 'rank' + str(dist.get_rank()) + '.pt'))",
                    "$emgan_monai.engines.utils.leave_process_group()",
                ]
            }
        )
    )
    files = [*config_files(BUNDLE, "train.json", "multi_gpu_train.json"), extra]
    configs = "[" + ",".join(f"'{p}'" for p in files) + "]"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        configs,
        "--dataset_dir",
        str(stack_dir),
        "--output_dir",
        str(out),
        "--max_epochs",
        "1",
        "--val_interval",
        "1",
        "--n_train",
        "4",
        "--n_val",
        "2",
        "--resolution",
        "32",
        "--discriminator_channels",
        "8",
        "--batch_size",
        "1",
        *TINY_EM,
        "--device",
        "$torch.device('cpu')",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    w0 = torch.load(out / "rank0.pt", map_location="cpu", weights_only=True)
    w1 = torch.load(out / "rank1.pt", map_location="cpu", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=f"ranks differ in {k}")
    # DistributedSampler: each rank saw half of the 4 training sections (batch 1 -> 2 iterations in the epoch)
    ckpt = torch.load(out / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert ckpt["trainer"]["epoch_length"] == 2 and ckpt["trainer"]["iteration"] == 2
    # rank 0 alone saved; model.pt is the plain (unwrapped) state dict of the EMA generator of the checkpoint
    saved = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in saved) and saved.keys() == w0.keys()
    ema = averaged_model_state(ckpt["g_ema"])
    for k in saved:
        torch.testing.assert_close(saved[k], ema[k], rtol=0, atol=0)


#: bounds for the shipped stage-2 generator on the real held-out sections 16-19 of stack 1 at 256 px, measured
#: in the same way by ``evaluate.json`` (docs/README.md): see the values there; a smooth, deterministic
#: generator (the pix2pix U-Net shipped before issue 12) fails every one of them.
MIN_DRAW_DIFFERENCE = 0.01  # mean |draw 1 - draw 2| on one mask (0 for a deterministic generator)
HF_POWER_RANGE = (0.5, 2.0)  # high-frequency power of generated / real held-out sections
MAX_TEXTURE_VS_PAINTED = 0.2  # texture Frechet of generated / of naively painted masks (issue 12: <= 1/5)
MAX_TEXTURE_VS_REAL = 3.0  # texture Frechet of generated / of real training sections (issue 12: within 3x)


@pytest.fixture
def shipped_stage2(real_data):
    """The shipped stage 2 (``models/em_generator.pt``) and the real sections of stack 1 at 256 px, split 16 / 4:
    ``(net, (train_masks, train_em), (val_masks, val_em))``; skips without the weights or the data."""
    if not (BUNDLE / "models" / "em_generator.pt").is_file():
        pytest.skip("shipped stage-2 weights missing")
    stack = real_data / "drosophila_vnc" / "stack1"
    if not stack.is_dir():
        pytest.skip(f"real data not found at {stack}")
    from monai.transforms import Compose

    from emgan_monai.data.drosophila import drosophila_datalist, load_sections, split_sections

    mask_tf = Compose(_parsed(EVALUATE, "mask_preprocessing"))
    train, val = split_sections(drosophila_datalist(stack), n_train=16, n_val=4)
    net = _parsed("inference_mask2em.json", "network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "em_generator.pt", map_location="cpu", weights_only=True))
    return net, load_sections(train, 256, mask_transform=mask_tf), load_sections(val, 256, mask_transform=mask_tf)


def test_shipped_em_generator_keeps_texture(shipped_stage2):
    """Mask -> EM on the real held-out masks: two noise draws differ, the grain (high-frequency power) is that of
    real sections, and the texture distance stays far below naive painting; the FCN structure is checked by
    evaluate.json."""
    from emgan_monai.evaluation.drosophila import evaluate_texture, stage2_draws

    net, (tr_masks, tr_em), (va_masks, va_em) = shipped_stage2
    fake = stage2_draws(net, va_masks, n_draws=2, seed=0)
    tex = evaluate_texture(tr_masks, tr_em, va_masks, va_em, fake)
    assert tex["draw_diversity"] > MIN_DRAW_DIFFERENCE, tex["draw_diversity"]
    rows = tex["sets"]
    hf = rows["generated_from_heldout_masks"]["hf_power_ratio"]
    assert HF_POWER_RANGE[0] < hf < HF_POWER_RANGE[1], hf
    gen, paint, real = (
        rows[k]["texture_frechet"] for k in ("generated_from_heldout_masks", "painted_masks", "real_train")
    )
    assert gen < MAX_TEXTURE_VS_PAINTED * paint, (gen, paint)
    assert gen < MAX_TEXTURE_VS_REAL * real, (gen, real)


#: bounds for the shipped stage-2 generator's EM from the held-out masks (0.9.0; docs/README.md): the judge of
#: evaluate.json (64-px patches, 400 steps) gives 0.51 with three judges (0.8.1: 0.84-0.88); the relief along x is
#: +0.33 for 0.8.1, about 0 for real sections; the grain direction -0.15 for 0.8.1, +0.05 for real sections.
MAX_JUDGE_ACCURACY = 0.70
MAX_RELIEF_X = 0.30
MAX_GRAIN_ANISOTROPY = 0.10
#: 0.12.0 (docs/README.md, phase 5): ripples along the membranes (sd of the grey level 4-16 px in, in image sd) real
#: 0.026, 0.9.0 0.080, phase 3 0.117, 0.12.0 about 0.04; the finest diagonal grain beyond 0.5 cycles / px, log10 power
#: minus that of the real held-out sections: phase 4 +0.26 (a faint cross-hatch), 0.9.0 -0.07, 0.12.0 about +0.05;
#: fine grain in the outer 8 px over that inside: real 0.98, the 0.12.0 network without its border pad 1.28 (a frame).
MAX_RIPPLE = 0.06
MAX_CORNER_EXCESS = 0.15
EDGE_GRAIN_RANGE = (0.8, 1.15)


def test_shipped_em_generator_is_hard_to_tell_from_real(shipped_stage2):
    """The headline judge of evaluate.json (two judges here) cannot tell the shipped stage 2's EM from the held-out
    sections much better than chance, its membranes and grain have no preferred side or direction, and it has none of
    the artefacts of earlier phases: ripples along the membranes, a fine diagonal cross-hatch, a frame of grain."""
    from emgan_monai.evaluation.drosophila import heldout_draws_set, stage2_draws
    from emgan_monai.losses.diversity import DiversityLoss
    from emgan_monai.metrics.relief import distance_profile, membrane_relief
    from emgan_monai.metrics.texture import corner_power, grain_anisotropy
    from emgan_monai.metrics.two_sample import two_sample_table

    net, (_, tr_em), (va_masks, va_em) = shipped_stage2
    draws = stage2_draws(net, va_masks, n_draws=4, seed=0)
    judge = two_sample_table({"g": heldout_draws_set(tr_em, va_em, draws)}, patch=64, steps=400, seeds=2)["rows"]["g"]
    assert judge["accuracy"] < MAX_JUDGE_ACCURACY, judge
    relief = membrane_relief(draws[0], va_masks)
    assert abs(relief["x"]) < MAX_RELIEF_X and abs(relief["y"]) < MAX_RELIEF_X, relief
    grain = grain_anisotropy(draws[0])
    assert abs(grain["x_over_y"]) < MAX_GRAIN_ANISOTROPY, grain
    every = draws.flatten(0, 1)
    ripple = distance_profile(every, va_masks.repeat(len(draws), 1, 1, 1))["ripple"]
    assert ripple < MAX_RIPPLE, ripple
    excess = corner_power(every)["diagonal_45"] - corner_power(va_em)["diagonal_45"]
    assert excess < MAX_CORNER_EXCESS, excess

    def edge_over_inside(x: torch.Tensor, m: int = 8) -> float:
        """Mean fine grain (|x - blur_1px(x)|) in the outer ``m`` px over that inside them."""
        size = x.shape[-1] * x.shape[-2]
        inner = (x.shape[-1] - 2 * m) * (x.shape[-2] - 2 * m)
        whole = float(DiversityLoss(sigma=1.0).difference(x, torch.zeros_like(x)))
        inside = float(DiversityLoss(sigma=1.0, margin=m).difference(x, torch.zeros_like(x)))
        return (whole * size - inside * inner) / (size - inner) / inside

    ratio = edge_over_inside(draws[0])
    assert EDGE_GRAIN_RANGE[0] < edge_over_inside(va_em) < EDGE_GRAIN_RANGE[1]  # the bounds hold for real sections
    assert EDGE_GRAIN_RANGE[0] < ratio < EDGE_GRAIN_RANGE[1], ratio


def test_real_stack_train_then_mask2em(real_data, tmp_path):
    """Stage 2 (``train.json``) for one epoch of two iterations on the REAL stack 1 at 64 px, then
    ``inference_mask2em.json`` with its weights on two real held-out masks (area + argmax to 64 px, as RGB PNG)."""
    data = real_data / "drosophila_vnc"
    if not (data / "stack1" / "raw").is_dir():
        pytest.skip(f"real Drosophila data not found at {data / 'stack1'}")
    from emgan_monai.data.drosophila import drosophila_datalist, load_sections, split_sections

    run = tmp_path / "run"
    proc = bundle_run(
        "train.json",
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(run),
        "--max_epochs",
        "1",
        "--batch_size",
        "2",
        "--iterations_per_epoch",
        "2",
        "--val_interval",
        "1",
        "--save_interval",
        "1",
        *TINY,
        *TINY_EM,
    )
    assert proc.returncode == 0
    log = proc.stdout + proc.stderr
    assert "Epoch[1] Complete" in log and "val_ssim" in log, log[-3000:]
    ckpt = torch.load(run / "checkpoints" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"generator", "g_ema", "discriminator", "g_optimizer", "d_optimizer", "trainer", "rng"} <= set(ckpt)
    assert ckpt["trainer"]["iteration"] == 2 and ckpt["trainer"]["epoch_length"] == 2
    load_trained_network(CONFIGS / "train.json", BUNDLE, run / "model.pt", em_channels=[4, 8, 8, 8])

    # two real held-out masks (sections 4 and 5 of the n_train=4 / n_val=2 split) as colour PNGs; one cropped to an
    # odd, non-square shape
    _, val = split_sections(drosophila_datalist(data / "stack1"), n_train=4, n_val=2)
    masks, _ = load_sections(val, RES)
    assert masks.shape == (2, 3, RES, RES)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)  # mitochondria, membrane, background
    rgb = colours[masks.argmax(1).numpy()]
    assert len(np.unique(masks.argmax(1).numpy())) >= 2  # real structure, not an empty mask
    masks_dir = tmp_path / "masks"
    masks_dir.mkdir()
    shapes = {"real_a": (RES, RES), "real_b": (57, 50)}
    Image.fromarray(rgb[0]).save(masks_dir / "real_a.png")
    Image.fromarray(rgb[1][:57, :50]).save(masks_dir / "real_b.png")
    out = tmp_path / "em"
    bundle_run(
        "inference_mask2em.json",
        "--input_dir",
        str(masks_dir),
        "--output_dir",
        str(out),
        "--em_weights",
        str(run / "model.pt"),
        *TINY_EM,
        "--resolution",
        str(RES),
    )
    for stem, shape in shapes.items():
        em = tifffile.imread(out / f"{stem}_em.tif")
        assert em.dtype == np.uint16 and em.shape == shape
        assert np.isfinite(em).all() and em.std() > 0, (stem, em.min(), em.max())
        png = np.asarray(Image.open(out / f"{stem}_em.png"))
        assert png.dtype == np.uint8 and png.shape == shape and png.std() > 0
