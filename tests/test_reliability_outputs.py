"""Inference outputs and weights through the drosophila inference configs: no silent overwrite, no writing outside
``output_dir``, and weights that hold pickled code are refused (``weights_only=True``) without running it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from emgan_monai.bundle_utils import config_files, save_json
from emgan_monai.errors import UnsafePathError
from emgan_monai.io import SafeSaveImaged, write_image
from emgan_monai.io.save import safe_output_path, sanitize_filename
from emgan_monai.visualize import onehot_to_rgb

CONFIGS = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch" / "configs"


def _parser(name: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(config_files(CONFIGS.parent, name))
    parser.update({"device": "$torch.device('cpu')", **overrides})
    return parser


def _cause_chain(err: BaseException) -> list[BaseException]:
    chain = [err]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    return chain


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _weights(tmp: Path, parser: ConfigParser, key: str, name: str) -> Path:
    path = tmp / name
    torch.save(parser.get_parsed_content(key).state_dict(), path)
    return path


# ------------------------------------------------------------------------------------- mask -> EM (SafeSaveImaged)
@pytest.fixture
def mask2em(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    rng = np.random.default_rng(0)
    for name in ("s00.png", "%2e%2e%2f%2e%2e%2fevil.png"):  # the second: an URL-encoded "../../evil.png"
        onehot = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (32, 32))].transpose(2, 0, 1)
        Image.fromarray(onehot_to_rgb(onehot)).save(masks / name)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(onehot_to_rgb(np.eye(3, dtype=np.float32)[np.zeros((32, 32), int)].transpose(2, 0, 1))).save(
        outside / "up.png"
    )
    weights = _weights(tmp_path, _parser("inference_mask2em.json", resolution=32), "network_def", "em.pt")
    return tmp_path, masks, weights


def _run_mask2em(masks: Path, out: Path, weights: Path, **overrides) -> None:
    parser = _parser(
        "inference_mask2em.json",
        input_dir=str(masks),
        output_dir=str(out),
        em_weights=str(weights),
        resolution=32,
        **overrides,
    )
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("evaluator").run()


def test_mask2em_never_overwrites_unless_asked(mask2em):
    tmp, masks, weights = mask2em
    out = tmp / "out"
    _run_mask2em(masks, out, weights)
    target = out / "s00_em.tif"
    assert target.is_file() and (out / "s00_em.png").is_file()
    target.write_bytes(b"a user's file")
    with pytest.raises(Exception) as info:
        _run_mask2em(masks, out, weights)
    assert any(isinstance(e, FileExistsError) and "--overwrite true" in str(e) for e in _cause_chain(info.value))
    assert target.read_bytes() == b"a user's file"
    _run_mask2em(masks, out, weights, overwrite=True)
    assert target.read_bytes() != b"a user's file"


def test_mask2em_outputs_stay_in_output_dir(mask2em):
    tmp, masks, weights = mask2em
    out = tmp / "deep" / "er" / "out"
    before = {p for p in tmp.rglob("*")}
    _run_mask2em(masks, out, weights)
    # the crafted name is written literally inside output_dir (never decoded into a path)
    assert (out / "%2e%2e%2f%2e%2e%2fevil_em.tif").is_file()
    # an input reached through '../' components: its output still lands in output_dir
    _run_mask2em(masks, out, weights, input_pattern="../outside/*.png")
    assert (out / "up_em.tif").is_file()
    new = {p for p in tmp.rglob("*")} - before
    assert new and all(out == p or out in p.parents for p in new if p.is_file()), sorted(map(str, new))


def test_safe_saver_refuses_paths_outside_output_dir(tmp_path):
    """MONAI derives sub-folders from ``data_root_dir``: an input outside it would escape output_dir."""
    from monai.data import MetaTensor

    out = tmp_path / "out"
    saver = SafeSaveImaged(
        keys="pred",
        output_dir=str(out),
        output_postfix="em",
        output_ext=".tif",
        separate_folder=False,
        resample=False,
        data_root_dir=str(tmp_path / "in" / "deep"),
    )
    img = MetaTensor(torch.rand(1, 8, 8), meta={"filename_or_obj": str(tmp_path / "x.png")})
    with pytest.raises(UnsafePathError, match=r"x_em\.tif.*not inside the output folder"):
        saver({"pred": img})
    assert not any(tmp_path.rglob("x_em.tif"))
    assert sanitize_filename("../../etc/passwd") == ".._.._etc_passwd"
    assert safe_output_path(out, "a/../../b", "_em.tif") == out / "a_.._.._b_em.tif"
    for bad in ("..", ".", ""):
        with pytest.raises(UnsafePathError):
            sanitize_filename(bad)


def test_write_image_never_overwrites_unless_asked(tmp_path):
    path = tmp_path / "x.png"
    write_image(path, np.zeros((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image(path, np.ones((4, 4), np.uint8))
    write_image(path, np.ones((4, 4), np.uint8), overwrite=True)
    assert np.asarray(Image.open(path)).max() == 1


# ------------------------------------------------------------------------------------- noise -> mask -> EM
def _synth(tmp: Path, out: Path, weights: Path, **overrides) -> dict:
    """inference.json (one TwoStageGenerator, ``ckpt_path``) for one pair at 128 px; returns ``synthesis.json``."""
    parser = _parser(
        "inference.json", output_dir=str(out), ckpt_path=str(weights), num_pairs=1, resolution=128, **overrides
    )
    parser.get_parsed_content("initialize")
    for i in range(len(parser["run"])):
        parser.get_parsed_content(f"run#{i}")
    import json

    return json.loads((out / "synthesis.json").read_text())


@pytest.fixture
def synth_weights(tmp_path):
    return _weights(tmp_path, _parser("inference.json", resolution=128), "network_def", "model.pt")


def test_synthesis_never_overwrites_unless_asked(tmp_path, synth_weights):
    out = tmp_path / "out"
    record = _synth(tmp_path, out, synth_weights)
    em = Path(record["pairs"][0]["em_png"])
    em.write_bytes(b"keep me")
    with pytest.raises(RuntimeError) as info:
        _synth(tmp_path, out, synth_weights)
    assert any(isinstance(e, FileExistsError) for e in _cause_chain(info.value))
    assert em.read_bytes() == b"keep me"
    _synth(tmp_path, out, synth_weights, overwrite=True)
    assert em.read_bytes() != b"keep me"


# ------------------------------------------------------------------------------------- malicious weights
def _malicious(path: Path, marker: Path, state: dict) -> Path:
    torch.save({**state, "evil": _Payload(str(marker))}, path)
    return path


def test_inference_configs_refuse_malicious_weights(tmp_path, synth_weights, mask2em):
    marker = tmp_path / "pwned"
    evil = _malicious(tmp_path / "evil_model.pt", marker, torch.load(synth_weights, weights_only=True))
    # inference.json: MONAI CheckpointLoader handler of the evaluator (weights_only=True inside)
    with pytest.raises(Exception) as info:
        _synth(tmp_path, tmp_path / "out", evil)
    assert any(
        isinstance(e, pickle.UnpicklingError) and "Weights only load failed" in str(e) for e in _cause_chain(info.value)
    )
    assert not marker.exists()
    # inference_mask2em.json: MONAI CheckpointLoader handler (weights_only=True inside)
    _, masks, weights = mask2em
    evil_em = _malicious(tmp_path / "evil_em.pt", marker, torch.load(weights, weights_only=True))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _run_mask2em(masks, tmp_path / "out2", evil_em)
    assert not marker.exists()
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def test_save_json_never_replaces_a_record_unless_told(tmp_path):
    path = tmp_path / "sub" / "summary.json"
    assert save_json({"a": 1}, path, overwrite=False) == str(path)  # folders created
    with pytest.raises(FileExistsError, match="overwrite"):
        save_json({"a": 2}, path, overwrite=False)
    assert path.read_text() == '{\n  "a": 1\n}'
    save_json({"a": 2}, path)  # the default (config records) replaces
    assert '"a": 2' in path.read_text()
