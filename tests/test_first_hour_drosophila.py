"""A new user's first hour with ``drosophila_skip_patch`` (issue 21), through the real entry point and configs.

``inference_mask2em.json`` states and checks its input contract (RGB colour mask, label map 0/1/2, one-hot stack; 2D;
values), brings every mask to the model's pixel size (18.4 nm: 4.6 nm ssTEM pixels, 1024 px sections downsampled to
256 px) and the EM back to the input's grid and pixel size, refuses colliding output names before writing anything,
processes every good file and lists the bad ones (exit 1); ``inference.json`` tags its TIFFs with 18.4 nm pixels and
rewrites ``synthesis.json`` every run. The mask -> EM runs use a tiny stage-2 network without noise injection
(random weights: a deterministic function of the mask), so equal masks must give equal EM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import require_data
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "drosophila_skip_patch"
MODEL_NM = 18.4
TINY_EM = ["--em_channels", "[4, 8, 8, 8]", "--em_noise", "false"]
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)  # mitochondria, membrane, background


def _labels(shape=(40, 48), seed=0) -> np.ndarray:
    """A plausible label map (rows, columns): background with a membrane line and a mitochondrion."""
    lab = np.full(shape, 2, np.uint8)
    lab[:, shape[1] // 2 : shape[1] // 2 + 2] = 1
    lab[5:15, 4:16] = 0
    rng = np.random.default_rng(seed)
    lab[rng.integers(0, shape[0], 20), rng.integers(0, shape[1], 20)] = 1
    return lab


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    from emgan_monai.networks import NoiseUNet

    torch.manual_seed(0)
    net = NoiseUNet(
        spatial_dims=2, in_channels=3, out_channels=1, channels=[4, 8, 8, 8], noise=False, out_act="sigmoid"
    )
    path = tmp_path_factory.mktemp("weights") / "em_tiny.pt"
    torch.save(net.state_dict(), path)
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``emgan-monai`` entry point (or ``python -m emgan_monai.cli``)."""
    exe = Path(sys.executable).parent / "emgan-monai"
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "emgan_monai.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300, check=False)


def mask2em(masks: Path, out: Path, weights: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli(
        "run",
        "drosophila_skip_patch",
        "inference_mask2em",
        "--input_dir",
        str(masks),
        "--input_pattern",
        "*",
        "--output_dir",
        str(out),
        "--em_weights",
        str(weights),
        *TINY_EM,
        "--device",
        "$torch.device('cpu')",
        *extra,
        cwd=masks.parent,
    )


def _failures(stderr: str) -> dict[str, str]:
    """``file name -> reason`` of the failure list printed at the end of a batch run."""
    lines = stderr.splitlines()
    head = next(i for i, line in enumerate(lines) if "input(s) failed:" in line)
    out = {}
    for line in lines[head + 1 :]:
        path, reason = line.strip().split(": ", 1)
        out[Path(path).name] = reason
    return out


def _pixel_size(path: Path) -> tuple[float, str]:
    with tifffile.TiffFile(path) as tif:
        num, den = tif.pages.first.tags["XResolution"].value
        return den / num, (tif.imagej_metadata or {}).get("unit", "")


def test_label_map_rgb_and_onehot_stack_give_the_same_em(tmp_path, tiny_weights):
    """The label map TIFF (once read as colours, i.e. black) is read as labels: the same EM as the RGB drawing and the
    one-hot stack of the same mask; sizes kept, the uncalibrated inputs tagged with the model's pixel size."""
    lab = _labels()
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "labels.tif", lab)
    Image.fromarray(COLOURS[lab]).save(masks / "drawn.png")
    tifffile.imwrite(masks / "onehot.tif", np.eye(3, dtype=np.uint8)[lab].transpose(2, 0, 1))  # 3 planes of 0/1
    out = tmp_path / "out"
    proc = mask2em(masks, out, tiny_weights)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ems = {stem: tifffile.imread(out / f"{stem}_em.tif") for stem in ("labels", "drawn", "onehot")}
    for stem, em in ems.items():
        assert em.shape == lab.shape and em.dtype == np.uint16 and em.std() > 0, stem
        assert _pixel_size(out / f"{stem}_em.tif") == pytest.approx((MODEL_NM, "nm")), stem
    np.testing.assert_array_equal(ems["labels"], ems["drawn"])
    np.testing.assert_array_equal(ems["onehot"], ems["drawn"])
    assert "states no pixel size; assuming the model's 18.4 nm/px" in proc.stdout + proc.stderr


