"""End-to-end test of the MONAI Label app ``apps/emgan_label`` against a real ``monailabel start_server``.

Skipped unless ``monailabel`` imports (it lives in the separate environment ``.venv-label``, see
``docs/MONAI_LABEL.md``; it needs torch 2.14.1 + torchvision 0.29.1). The server runs on a free loopback port with
a small studies folder; every served model is called over HTTP and its returned image is checked (shape, dtype,
finite values, voxel size). Bundles without trained weights are served from a temporary copy with random weights
(:func:`emgan_monai.export.testing.bundle_copy_with_weights`), so nothing is written into the repository: the app
folder is copied too, because ``monailabel start_server`` creates ``logs/``, ``model/``, ``bin/`` in it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("monailabel")

from emgan_monai.data.drosophila import build_mask, make_synthetic_stack  # noqa: E402
from emgan_monai.export.bundle import list_bundles  # noqa: E402
from emgan_monai.export.testing import bundle_copy_with_weights  # noqa: E402
from emgan_monai.io import read_image, write_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "apps" / "emgan_label"
STARTUP_TIMEOUT_S = 240
MASK_SHAPE = (300, 260)  # (rows, columns): not square, so a swapped axis shows
LABEL_PIXEL_NM = 18.4


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _served_bundles() -> dict[str, Path]:
    """Bundles the app can serve: the two generators (their own tasks) and those whose standalone
    ``configs/inference.json`` the stock ``BundleInferTask`` reads (network_def, preprocessing, inferer,
    postprocessing)."""
    out = {}
    for b in list_bundles(REPO / "bundles"):
        if b.name in ("drosophila_skip_patch", "cryoet_gan"):
            out[b.name] = b
            continue
        cfg = json.loads((b / "configs" / "inference.json").read_text())
        if all(k in cfg for k in ("network_def", "preprocessing", "inferer", "postprocessing")):
            out[b.name] = b
    return out


def _sample_input(bundle: Path) -> Path | None:
    """First file of the bundle's default inference datalist (its embedded sample), if it has one."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    try:
        items = parser.get_parsed_content("datalist")
    except Exception:  # no datalist key or no sample folder
        return None
    return Path(items[0]["image"]) if items else None


