"""Batch inference that does not stop at the first bad file (:mod:`emgan_monai.data.batch`, issue 15).

A folder with a good, an unreadable, another good and a 4D TIFF: every readable file is processed, the failures
are listed at the end (file and reason, one line each), the exit status is non-zero, and the 4D file's error says
which shapes the bundle accepts.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.data import DataLoader, MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

import emgan_monai.io  # noqa: F401  (registers the readers)
from emgan_monai.data.batch import RequireShaped, TolerantDataset, failure_reason, report_failures

REPO = Path(__file__).resolve().parents[1]
CONFOCAL = REPO / "bundles" / "confocal_enhance"


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """a_good.tif, b_bad.tif (truncated), c_good.tif (2D, 128 x 96) and d_4d.tif (2, 3, 64, 64)."""
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    tifffile.imwrite(d / "a_good.tif", rng.integers(100, 4000, (128, 96), dtype=np.uint16))
    tifffile.imwrite(d / "c_good.tif", rng.integers(100, 4000, (96, 128), dtype=np.uint16))
    (d / "b_bad.tif").write_bytes((d / "a_good.tif").read_bytes()[:3000])
    tifffile.imwrite(d / "d_4d.tif", rng.integers(0, 1000, (2, 3, 64, 64), dtype=np.uint16))
    return d


def test_tolerant_dataset_yields_good_items_and_records_the_rest(folder: Path) -> None:
    files = sorted(folder.glob("*.tif"))
    transform = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            RequireShaped(
                "image",
                spatial_dims=(2, 3),
                channels=1,
                min_size=[86, 86, 1],
                accepts="single-channel 2D images or 3D stacks",
            ),
        ]
    )
    ds = TolerantDataset([{"image": str(f)} for f in files], transform)
    names = [Path(b["image"].meta["filename_or_obj"][0]).name for b in DataLoader(ds, batch_size=1, num_workers=0)]
    assert names == ["a_good.tif", "c_good.tif"]  # the files after the bad one are processed too, in order
    assert ds.succeeded == 2 and [Path(f).name for f, _ in ds.failures] == ["b_bad.tif", "d_4d.tif"]
    bad, four_d = (r for _, r in ds.failures)
    assert bad.startswith("ImageReadError: cannot read image file") and "b_bad.tif" in bad and "\n" not in bad
    # the file is named once, by the record's first element; the reason is the problem
    assert four_d.startswith("ValueError:") and "accepts single-channel 2D" in four_d
    # a second pass starts a fresh record
    assert len(list(ds)) == 2 and len(ds.failures) == 2


def test_require_shaped_messages() -> None:
    check = RequireShaped("image", spatial_dims=(2, 3), channels=1, min_size=[86, 86, 1], accepts="ACCEPTED")
    img = MetaTensor(torch.zeros(1, 100, 90), meta={"filename_or_obj": "x.tif"})
    assert check({"image": img})["image"] is img
    assert check({"image": MetaTensor(torch.zeros(1, 100, 90, 2))})["image"].shape == (1, 100, 90, 2)  # Z=2 is fine
    cases = [
        ((3, 100, 90), "3 channel"),
        ((1, 100), "1 spatial dimension"),
        ((1, 2, 100, 90, 4), "4 spatial"),
        ((1, 64, 90), "below the minimum"),
    ]
    for shape, problem in cases:
        with pytest.raises(ValueError, match=rf"x\.tif: image of shape .*{problem}.*this bundle accepts ACCEPTED"):
            check({"image": MetaTensor(torch.zeros(*shape), meta={"filename_or_obj": "x.tif"})})


def test_report_failures_lists_and_exits_non_zero() -> None:
    ds = TolerantDataset([{"image": "a.tif"}], transform=lambda d: d)
    list(ds)
    report_failures(ds)  # nothing failed: returns
    ds.failures, ds.succeeded = [("b.tif", "ImageReadError: truncated"), ("d.tif", "ValueError: 4D")], 2
    out = io.StringIO()
    with pytest.raises(SystemExit) as info:
        report_failures(ds, stream=out)
    assert info.value.code == 1
    assert out.getvalue().splitlines() == [
        "2 of 4 input(s) failed:",
        "  b.tif: ImageReadError: truncated",
        "  d.tif: ValueError: 4D",
    ]
    try:
        try:
            raise ValueError("root cause\nsecond line")
        except ValueError as e:
            raise RuntimeError("applying transform") from e
    except RuntimeError as wrapped:
        assert failure_reason(wrapped) == "ValueError: root cause"


def test_confocal_inference_processes_every_readable_file(folder: Path, tmp_path: Path) -> None:
    if not (CONFOCAL / "models" / "model.pt").is_file():
        pytest.skip("bundles/confocal_enhance/models/model.pt missing")
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(CONFOCAL / "configs" / "inference.json"),
            "--input_dir",
            str(folder),
            "--output_dir",
            str(out),
            "--device",
            "$torch.device('cpu')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 1, run.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.tif")) == ["a_good_confocal.tif", "c_good_confocal.tif"]
    for name, shape in (("a_good_confocal.tif", (128, 96)), ("c_good_confocal.tif", (96, 128))):
        pred = tifffile.imread(out / name)
        assert pred.shape == shape and pred.dtype == np.uint16
    err = run.stderr.splitlines()
    start = err.index("2 of 4 input(s) failed:")
    listed = err[start + 1 :]
    assert len(listed) == 2 and "Traceback" not in run.stderr
    assert listed[0].startswith(f"  {folder / 'b_bad.tif'}: ImageReadError:") and "truncated" in listed[0]
    assert listed[1].startswith(f"  {folder / 'd_4d.tif'}: DataError:")
    assert "this bundle accepts single-channel 2D images (Y, X) or 3D stacks (Z, Y, X)" in listed[1]
    assert "Padding size" not in run.stderr


def test_drosophila_mask2em_processes_every_readable_file(tmp_path: Path) -> None:
    bundle = REPO / "bundles" / "drosophila_skip_patch"
    if not (bundle / "models" / "em_generator.pt").is_file():
        pytest.skip("bundles/drosophila_skip_patch/models/em_generator.pt missing")
    d = tmp_path / "masks"
    d.mkdir()
    good = sorted((bundle / "sample" / "masks").glob("*.png"))[0].read_bytes()
    (d / "a_good.png").write_bytes(good)
    (d / "b_bad.png").write_bytes(good[: len(good) // 3])
    (d / "c_good.png").write_bytes(good)
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(bundle / "configs" / "inference_mask2em.json"),
            "--input_dir",
            str(d),
            "--output_dir",
            str(out),
            "--device",
            "$torch.device('cpu')",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
    written = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert any("a_good" in n for n in written) and any("c_good" in n for n in written), written
    assert not any("b_bad" in n for n in written)
    err = run.stderr.splitlines()
    listed = err[err.index("1 of 3 input(s) failed:") + 1 :]
    assert len(listed) == 1 and listed[0].startswith(f"  {d / 'b_bad.png'}:") and "Traceback" not in run.stderr


def test_cryoet_inference_processes_every_readable_map(tmp_path: Path) -> None:
    bundle = REPO / "bundles" / "cryoet_gan"
    if not (bundle / "models" / "model.pt").is_file():
        pytest.skip("bundles/cryoet_gan/models/model.pt missing")
    d = tmp_path / "maps"
    d.mkdir()
    good = (bundle / "sample" / "1bxn.mrc").read_bytes()
    (d / "a_good.mrc").write_bytes(good)
    (d / "b_bad.mrc").write_bytes(good[:500])
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str(bundle / "configs" / "inference.json"),
            "--input_dir",
            str(d),
            "--output_dir",
            str(out),
            "--device",
            "$torch.device('cpu')",
            "--n_samples",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.mrc")) == [
        "a_good_input.mrc",
        "a_good_sample_00.mrc",
        "a_good_sample_01.mrc",
    ]
    err = run.stderr.splitlines()
    listed = err[err.index("1 of 2 input(s) failed:") + 1 :]
    assert len(listed) == 1 and listed[0].startswith(f"  {d / 'b_bad.mrc'}:") and "Traceback" not in run.stderr