def test_bad_masks_are_listed_and_good_ones_processed(tmp_path, tiny_weights):
    lab = _labels()
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "a_good.tif", lab)
    Image.fromarray(np.full((*lab.shape, 3), (255, 255, 0), np.uint8)).save(masks / "b_yellow.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (*lab.shape, 3)).astype(np.uint8)).save(
        masks / "c_noise.png"
    )
    tifffile.imwrite(masks / "d_stack.tif", np.stack([lab] * 3), imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(masks / "e_label_planes.tif", np.stack([lab] * 3))  # 3 planes of 0/1/2 (read as RGB samples)
    tifffile.imwrite(masks / "f_binary.tif", (lab == 1).astype(np.uint8))  # a membrane mask, not a label map
    out = tmp_path / "out"
    proc = mask2em(masks, out, tiny_weights)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "5 of 6 input(s) failed:" in proc.stderr
    failed = _failures(proc.stderr)
    assert set(failed) == {"b_yellow.png", "c_noise.png", "d_stack.tif", "e_label_planes.tif", "f_binary.tif"}
    assert "not a colour mask" in failed["b_yellow.png"] and "not a colour mask" in failed["c_noise.png"]
    assert "a stack of 3 planes of 40 x 48 px" in failed["d_stack.tif"]
    assert "no bright colour" in failed["e_label_planes.tif"]
    assert "without background" in failed["f_binary.tif"]
    assert sorted(p.name for p in out.iterdir()) == ["a_good_em.png", "a_good_em.tif"]


@pytest.mark.parametrize(
    "name, write, problem",
    [
        ("float.tif", lambda p: tifffile.imwrite(p, _labels().astype(np.float32) + 0.25), "not whole numbers"),
        (
            "labels9.tif",
            lambda p: tifffile.imwrite(p, np.where(_labels() == 1, 9, _labels()).astype(np.uint8)),
            "label values [9] outside the labels (0, 1, 2)",
        ),
        (
            "rgb16.tif",
            lambda p: tifffile.imwrite(p, (COLOURS[_labels()].astype(np.uint16) * 257), photometric="rgb"),
            "colour values outside 0..255",
        ),
        ("palette.png", lambda p: Image.fromarray(_labels()).convert("P").save(p), "indexed-colour (palette) PNG"),
        ("binary_planes.tif", lambda p: tifffile.imwrite(p, np.ones((3, 40, 48), np.uint8)), "not one-hot"),
    ],
)
def test_contract_of_the_real_preprocessing(tmp_path, name, write, problem):
    """``inference_mask2em.json``'s own preprocessing refuses what would decode into a wrong mask, naming the file."""
    from monai.bundle import ConfigParser

    from emgan_monai.errors import DataError

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference_mask2em.json"))
    parser["bundle_root"] = str(BUNDLE)
    path = tmp_path / name
    write(path)
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("preprocessing")({"image": str(path)})
    chain, exc = [], info.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__
    errors = [e for e in chain if isinstance(e, DataError)]
    assert errors and errors[0].filename == str(path) and problem in errors[0].problem, chain


def test_pixel_size_resampled_refused_or_overridden(tmp_path, tiny_weights):
    """A mask calibrated at 4.6 nm (ImageJ, nm) is brought to 18.4 nm and its EM back to 4.6 nm at the input's size; one
    at 0.0184 um/px (resolution tags in cm) is used as it is and keeps its unit; one at 500 nm/px is refused with
    both sizes and the key; ``--pixel_size`` overrides a file's calibration."""
    lab = _labels((16, 20))
    masks = tmp_path / "masks"
    masks.mkdir()
    fine = np.kron(lab, np.ones((4, 4), np.uint8))
    tifffile.imwrite(masks / "fine.tif", fine, imagej=True, resolution=(1 / 4.6, 1 / 4.6), metadata={"unit": "nm"})
    tifffile.imwrite(masks / "model.tif", lab, resolution=(1e4 / 0.0184, 1e4 / 0.0184), resolutionunit="CENTIMETER")
    tifffile.imwrite(masks / "coarse.tif", lab, imagej=True, resolution=(1 / 500, 1 / 500), metadata={"unit": "nm"})
    out = tmp_path / "out"
    proc = mask2em(masks, out, tiny_weights)
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = _failures(proc.stderr)
    assert set(failed) == {"coarse.tif"}
    assert "500 nm/px" in failed["coarse.tif"] and "18.4 nm/px" in failed["coarse.tif"]
    assert "--pixel_size" in failed["coarse.tif"]
    em_fine = tifffile.imread(out / "fine_em.tif")
    assert em_fine.shape == fine.shape and _pixel_size(out / "fine_em.tif") == pytest.approx((4.6, "nm"))
    em_model = tifffile.imread(out / "model_em.tif")
    assert em_model.shape == lab.shape and _pixel_size(out / "model_em.tif") == pytest.approx((0.0184, "micron"))
    # the 4.6 nm mask is the 18.4 nm one at 4x: at the model's size it is the same mask, so the same EM, brought
    # back to 4.6 nm by bilinear interpolation
    up = torch.nn.functional.interpolate(
        torch.as_tensor(em_model, dtype=torch.float64)[None, None], scale_factor=4, mode="bilinear", align_corners=False
    )[0, 0].numpy()
    assert np.abs(up - em_fine).max() <= 2

    (masks / "fine.tif").unlink()
    (masks / "model.tif").unlink()
    proc = mask2em(masks, tmp_path / "override", tiny_weights, "--pixel_size", "18.4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    em = tmp_path / "override" / "coarse_em.tif"
    assert tifffile.imread(em).shape == lab.shape and _pixel_size(em) == pytest.approx((MODEL_NM, "nm"))


def test_colliding_output_names_are_refused_before_writing(tmp_path, tiny_weights):
    masks = tmp_path / "masks"
    masks.mkdir()
    lab = _labels()
    tifffile.imwrite(masks / "x.tif", lab)
    tifffile.imwrite(masks / "x.tiff", lab)
    Image.fromarray(COLOURS[lab]).save(masks / "x.png")
    out = tmp_path / "out"
    proc = mask2em(masks, out, tiny_weights)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "would both be written as" in last and "x_em" in last
    assert "x.png" in last and "x.tif" in last and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())
    # narrowing the pattern processes one of them
    proc = mask2em(masks, out, tiny_weights, "--input_pattern", "*.tiff")
    assert proc.returncode == 0 and sorted(p.name for p in out.iterdir()) == ["x_em.png", "x_em.tif"]
    # a second run refuses to replace them, in one line, before any work
    proc = mask2em(masks, out, tiny_weights, "--input_pattern", "*.tiff")
    assert proc.returncode == 2 and "already exists" in proc.stderr and "--overwrite true" in proc.stderr


def test_mistyped_key_is_refused_with_a_suggestion(tmp_path):
    proc = cli("run", "drosophila_skip_patch", "inference_mask2em", "--input_folder", "x", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        (
            "error: unknown key '--input_folder' for drosophila_skip_patch/inference_mask2em.json; did you mean "
            "'--input_dir'? (list them with: emgan-monai keys drosophila_skip_patch inference_mask2em)"
        )
    ]


def test_keys_are_documented_in_the_configs_and_the_readme(capsys):
    from emgan_monai.cli import main

    readme = (BUNDLE / "docs" / "README.md").read_text()
    for config in ("inference", "inference_mask2em"):
        assert main(["keys", "drosophila_skip_patch", config]) == 0
        out = capsys.readouterr().out.splitlines()
        keys = [line.split()[0] for line in out if line.startswith("--")]
        assert keys and all(out[out.index(line) + 1].startswith("    ") for line in out if line.startswith("--")), out
        for key in keys:
            if key not in ("--bundle_root", "--dataset_dir"):
                assert f"`{key[2:]}`" in readme, (config, key)
    assert {"--pixel_size", "--model_pixel_size", "--tile_size"} <= {
        line.split()[0] for line in out if line.startswith("--")
    }


@pytest.mark.skipif(not (BUNDLE / "models" / "model.pt").is_file(), reason="shipped weights not in the bundle")
def test_synthetic_pairs_carry_the_model_pixel_size_and_a_stale_record_never_blocks(tmp_path):
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "synthesis.json").write_text('{"from": "an earlier cryo-ET run"}')
    proc = cli(
        "run",
        "drosophila_skip_patch",
        "inference",
        "--output_dir",
        str(out),
        "--num_pairs",
        "1",
        "--resolution",
        "64",
        "--device",
        "$torch.device('cpu')",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("em_0000.tif", "mask_0000.tif"):
        assert _pixel_size(out / name) == pytest.approx((MODEL_NM, "nm")), name
    record = json.loads((out / "synthesis.json").read_text())
    assert record["num_pairs"] == 1 and record["pixel_size_nm"] == MODEL_NM


@pytest.mark.needs_data
def test_a_real_full_resolution_mask_is_downsampled_as_in_training(tmp_path):
    """Section 16 of the real stack at its own 4.6 nm, as a calibrated label TIFF: the config's preprocessing gives
    exactly the 256 px training mask (area + argmax), and the EM comes back at 1024 px and 4.6 nm."""
    stack = require_data("drosophila_vnc", "stack1")
    from monai.bundle import ConfigParser

    from emgan_monai.data.drosophila import (
        build_mask,
        drosophila_datalist,
        load_sections,
    )
    from emgan_monai.io import read_image

    item = drosophila_datalist(stack, sections=[16])
    mito, membrane = read_image(item[0]["mito"])[0], read_image(item[0]["membrane"])[0]
    labels = build_mask(mito, membrane).argmax(0).astype(np.uint8)
    assert labels.shape == (1024, 1024)
    path = tmp_path / "masks" / "s16.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, labels, imagej=True, resolution=(1 / 4.6, 1 / 4.6), metadata={"unit": "nm"})
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference_mask2em.json"))
    parser["bundle_root"] = str(BUNDLE)
    image = parser.get_parsed_content("preprocessing")({"image": str(path)})["image"]
    expected, _ = load_sections(item, 256)
    assert tuple(image.shape) == (3, 256, 256)
    np.testing.assert_array_equal(image.numpy(), expected[0].numpy())