def _post(url: str, params: dict | None = None, timeout: float = 180.0) -> tuple[bytes, dict]:
    body = urllib.parse.urlencode({"params": json.dumps(params or {})}).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read(), dict(r.headers)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("monailabel")
    bundles, studies, app = tmp / "bundles", tmp / "studies", tmp / "app"
    studies.mkdir()
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "logs", "model", "bin"))
    served = _served_bundles()
    for name, src in served.items():
        bundle_copy_with_weights(src, bundles / name)

    # studies: a drawn RGB mask (PNG, uncalibrated) and a calibrated label map (TIFF, 0/1/2, 18.4 nm pixels)
    stack = make_synthetic_stack(tmp / "stack", n_sections=1, size=max(MASK_SHAPE))
    mito = read_image(stack / "mitochondria" / "00.png")[0]
    membrane = read_image(stack / "membranes" / "00.png")[0]
    onehot = build_mask(mito, membrane)[:, : MASK_SHAPE[0], : MASK_SHAPE[1]]
    rgb = (np.moveaxis(onehot, 0, -1) * 255).astype(np.uint8)
    write_image(studies / "mask_rgb.png", rgb)
    labels = onehot.argmax(0).astype(np.uint8)
    write_image(studies / "mask_labels.tif", labels, voxel_size=LABEL_PIXEL_NM, unit="nm")
    inputs = {"drosophila_mask2em": ["mask_rgb", "mask_labels"], "drosophila_generator": ["mask_rgb"]}
    if "cryoet_gan" in served:
        sample = sorted((bundles / "cryoet_gan" / "sample").glob("*.mrc"))[0]
        shutil.copy2(sample, studies / "density_map.mrc")
        inputs["cryoet_generator"] = ["density_map"]
    for name in served:
        if name not in ("drosophila_skip_patch", "cryoet_gan"):
            sample = _sample_input(bundles / name)
            assert sample is not None, f"{name}: no embedded sample input to send"
            study = f"{name}_sample"
            shutil.copy2(sample, studies / f"{study}{''.join(sample.suffixes)}")
            inputs[name] = [study]

    port = _free_port()
    exe = Path(sys.executable).parent / "monailabel"
    cmd = [
        str(exe),
        "start_server",
        "--app",
        str(app),
        "--studies",
        str(studies),
        "--conf",
        "models",
        "all",
        "--conf",
        "bundles",
        str(bundles),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = dict(
        os.environ,
        MONAILABEL_PYEXE=sys.executable,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
    )
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        info = None
        deadline = time.time() + STARTUP_TIMEOUT_S
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{base}/info/", timeout=5) as r:
                    info = json.loads(r.read())
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(2)
        if info is None:
            log.flush()
            pytest.fail(
                f"server did not answer /info/ (exit code {proc.poll()}):\n" + (tmp / "server.log").read_text()[-4000:]
            )
        yield {"base": base, "info": info, "inputs": inputs, "served": served, "log": tmp / "server.log", "tmp": tmp}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _expected_models(served: dict[str, Path]) -> set[str]:
    names = set(served) - {"drosophila_skip_patch", "cryoet_gan"}
    if "drosophila_skip_patch" in served:
        names |= {"drosophila_mask2em", "drosophila_generator"}
    if "cryoet_gan" in served:
        names |= {"cryoet_generator"}
    return names


def _infer(server, model: str, image: str, params: dict | None = None, suffix: str = ".tif"):
    try:
        data, headers = _post(f"{server['base']}/infer/{model}?image={image}&output=image", params)
    except urllib.error.HTTPError as e:  # the server's own account of the failure
        pytest.fail(f"/infer/{model}?image={image}: {e}\n" + server["log"].read_text()[-4000:])
    out = server["tmp"] / f"{model}_{image}_{len(list(server['tmp'].glob('*_result*')))}_result{suffix}"
    out.write_bytes(data)
    return out, headers


def test_server_binds_loopback_and_lists_every_model(server):
    info = server["info"]
    assert info["name"] == "emgan_monai"
    assert set(info["models"]) == _expected_models(server["served"]), server["log"].read_text()[-3000:]
    assert urllib.parse.urlparse(server["base"]).hostname == "127.0.0.1"
    assert "Uvicorn running on http://127.0.0.1:" in server["log"].read_text()


def test_every_model_returns_a_valid_image(server):
    for model, images in server["inputs"].items():
        if model not in server["info"]["models"]:
            continue
        # the project's tasks write TIFF (MRC for cryo-ET); the stock BundleInferTask is asked for NIfTI
        stock = model not in ("drosophila_mask2em", "drosophila_generator", "cryoet_generator")
        suffix = ".mrc" if model == "cryoet_generator" else ".nii.gz" if stock else ".tif"
        for image in images:
            path, headers = _infer(server, model, image, {"result_extension": suffix} if stock else None, suffix=suffix)
            if suffix == ".tif":
                assert headers.get("content-type", headers.get("Content-Type", "")).startswith("image/tiff")
            if suffix == ".nii.gz":
                import nibabel as nib

                nii = nib.load(str(path))
                arr, voxel = np.asarray(nii.dataobj), nii.header.get_zooms()
            else:
                arr, voxel = read_image(path)
            assert arr.size > 0 and np.isfinite(arr.astype(np.float64)).all(), (model, image)
            assert all(v > 0 for v in voxel)


def test_mask2em_keeps_size_dtype_and_voxel_size(server):
    if "drosophila_mask2em" not in server["info"]["models"]:
        pytest.skip("drosophila_skip_patch not served")
    em, voxel = read_image(_infer(server, "drosophila_mask2em", "mask_rgb")[0])
    assert em.shape == MASK_SHAPE and em.dtype == np.uint16
    assert em.max() > em.min()  # a real image, not a constant
    em2, voxel2 = read_image(_infer(server, "drosophila_mask2em", "mask_labels")[0])
    assert em2.shape == MASK_SHAPE and em2.dtype == np.uint16
    np.testing.assert_allclose(voxel2, (LABEL_PIXEL_NM,) * 2, rtol=1e-3)  # nm in, nm out
    # NIfTI on request, same content
    nii, _ = _infer(server, "drosophila_mask2em", "mask_labels", {"result_extension": ".nii.gz"}, ".nii.gz")
    import nibabel as nib

    vol = np.asarray(nib.load(str(nii)).dataobj)
    assert np.squeeze(vol).T.shape == MASK_SHAPE
    np.testing.assert_array_equal(np.squeeze(vol).T, em2)  # same image id, same default seed, same section
    # the generator draws texture noise: a seed fixes it, another seed gives another section of the same mask
    a = read_image(_infer(server, "drosophila_mask2em", "mask_labels", {"seed": 5})[0])[0]
    b = read_image(_infer(server, "drosophila_mask2em", "mask_labels", {"seed": 5})[0])[0]
    c = read_image(_infer(server, "drosophila_mask2em", "mask_labels", {"seed": 6})[0])[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generator_needs_no_image_content_and_is_seeded(server):
    if "drosophila_generator" not in server["info"]["models"]:
        pytest.skip("drosophila_skip_patch not served")
    a, voxel = read_image(_infer(server, "drosophila_generator", "mask_rgb", {"seed": 7})[0])
    b, _ = read_image(_infer(server, "drosophila_generator", "mask_rgb", {"seed": 7})[0])
    c, _ = read_image(_infer(server, "drosophila_generator", "mask_rgb", {"seed": 8})[0])
    assert a.shape == (2, 256, 256) and a.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a[1])) <= {0, 1, 2}
    np.testing.assert_allclose(voxel, (4.6 * 1024 / 256,) * 2, rtol=1e-3)  # nm
    em, _ = read_image(
        _infer(
            server, "drosophila_generator", "mask_rgb", {"seed": 7, "output": "em", "result_extension": ".mrc"}, ".mrc"
        )[0]
    )
    np.testing.assert_array_equal(np.squeeze(em), a[0])


def test_cryoet_generator_volume_voxel_size_and_uncertainty(server):
    if "cryoet_generator" not in server["info"]["models"]:
        pytest.skip("cryoet_gan not served")
    sub, voxel = read_image(_infer(server, "cryoet_generator", "density_map", {"seed": 3}, ".mrc")[0])
    again, _ = read_image(_infer(server, "cryoet_generator", "density_map", {"seed": 3}, ".mrc")[0])
    assert sub.ndim == 3 and sub.dtype == np.float32 and np.isfinite(sub).all()
    np.testing.assert_array_equal(sub, again)  # seeded noise
    np.testing.assert_allclose(voxel, (20.0,) * 3, rtol=1e-4)  # the bundle's voxel size, A
    ms, _ = read_image(
        _infer(
            server, "cryoet_generator", "density_map", {"uncertainty": True, "k": 4, "result_extension": ".tif"}, ".tif"
        )[0]
    )
    assert ms.shape == (sub.shape[0], 2, *sub.shape[1:])  # ImageJ ZCYX: channels mean, std
    std = ms[:, 1]
    assert np.isfinite(ms).all() and (std >= 0).all() and std.max() > 0
