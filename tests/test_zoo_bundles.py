"""Every bundle passes the MONAI model zoo's pre-merge checks (``ci/verify_bundle.py``, full mode, on CPU), run here
through MONAI's public API on a copy of the bundle folder, step for step:

1. required files (``configs/metadata.json``, ``LICENSE``) and preferred ones (``models/model.pt``,
   ``configs/inference.json``);
2. ``version`` listed in ``changelog`` (and, for this project, ``required_packages_version["emgan_monai"]`` equal to
   the package's single-sourced version);
3. ``monai.bundle.verify_metadata`` against a schema file (the zoo fetches its schema from a URL this machine cannot
   reach; the repository's statement of the bundle specification, ``emgan_monai/export/metadata_schema.json``, stands
   in, placed where ``verify_metadata`` would have downloaded it);
4. ``monai.bundle.create_workflow(config_file=configs/inference.json, workflow_type="inference").check_properties()``
   with nothing missing;
5. ``monai.bundle.verify_net_in_out`` of ``network_def`` with the shapes of ``network_data_format``;
6. ``monai.bundle.ckpt_export`` of ``network_def`` + ``models/model.pt`` to TorchScript by scripting (no trace), and
   the exported module gives the eager network's output (its :func:`torchscript_equivalent`).

The zoo reads one file: ``configs/inference.json`` must stand alone, and it must also run from inside the bundle
folder (the relative form a user of an unpacked zip types).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, create_workflow, verify_metadata, verify_net_in_out

import emgan_monai
from emgan_monai.export.bundle import list_bundles, torchscript_equivalent
from emgan_monai.export.schema import METADATA_SCHEMA

REPO = Path(__file__).resolve().parents[1]
BUNDLES = list_bundles(REPO / "bundles")
IDS = [b.name for b in BUNDLES]


@pytest.fixture(scope="module", params=BUNDLES, ids=IDS)
def bundle_copy(request, tmp_path_factory) -> Path:
    """A copy of the bundle (configs, models, docs, sample, LICENSE), as the zoo's CI checks a copy of ``models/<b>``."""
    src: Path = request.param
    dest = tmp_path_factory.mktemp("zoo") / src.name
    for d in ("configs", "models", "docs", "sample"):
        if (src / d).is_dir():
            shutil.copytree(src / d, dest / d)
    shutil.copy2(src / "LICENSE", dest / "LICENSE")
    return dest


def test_files_version_and_changelog(bundle_copy: Path) -> None:
    for f in ("configs/metadata.json", "LICENSE", "models/model.pt", "configs/inference.json"):
        assert (bundle_copy / f).is_file(), f"{bundle_copy.name}: {f} missing"
    meta = json.loads((bundle_copy / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"], f"{bundle_copy.name}: version {meta['version']} not in changelog"
    assert meta["required_packages_version"]["emgan_monai"] == emgan_monai.__version__
    for version, text in meta["changelog"].items():  # a sentence or two for a user; the numbers live in docs/README.md
        assert 20 <= len(text) <= 600, f"{bundle_copy.name} changelog {version}: {len(text)} characters"


def test_verify_metadata(bundle_copy: Path) -> None:
    pytest.importorskip("jsonschema", reason="monai.bundle.verify_metadata needs jsonschema (test extras)")
    schema = bundle_copy / "eval" / "schema.json"
    schema.parent.mkdir(exist_ok=True)
    shutil.copy2(METADATA_SCHEMA, schema)  # where verify_metadata downloads the zoo schema to; it skips the download
    verify_metadata(meta_file=str(bundle_copy / "configs" / "metadata.json"), filepath=str(schema))
    # the check bites: the same metadata with a wrongly typed required field is refused
    meta = json.loads((bundle_copy / "configs" / "metadata.json").read_text())
    broken = bundle_copy / "eval" / "broken_metadata.json"
    broken.write_text(json.dumps({**meta, "version": 7}))
    with pytest.raises(ValueError, match="7 is not of type 'string'"):
        verify_metadata(meta_file=str(broken), filepath=str(schema))


def test_inference_workflow_properties(bundle_copy: Path) -> None:
    workflow = create_workflow(
        config_file=str(bundle_copy / "configs" / "inference.json"),
        meta_file=str(bundle_copy / "configs" / "metadata.json"),
        logging_file=str(bundle_copy / "configs" / "logging.conf"),
        workflow_type="inference",
        bundle_root=str(bundle_copy),
    )
    missing = workflow.check_properties()
    assert not missing, f"{bundle_copy.name}: inference.json lacks required properties {missing}"


def test_verify_net_in_out(bundle_copy: Path) -> None:
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle_copy / "configs" / "metadata.json"),
        config_file=str(bundle_copy / "configs" / "inference.json"),
        bundle_root=str(bundle_copy),
        device="cpu",
    )
    # the check bites: declaring one more output channel than network_def returns is refused
    meta = json.loads((bundle_copy / "configs" / "metadata.json").read_text())
    out = next(iter(meta["network_data_format"]["outputs"].values()))
    out["num_channels"] += 1
    wrong = bundle_copy / "configs" / "wrong_metadata.json"
    wrong.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="output channel number"):
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(wrong),
            config_file=str(bundle_copy / "configs" / "inference.json"),
            bundle_root=str(bundle_copy),
            device="cpu",
        )
    wrong.unlink()


def test_ckpt_export_by_scripting(bundle_copy: Path) -> None:
    ts_file = bundle_copy / "models" / "verify_model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_file),
        ckpt_file=str(bundle_copy / "models" / "model.pt"),
        meta_file=str(bundle_copy / "configs" / "metadata.json"),
        config_file=str(bundle_copy / "configs" / "inference.json"),
        bundle_root=str(bundle_copy),
    )
    scripted = torch.jit.load(str(ts_file), map_location="cpu").eval()
    parser = ConfigParser()
    parser.read_config(str(bundle_copy / "configs" / "inference.json"))
    parser.read_meta(str(bundle_copy / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle_copy)
    eager = parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(bundle_copy / "models" / "model.pt", map_location="cpu", weights_only=True))
    eager = torchscript_equivalent(eager.eval())  # Python-only steps (Drosophila watershed closing) off
    spec = next(iter(parser["_meta_"]["network_data_format"]["inputs"].values()))
    # symbolic sizes ("16*n", "2**p") at n = p = 1, as verify_net_in_out does by default
    shape = [1, spec["num_channels"], *[int(eval(str(s), {"n": 1, "p": 1})) for s in spec["spatial_shape"]]]
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.manual_seed(0)  # generators that draw noise in forward draw the same in both graphs
        y_ts = scripted(x)
        torch.manual_seed(0)
        y_eager = eager(x)
    assert y_ts.shape == y_eager.shape
    assert torch.allclose(y_ts, y_eager, atol=1e-4), float((y_ts - y_eager).abs().max())


def test_inference_config_parses_alone_from_the_bundle_folder(bundle_copy: Path) -> None:
    """``cd <bundle> && python -m monai.bundle run --config_file configs/inference.json`` resolves its definitions
    (``bundle_root`` found from the working directory, no other config merged); checked by parsing, not running, the
    network and the workflow components here; the bundle tests run each config end to end."""
    code = (
        "from monai.bundle import ConfigParser; p = ConfigParser(); p.read_config('configs/inference.json'); "
        "import os; assert os.path.samefile(p.get_parsed_content('bundle_root'), '.'); "
        "p.get_parsed_content('network_def'); p.get_parsed_content('inferer'); print('ok')"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=bundle_copy, capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
