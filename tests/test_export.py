"""Zoo sharing of the bundles: TorchScript through ``monai.bundle ckpt_export``, zip packages, bioimage.io packages.

Everything runs on temporary copies of the bundles (shipped weights when present, seeded random weights
otherwise, see :func:`emgan_monai.export.testing.bundle_copy_with_weights`): nothing is written into ``bundles/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from emgan_monai.data.drosophila import build_mask, make_synthetic_stack
from emgan_monai.export.bundle import (
    MetadataError,
    compare_torchscript,
    export_torchscript,
    inference_config,
    list_bundles,
    load_metadata,
    package_bundle,
    sha256sum,
    training_state_files,
)
from emgan_monai.export.testing import bundle_copy_with_weights
from emgan_monai.io import read_image, write_image

REPO = Path(__file__).resolve().parents[1]
DROS = REPO / "bundles" / "drosophila_skip_patch"
BUNDLES = [b for b in list_bundles(REPO / "bundles")]


def _bundle_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "monai.bundle", *args], cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, f"monai.bundle {args[0]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def dros(tmp_path_factory) -> Path:
    if not DROS.is_dir():
        pytest.skip("bundles/drosophila_skip_patch missing")
    return bundle_copy_with_weights(DROS, tmp_path_factory.mktemp("dros") / "drosophila_skip_patch")[0]


@pytest.fixture(scope="module")
def masks(tmp_path_factory) -> Path:
    """Two drawn RGB masks (mitochondria red, membrane green, background blue), 256 x 192 and 256 x 256."""
    tmp = tmp_path_factory.mktemp("masks")
    stack = make_synthetic_stack(tmp / "stack", n_sections=2, size=256)
    out = tmp / "masks"
    out.mkdir()
    for i, width in enumerate((192, 256)):
        mito = read_image(stack / "mitochondria" / f"0{i}.png")[0]
        membrane = read_image(stack / "membranes" / f"0{i}.png")[0]
        onehot = build_mask(mito, membrane)[:, :, :width]
        write_image(out / f"mask_{i}.png", (np.moveaxis(onehot, 0, -1) * 255).astype(np.uint8))
    return out


def test_ckpt_export_cli_equals_eager(dros, tmp_path):
    """The documented command, run from another directory, BY SCRIPTING as the zoo's verifier does: inference.json's
    ``network_def`` (the two-stage generator) with ``models/model.pt``; the .ts carries metadata and config, and draws
    what the Python module draws for the same seed once the Python-only decoding steps (watershed closing, speck
    removal) are switched off in it."""
    from monai.bundle import ConfigParser
    from monai.data import load_net_with_metadata

    cfg = dros / "configs" / "inference.json"
    ts = dros / "models" / "model.ts"
    _bundle_cli(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(ts),
        "--ckpt_file",
        str(dros / "models" / "model.pt"),
        "--meta_file",
        str(dros / "configs" / "metadata.json"),
        "--config_file",
        str(cfg),
        "--bundle_root",
        str(dros),
        cwd=tmp_path,
    )
    scripted, meta, extra = load_net_with_metadata(str(ts), more_extra_files=("inference.json",))
    assert meta["version"] == load_metadata(dros)["version"]
    assert "network_def" in json.loads(extra["inference.json"])
    parser = ConfigParser()
    parser.read_config(str(cfg))
    parser["bundle_root"] = str(dros)
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(dros / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.close_membranes, net.min_mito_size = False, 0
    net.eval()
    z = torch.randn(2, 16, 8, 8)  # any latent grid: a 128 px field of view
    with torch.no_grad():  # both stages inject noise: both graphs draw it from one seed
        torch.manual_seed(1)
        y_ts = scripted(z)
        torch.manual_seed(1)
        y = net(z)
    assert y_ts.shape == (2, 4, 128, 128)
    assert float((y_ts - y).abs().max()) <= 1e-5


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_every_bundle_exports_torchscript(bundle, tmp_path):
    try:
        inference_config(bundle)
    except FileNotFoundError:
        pytest.fail(f"{bundle.name}: no inference config with network_def to export")
    copy = bundle_copy_with_weights(bundle, tmp_path / bundle.name)[0]
    ts = export_torchscript(copy, tmp_path / "model.ts")
    assert compare_torchscript(copy, ts) <= 1e-5


def test_package_refuses_incomplete_bundle(tmp_path, dros):
    broken = bundle_copy_with_weights(dros, tmp_path / "broken")[0]
    (broken / "docs" / "data_license.txt").unlink()
    with pytest.raises(FileNotFoundError, match="data_license.txt"):
        package_bundle(broken, tmp_path / "dist", torchscript=False)
    (broken / "docs" / "data_license.txt").write_text("CC BY-NC-SA 3.0")
    meta = json.loads((broken / "configs" / "metadata.json").read_text())
    meta["version"] = "9.9.9"
    (broken / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(MetadataError, match="changelog"):
        package_bundle(broken, tmp_path / "dist", torchscript=False)


def test_package_zip_runs_from_another_directory(dros, masks, tmp_path):
    res = package_bundle(dros, tmp_path / "dist")
    assert res.zip_path.name == f"drosophila_skip_patch_v{load_metadata(dros)['version']}.zip"
    assert res.torchscript_max_abs_diff is not None and res.torchscript_max_abs_diff <= 1e-5
    members = set(res.members)
    for required in (
        "configs/metadata.json",
        "configs/inference.json",
        "configs/inference_mask2em.json",
        "models/model.pt",
        "models/em_generator.pt",
        "models/model.ts",
        "docs/README.md",
        "docs/data_license.txt",
        "LICENSE",
        "large_files.yml",
    ):
        assert f"drosophila_skip_patch/{required}" in members, required
    assert not any("/runs/" in m or "/eval/" in m for m in members)
    # lean: the resumable training state is a separate archive, never in the user-facing zip
    state = training_state_files(dros)
    assert not any(m.removeprefix("drosophila_skip_patch/") in state for m in members)
    if state:
        assert res.training_state is not None and res.training_state.is_file()
        with zipfile.ZipFile(res.training_state) as zf:
            assert {f"drosophila_skip_patch/{f}" for f in state} == set(zf.namelist())
    with pytest.raises(FileExistsError):
        package_bundle(dros, tmp_path / "dist", torchscript=False)

    unz = tmp_path / "unzipped"
    with zipfile.ZipFile(res.zip_path) as zf:
        zf.extractall(unz)
    root = unz / "drosophila_skip_patch"
    large = yaml.safe_load((root / "large_files.yml").read_text())["large_files"]
    assert {e["path"] for e in large} >= {"models/model.pt", "models/model.ts"}
    for e in large:
        assert e["hash_type"] == "sha256" and "url" not in e and not Path(e["path"]).is_absolute()
        assert sha256sum(root / e["path"]) == e["hash_val"]
    digest, name = (tmp_path / "dist" / f"{res.zip_path.name}.sha256").read_text().split()
    assert name == res.zip_path.name and digest == sha256sum(res.zip_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "em_out"
    _bundle_cli(
        "run",
        "--config_file",
        str(root / "configs" / "inference_mask2em.json"),
        "--bundle_root",
        str(root),
        "--input_dir",
        str(masks),
        "--output_dir",
        str(out),
        "--device",
        "$torch.device('cpu')",
        cwd=elsewhere,
    )
    for i, width in enumerate((192, 256)):
        em, _ = read_image(out / f"mask_{i}_em.tif")
        assert em.shape == (256, width) and em.dtype == np.uint16 and em.max() > em.min()
        assert (out / f"mask_{i}_em.png").is_file()
    assert not (root / "eval").exists()  # nothing written into the unpacked bundle


def test_package_script_cli(dros, tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import package_bundle as script
    finally:
        sys.path.pop(0)
    assert script.main([str(dros), "--out", str(tmp_path), "--no_torchscript", "--base_url", "https://host/x"]) == 0
    zp = next(p for p in tmp_path.glob("*.zip") if not p.name.endswith("_training_state.zip"))
    assert (tmp_path / zp.name.replace(".zip", "_training_state.zip")).is_file()  # checkpoints in their own archive
    with zipfile.ZipFile(zp) as zf:
        large = yaml.safe_load(zf.read("drosophila_skip_patch/large_files.yml"))["large_files"]
    assert all(e["url"] == f"https://host/x/{e['path']}" for e in large)
    assert script.main([str(dros), "--out", str(tmp_path), "--no_torchscript"]) == 1  # exists, no --overwrite


def test_bioimageio_package_validates_offline(dros, masks, tmp_path):
    pytest.importorskip("bioimageio.core")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import export_bioimageio as script
    finally:
        sys.path.pop(0)
    out = tmp_path / "dros.bioimageio.zip"
    assert (
        script.main(
            [
                str(dros),
                "--out",
                str(out),
                "--test_input",
                str(masks / "mask_1.png"),
                "--cite",
                "Seed paper (test entry)|10.1000/test",
            ]
        )
        == 0
    )
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        rdf = yaml.safe_load(zf.read("rdf.yaml"))
        x = np.load(zf.open("test_input.npy"))
    assert {
        "rdf.yaml",
        "weights.pt",
        "test_input.npy",
        "test_output.npy",
        "cover.png",
        "README.md",
        "data_license.txt",
    } <= names
    assert x.shape == (1, 3, 256, 256) and set(np.unique(x)) <= {0.0, 1.0}  # the one-hot of the drawn mask
    assert "torchscript" in rdf["weights"]
    dois = {c.get("doi") for c in rdf["cite"]}
    assert {"10.6084/m9.figshare.856713", "10.1000/test"} <= dois and all("url" not in c for c in rdf["cite"])

    from emgan_monai.export.bioimageio import validate_bioimageio

    summary = validate_bioimageio(out)
    assert summary.status == "passed", summary.format()


CONFOCAL = REPO / "bundles" / "confocal_enhance"


def test_confocal_zip_runs_in_a_fresh_venv_from_its_own_wheel(tmp_path):
    """Only the zip's contents: a new venv gets the embedded wheel (``--no-deps``, no index), its other
    dependencies come from this environment's site-packages (a ``.pth``, which does not activate this checkout's
    editable install), and ``configs/inference.json`` runs on the embedded sample from an unrelated folder."""
    import site
    import sysconfig

    import tifffile

    if not (CONFOCAL / "sample" / "widefield_sample.tif").is_file():
        pytest.skip("bundles/confocal_enhance/sample missing")
    bundle = bundle_copy_with_weights(CONFOCAL, tmp_path / "src" / "confocal_enhance")[0]
    res = package_bundle(bundle, tmp_path / "dist", torchscript=False)
    assert res.wheel is not None and res.wheel.startswith("confocal_enhance/wheels/emgan_monai-")
    assert res.wheel in res.members
    unz = tmp_path / "unzipped"
    with zipfile.ZipFile(res.zip_path) as zf:
        zf.extractall(unz)
    root = unz / "confocal_enhance"
    wheel = root / res.wheel.split("/", 1)[1]
    readme = (root / "docs" / "README.md").read_text()
    assert f"pip install wheels/{wheel.name}" in readme and f"--no-deps wheels/{wheel.name}" in readme

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    fresh_site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (fresh_site / "zz_dependencies.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(py), "-c", "import emgan_monai; print(emgan_monai.__file__)"],
        cwd=elsewhere,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(fresh_site), where  # the wheel's copy, not this checkout

    out = tmp_path / "out"
    cmd = [
        str(py),
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(root / "configs" / "inference.json"),
        "--bundle_root",
        str(root),
        "--output_dir",
        str(out),
        "--device",
        "$torch.device('cpu')",
    ]
    run = subprocess.run(cmd, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    outputs = sorted(out.rglob("*.tif"))
    assert len(outputs) == 1, outputs
    pred = tifffile.imread(outputs[0])
    sample = tifffile.imread(root / "sample" / "widefield_sample.tif")
    assert pred.shape == sample.shape and pred.dtype == sample.dtype and pred.max() > pred.min()
    assert not (root / "eval").exists()
