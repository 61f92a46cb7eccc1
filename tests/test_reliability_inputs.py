"""Bad input: readers, dataset builders, transforms and the drosophila training config fail with one clear error
(a project error type naming the file and the problem), before anything large is allocated or training starts."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monai.bundle import ConfigParser
from monai.transforms import LoadImage
from PIL import Image

import emgan_monai.io as eio
from emgan_monai.bundle_utils import config_files
from emgan_monai.data import cryoet as dc
from emgan_monai.data.drosophila import drosophila_datalist, make_synthetic_stack
from emgan_monai.data.fluorescence import paired_datalist
from emgan_monai.errors import DataError, DataNotFoundError
from emgan_monai.io.base import max_image_bytes, set_max_image_bytes
from emgan_monai.io.errors import ImageReadError, ImageTooLargeError
from emgan_monai.physics.atomic_models import read_pdb_atoms
from emgan_monai.transforms import ColorMaskToOneHot, MaskToOneHot, ScalePercentile

REPO = Path(__file__).resolve().parents[1]
LOAD = LoadImage(image_only=True)  # MONAI's automatic reader choice: TiffReader / MRCReader / PNGReader by suffix


# ----------------------------------------------------------------------------------------------- seed files
def _seed_files(folder: Path) -> dict[str, tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    out = {}
    tifffile.imwrite(folder / "a.tif", rng.integers(0, 4096, (3, 16, 16)).astype(np.uint16), imagej=True)
    tifffile.imwrite(folder / "b.tif", rng.random((16, 16)).astype(np.float32), compression="zlib")
    eio.write_mrc(folder / "c.mrc", rng.random((4, 8, 8)).astype(np.float32))
    Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).save(folder / "d.png")
    for name in ("a.tif", "b.tif", "c.mrc", "d.png"):
        out[name] = ((folder / name).read_bytes(), Path(name).suffix)
    return out


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, tuple[bytes, str]]:
    return _seed_files(tmp_path_factory.mktemp("seeds"))


def _read_both(path: Path, must_fail: bool = False) -> None:
    """Both entry points: the numpy helper and MONAI's LoadImage. Only ImageReadError may escape, naming the file;
    with ``must_fail`` (a file cut short of its data) reading must not silently succeed."""
    for read in (eio.read_image, LOAD):
        try:
            read(path)
        except ImageReadError as e:
            assert str(path) in str(e) or path.name in str(e)
        else:
            assert not must_fail, f"{read}: a truncated file {path.name} was read without error"


_mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 1100), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(
        st.just("int32"),
        st.tuples(
            st.integers(0, 1020),
            st.sampled_from([-1, 0, 1, 2**31 - 1, -(2**31), 10**6, 65535, 4]) | st.integers(-(2**31), 2**31 - 1),
        ),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["a.tif", "b.tif", "c.mrc", "d.png"]), mutation=_mutation)
def test_fuzz_mutated_real_files_raise_only_image_read_error(seeds, tmp_path, name, mutation):
    """Truncated real headers, flipped header bytes, int32 header fields set to absurd values."""
    data, suffix = seeds[name]
    b = bytearray(data)
    kind, arg = mutation
    if kind == "truncate":
        b = b[: int(len(b) * arg)]
    elif kind == "flip":
        for pos, value in arg:
            if pos < len(b):
                b[pos] = value
    else:
        pos, value = arg
        b[pos : pos + 4] = struct.pack("<i", value)
    path = tmp_path / f"m{suffix}"
    path.write_bytes(bytes(b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _read_both(path, must_fail=kind == "truncate" and arg < 0.9)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(min_size=0, max_size=3000),
    suffix=st.sampled_from([".tif", ".mrc", ".png", ".tiff"]),
    magic=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n", b"II+\x00"]),
)
def test_fuzz_random_bytes_raise_only_image_read_error(tmp_path, payload, suffix, magic):
    path = tmp_path / f"r{suffix}"
    path.write_bytes(magic + payload)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _read_both(path)


# ----------------------------------------------------------------------------------------------- absurd sizes
def _huge_tiff(path: Path) -> None:
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), metadata=None)
    b = bytearray(path.read_bytes())
    b[18:22] = struct.pack("<I", 10**6)  # ImageWidth (LONG)  -> 10^12 voxels
    b[30:34] = struct.pack("<I", 10**6)  # ImageLength (LONG)
    path.write_bytes(bytes(b))


def _huge_mrc(path: Path) -> None:
    eio.write_mrc(path, np.zeros((4, 8, 8), np.float32))
    b = bytearray(path.read_bytes())
    b[0:12] = struct.pack("<3i", 10**4, 10**4, 10**4)  # nx, ny, nz -> 10^12 voxels of float32
    path.write_bytes(bytes(b))


def _huge_png(path: Path) -> None:
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)
    b = bytearray(path.read_bytes())
    b[16:24] = struct.pack(">2I", 10**6, 10**6)  # IHDR width, height
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))  # keep the chunk's CRC valid
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("suffix", [".tif", ".mrc", ".png"])
def test_absurd_header_sizes_are_refused_before_allocating(tmp_path, suffix):
    path = tmp_path / f"huge{suffix}"
    {".tif": _huge_tiff, ".mrc": _huge_mrc, ".png": _huge_png}[suffix](path)
    if suffix == ".png":  # Pillow's own decompression-bomb guard fires first, at open: same error type
        for read in (eio.read_image, LOAD):
            with pytest.raises(ImageTooLargeError, match=r"huge\.png.*decompression-bomb|huge\.png.*announces"):
                read(path)
        return
    for read in (eio.read_image, LOAD):
        with pytest.raises(ImageTooLargeError, match=r"huge.*announces shape .*10+, 10+.* more than the limit"):
            read(path)


def test_size_limit_is_configurable(tmp_path, monkeypatch):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint16))
    with pytest.raises(ImageTooLargeError, match="8,192 bytes, more than the limit of 1,000 bytes"):
        eio.read_tiff(path, max_bytes=1000)
    monkeypatch.setenv("EMGAN_MAX_IMAGE_BYTES", "1000")
    assert max_image_bytes() == 1000
    with pytest.raises(ImageTooLargeError):
        LOAD(path)
    set_max_image_bytes(10**6)
    try:
        assert LOAD(path).shape == (64, 64)
    finally:
        set_max_image_bytes(None)


def test_truncated_files_name_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", np.ones((4, 32, 32), np.uint16))
    eio.write_mrc(tmp_path / "t.mrc", np.ones((4, 32, 32), np.float32))
    for name in ("t.tif", "t.mrc"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) - 1000])
        with pytest.raises(ImageReadError, match=rf"{name}.*truncated"):
            eio.read_image(tmp_path / name)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png.*file is empty"):
        LOAD(tmp_path / "empty.png")
    with pytest.raises(FileNotFoundError, match="missing.mrc.*no such file"):
        eio.read_image(tmp_path / "missing.mrc")


# ----------------------------------------------------------------------------------------------- drosophila
@pytest.fixture
def stack(tmp_path) -> Path:
    return make_synthetic_stack(tmp_path / "stack1", n_sections=3, size=32)


def test_drosophila_bad_sections_are_named(stack):
    raw = stack / "raw" / "01.tif"
    tifffile.imwrite(raw, np.zeros((3, 32, 32), np.uint8) + np.arange(3, dtype=np.uint8)[:, None, None])
    with pytest.raises(DataError, match=r"01\.tif: expected a single-channel 2D EM section .*\(3, 32, 32\)"):
        drosophila_datalist(stack)
    tifffile.imwrite(raw, np.full((32, 32), 7, np.uint8))
    with pytest.raises(DataError, match=r"01\.tif: the EM section is constant"):
        drosophila_datalist(stack)
    nan = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    nan[4, 4] = np.nan
    tifffile.imwrite(raw, nan)
    with pytest.raises(DataError, match=r"01\.tif: the EM section holds 1 NaN/Inf"):
        drosophila_datalist(stack)
    tifffile.imwrite(raw, np.random.default_rng(0).integers(0, 255, (24, 32)).astype(np.uint8))
    with pytest.raises(DataError, match=r"mitochondria[/\\]01\.png: mito mask shape \(32, 32\) differs .*\(24, 32\)"):
        drosophila_datalist(stack)
    raw.write_bytes(raw.read_bytes()[:300])
    with pytest.raises(ImageReadError, match=r"01\.tif"):
        drosophila_datalist(stack)
    with pytest.raises(DataError, match="smaller than the minimum side of 64"):
        drosophila_datalist(stack, sections=[0], min_size=64)


def test_drosophila_rgb_mask_and_empty_folders(stack):
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(stack / "mitochondria" / "02.png")
    with pytest.raises(DataError, match=r"02\.png: expected a single-channel .* mito mask .*\(32, 32, 3\)"):
        drosophila_datalist(stack)
    for p in (stack / "raw").iterdir():
        p.unlink()
    with pytest.raises(DataNotFoundError, match="no raw sections"):
        drosophila_datalist(stack)
    with pytest.raises(FileNotFoundError, match="not found"):
        drosophila_datalist(stack / "nope")


def test_drosophila_train_config_fails_before_training(stack):
    """The bundle's datalist (what `run` evaluates before building the trainer) names the bad file.

    MONAI wraps errors raised inside config expressions in ``RuntimeError("Failed to evaluate ...")``; the
    project error is its ``__cause__`` (printed first in the traceback of ``python -m monai.bundle run``)."""
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(stack / "membranes" / "00.png")
    parser = ConfigParser()
    parser.read_config(config_files(REPO / "bundles" / "drosophila_skip_patch", "train.json"))  # common.json first
    parser.update({"dataset_dir": str(stack.parent), "n_train": 2, "n_val": 1})
    with pytest.raises(RuntimeError, match="drosophila_datalist") as info:
        parser.get_parsed_content("split")
    assert isinstance(info.value.__cause__, DataError)
    assert "membranes/00.png: membrane mask shape (16, 16) differs" in str(info.value.__cause__).replace("\\", "/")


# ----------------------------------------------------------------------------------------------- fluorescence
def _pairs(root: Path, shapes: dict[str, tuple]) -> None:
    for sub in ("wf", "confocal"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, (s_wf, s_cf) in shapes.items():
        tifffile.imwrite(root / "wf" / name, np.ones(s_wf, np.uint16))
        tifffile.imwrite(root / "confocal" / name, np.ones(s_cf, np.uint16))


def test_paired_datalist_patch_size_names_and_huge_header(tmp_path):
    _pairs(tmp_path, {"a.tif": ((8, 40, 40), (8, 40, 40)), "b.tif": ((8, 20, 40), (8, 20, 40))})
    assert len(paired_datalist(tmp_path, min_shape=(16, 16))) == 2
    with pytest.raises(DataError, match=r"b\.tif: image shape \(8, 20, 40\) is smaller than the training patch"):
        paired_datalist(tmp_path, min_shape=(32, 32))
    _huge_tiff(tmp_path / "confocal" / "a.tif")
    with pytest.raises(ImageTooLargeError, match=r"a\.tif"):
        paired_datalist(tmp_path)
    (tmp_path / "confocal" / "a.tif").unlink()
    with pytest.raises(DataError, match=r"unmatched file names; only in wf/: \[a\]"):
        paired_datalist(tmp_path)
    with pytest.raises(DataNotFoundError, match="missing the confocal folder"):
        paired_datalist(tmp_path, label_dir="nope")


# ----------------------------------------------------------------------------------------------- cryo-ET
def test_cryoet_builders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no density map"):
        dc.density_datalist(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dc.density_datalist(tmp_path / "missing")
    pdb = tmp_path / "noatoms.pdb"
    pdb.write_text("HEADER    EMPTY\nREMARK   nothing here\nEND\n")
    with pytest.raises(ValueError, match=r"noatoms\.pdb: no ATOM/HETATM records"):
        read_pdb_atoms(pdb)
    with pytest.raises(DataError, match=r"noatoms\.pdb: no ATOM/HETATM records"):
        dc.load_density(pdb)
    eio.write_mrc(tmp_path / "flat.mrc", np.ones((16, 16), np.float32))
    with pytest.raises(DataError, match=r"flat\.mrc: expected a 3D map"):
        dc.load_density(tmp_path / "flat.mrc")
    _huge_mrc(tmp_path / "huge.mrc")
    with pytest.raises(ImageTooLargeError, match=r"huge\.mrc"):
        dc.load_density(tmp_path / "huge.mrc")
    tomo = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32)
    tomo[1, 2, 3] = np.inf
    eio.write_mrc(tmp_path / "tomo.mrc", tomo)
    with pytest.raises(DataError, match=r"tomo\.mrc: the tomogram holds 1 NaN/Inf voxels"):
        dc.load_tomogram(tmp_path / "tomo.mrc")
    eio.write_mrc(tmp_path / "const.mrc", np.zeros((8, 16, 16), np.float32))
    with pytest.raises(DataError, match=r"const\.mrc: the tomogram is constant"):
        dc.load_tomogram(tmp_path / "const.mrc")
    with pytest.raises(DataError, match=r"volume \(8, 16, 16\) is smaller than the box 12"):
        dc.cut_subvolume(np.zeros((8, 16, 16), np.float32), (4, 8, 8), 12)
    assert dc.cut_subvolume(np.zeros((8, 16, 16), np.float32), (4, 8, 8), 12, border="pad").shape == (12, 12, 12)


# ----------------------------------------------------------------------------------------------- transforms
def test_transforms_validate_inputs():
    constant = torch.full((1, 16, 16), 5.0)
    out = ScalePercentile()(constant)
    assert torch.isfinite(out).all() and float(out.max()) == 0.0  # no division by zero
    bad = torch.rand(1, 16, 16)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ScalePercentile()(bad)
    with pytest.raises(ValueError, match="2 masks for 1 thresholds|differ|shape"):
        MaskToOneHot(thresholds=(0.5,))(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="got 2 channels"):
        ColorMaskToOneHot()(torch.zeros(2, 8, 8))
