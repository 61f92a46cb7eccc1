"""Tests for emgan_monai.io: MONAI readers/writers for MRC and TIFF, plain helpers, errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import tifffile
import torch
from conftest import data_root
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor, image_writer
from monai.transforms import LoadImage, SaveImage
from PIL import Image

import emgan_monai.io  # noqa: F401  (registers the writers/readers with MONAI)
from emgan_monai.io.errors import ImageFileNotFoundError, ImageReadError, ImageWriteError
from emgan_monai.io.files import read_image, write_image
from emgan_monai.io.mrc import MRCReader, MRCWriter, read_mrc, write_mrc
from emgan_monai.io.tiff import TiffReader, TiffWriter, _rational_inverse, read_tiff

VOXEL_UM = {"Z": 0.29, "Y": 0.26, "X": 0.26}  # cells3d confocal voxel size (z, y, x)


def _pixel_size(tag: tifffile.TiffTag) -> float:
    """Pixel size from a TIFF RATIONAL resolution tag, computed exactly."""
    num, den = tag.value
    return float(Fraction(den, num))


def _saver(out: Path, ext: str, **kwargs) -> SaveImage:
    return SaveImage(
        output_dir=out, output_ext=ext, output_postfix="out", separate_folder=False, print_log=False, **kwargs
    )


def _no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp" in p.name]


@pytest.fixture
def tiff16(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """16-bit ImageJ stack (Z, Y, X) = (5, 6, 7) with 0.29 x 0.26 x 0.26 um voxels, full uint16 range."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 65536, size=(5, 6, 7), dtype=np.uint16)
    data[0, 0, 0], data[-1, -1, -1] = 0, 65535
    path = tmp_path / "stack16.tif"
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        resolution=(1 / VOXEL_UM["X"], 1 / VOXEL_UM["Y"]),
        metadata={"axes": "ZYX", "spacing": VOXEL_UM["Z"], "unit": "um"},
    )
    return path, data


@pytest.fixture
def mrc10(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """float32 map (Z, Y, X) = (4, 5, 6) with 10 A voxels and a non-zero origin."""
    data = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)
    path = tmp_path / "map10.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 10.0
        mrc.header.origin = (100.0, -50.0, 20.0)
    return path, data


# ----------------------------------------------------------------------------------------------
# 16-bit 3D TIFF and MRC through LoadImage / SaveImage


@pytest.mark.parametrize("reader", [TiffReader(), "emgan_monai.io.TiffReader"], ids=["instance", "dotted"])
@pytest.mark.parametrize("output_dtype", [None, np.uint16])
def test_tiff16_load_save_roundtrip_exact(tiff16, tmp_path: Path, reader, output_dtype) -> None:
    path, data = tiff16
    img = LoadImage(reader=reader, dtype=None)(path)
    assert tuple(img.shape) == (7, 6, 5)  # (X, Y, Z): file axes reversed
    np.testing.assert_array_equal(img.numpy(), data.T)
    assert img.meta["original_dtype"] == "uint16"  # MONAI widens uint16 to int32 tensors
    assert tuple(img.affine.diagonal()[:3].tolist()) == (0.26, 0.26, 0.29)
    assert tuple(img.pixdim.tolist()) == (0.26, 0.26, 0.29)
    assert img.meta["unit"] == "um"

    out = tmp_path / "out"
    _saver(out, ".tif", output_dtype=output_dtype)(img)
    written = out / "stack16_out.tif"
    with tifffile.TiffFile(written) as tif:
        back = tif.asarray()
        assert tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 0.29
        assert tif.imagej_metadata["unit"] in ("um", "micron")
        assert _pixel_size(tif.pages[0].tags["XResolution"]) == 0.26
        assert _pixel_size(tif.pages[0].tags["YResolution"]) == 0.26
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, data)
    assert _no_temp_files(out)


def test_tiff_reader_get_data_keeps_uint16(tiff16) -> None:
    path, data = tiff16
    reader = TiffReader()
    array, meta = reader.get_data(reader.read(path))
    assert array.dtype == np.uint16 and array.shape == (7, 6, 5)
    np.testing.assert_array_equal(array, data.T)
    assert np.isnan(meta["original_channel_dim"])
    np.testing.assert_array_equal(meta["spatial_shape"], (7, 6, 5))
    np.testing.assert_array_equal(meta["pixdim"][:4], (1.0, 0.26, 0.26, 0.29))


@pytest.mark.parametrize("reader", [MRCReader(), "emgan_monai.io.MRCReader"], ids=["instance", "dotted"])
def test_mrc_load_save_roundtrip_exact(mrc10, tmp_path: Path, reader) -> None:
    path, data = mrc10
    img = LoadImage(reader=reader, dtype=None)(path)
    assert tuple(img.shape) == (6, 5, 4) and img.dtype == torch.float32
    np.testing.assert_array_equal(img.numpy(), data.T)
    np.testing.assert_array_equal(img.affine.numpy(), [[10, 0, 0, 100], [0, 10, 0, -50], [0, 0, 10, 20], [0, 0, 0, 1]])
    assert img.meta["unit"] == "angstrom" and img.meta["mrc_mode"] == 2

    out = tmp_path / "out"
    _saver(out, ".mrc", output_dtype=None)(img)
    with mrcfile.open(out / "map10_out.mrc", permissive=False) as mrc:
        assert mrc.data.dtype == np.float32
        np.testing.assert_array_equal(mrc.data, data)
        assert tuple(mrc.voxel_size.item()) == (10.0, 10.0, 10.0)
        assert tuple(mrc.header.origin.item()) == (100.0, -50.0, 20.0)
    assert _no_temp_files(out)


def test_save_image_picks_our_writers_by_extension() -> None:
    assert image_writer.resolve_writer(".mrc")[0] is MRCWriter
    assert image_writer.resolve_writer("mrcs")[0] is MRCWriter
    assert image_writer.resolve_writer(".map")[0] is MRCWriter
    assert image_writer.resolve_writer(".tif")[0] is TiffWriter
    assert image_writer.resolve_writer(".tiff")[0] is TiffWriter
    assert image_writer.resolve_writer(".nii.gz")  # MONAI's defaults are still there


def test_load_image_auto_selects_readers(tiff16, mrc10) -> None:
    assert LoadImage(dtype=None)(tiff16[0]).shape == (7, 6, 5)
    assert LoadImage(dtype=None)(mrc10[0]).shape == (6, 5, 4)


def test_mrc_int16_dtype_kept_and_cast(tmp_path: Path) -> None:
    data = np.arange(-30, 30, dtype=np.int16).reshape(3, 4, 5)
    write_mrc(tmp_path / "a.mrc", data, voxel_size=(1.5, 2.0, 2.5))
    img = LoadImage(reader=MRCReader(), dtype=None)(tmp_path / "a.mrc")
    assert img.dtype == torch.int16
    np.testing.assert_array_equal(img.pixdim.numpy(), (1.5, 2.0, 2.5))
    _saver(tmp_path / "o", ".mrc", output_dtype=None)(img)
    _saver(tmp_path / "f", ".mrc", output_dtype=np.float32)(img)
    assert mrcfile.read(tmp_path / "o" / "a_out.mrc").dtype == np.int16
    back = mrcfile.read(tmp_path / "f" / "a_out.mrc")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, data)


def test_mrc_axis_order_and_stack_of_files(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (sections, rows, columns)
    with mrcfile.new(tmp_path / "swapped.mrc") as mrc:
        mrc.set_data(data)
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 2, 1, 3  # columns run along Y, rows along X
        mrc.voxel_size = 1.0
    array, meta = (r := MRCReader()).get_data(r.read(tmp_path / "swapped.mrc"))
    np.testing.assert_array_equal(array, data.transpose(1, 2, 0))  # (X, Y, Z)
    write_mrc(tmp_path / "b.mrc", data, voxel_size=3.0)
    write_mrc(tmp_path / "c.mrc", data + 1, voxel_size=3.0)
    both = LoadImage(reader=MRCReader(), dtype=None)([tmp_path / "b.mrc", tmp_path / "c.mrc"])
    assert tuple(both.shape) == (2, 4, 3, 2) and both.meta["original_channel_dim"] == 0


def test_mrcs_written_as_image_stack(tmp_path: Path) -> None:
    affine = torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.zeros(1, 8, 8, 3), affine=affine)
    _saver(tmp_path, ".mrcs", output_dtype=np.float32)(img, filename=tmp_path / "particles")
    with mrcfile.open(tmp_path / "particles.mrcs") as mrc:
        assert mrc.is_image_stack() and mrc.data.shape == (3, 8, 8)
        assert mrc.voxel_size.x == 2.0


# ----------------------------------------------------------------------------------------------
# other TIFF kinds


def test_tiff_2d_uint8(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(0, 256, size=(9, 11), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "em.tif", data, imagej=True, resolution=(1 / 4.6, 1 / 4.6), metadata={"unit": "nm"})
    img = LoadImage(reader=TiffReader(), dtype=None)(tmp_path / "em.tif")
    assert tuple(img.shape) == (11, 9) and img.dtype == torch.uint8
    np.testing.assert_array_equal(img.numpy(), data.T)
    assert tuple(img.pixdim.tolist()) == (4.6, 4.6) and img.meta["unit"] == "nm"
    _saver(tmp_path / "out", ".tif", output_dtype=None)(img)
    with tifffile.TiffFile(tmp_path / "out" / "em_out.tif") as tif:
        np.testing.assert_array_equal(tif.asarray(), data)
        assert tif.series[0].dtype == np.uint8 and tif.series[0].axes == "YX"
        assert _pixel_size(tif.pages[0].tags["XResolution"]) == 4.6
        assert tif.imagej_metadata["unit"] == "nm"


def test_tiff_float32_roundtrip(tmp_path: Path) -> None:
    data = np.random.default_rng(3).normal(size=(3, 8, 6)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", data, imagej=True, metadata={"axes": "ZYX"})
    img = LoadImage(reader=TiffReader(), dtype=None)(tmp_path / "f.tif")
    assert img.dtype == torch.float32 and tuple(img.shape) == (6, 8, 3)
    assert img.meta["unit"] == "pixel"  # uncalibrated: voxel size 1
    assert tuple(img.pixdim.tolist()) == (1.0, 1.0, 1.0)
    _saver(tmp_path / "out", ".tiff", output_dtype=None)(img)
    back = tifffile.imread(tmp_path / "out" / "f_out.tiff")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, data)


def test_tiff_multichannel_imagej(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 4000, size=(4, 2, 6, 5), dtype=np.uint16)  # (Z, C, Y, X)
    tifffile.imwrite(
        tmp_path / "mc.tif",
        data,
        imagej=True,
        resolution=(1 / 0.1, 1 / 0.1),
        metadata={"axes": "ZCYX", "spacing": 0.5, "unit": "um"},
    )
    reader = TiffReader()
    array, meta = reader.get_data(reader.read(tmp_path / "mc.tif"))
    assert array.shape == (5, 6, 4, 2) and meta["original_channel_dim"] == -1  # (X, Y, Z, C)
    np.testing.assert_array_equal(meta["spatial_shape"], (5, 6, 4))
    img = LoadImage(reader=reader, dtype=None, ensure_channel_first=True)(tmp_path / "mc.tif")
    assert tuple(img.shape) == (2, 5, 6, 4)
    np.testing.assert_array_equal(img[1].numpy(), data[:, 1].T)
    _saver(tmp_path / "out", ".tif", output_dtype=np.uint16)(img)
    with tifffile.TiffFile(tmp_path / "out" / "mc_out.tif") as tif:
        assert tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.asarray(), data)
        assert tif.imagej_metadata["spacing"] == 0.5


def test_ome_tiff_physical_size_and_int32(tmp_path: Path) -> None:
    labels = np.random.default_rng(5).integers(0, 70000, size=(3, 4, 5)).astype(np.int32)
    img = MetaTensor(
        torch.from_numpy(labels.T.copy())[None],
        affine=torch.diag(torch.tensor([0.26, 0.26, 0.29, 1.0], dtype=torch.float64)),
        meta={"unit": "um"},
    )
    _saver(tmp_path, ".tif", output_dtype=None)(img, filename=tmp_path / "labels")
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert tif.is_ome and tif.series[0].dtype == np.int32
        np.testing.assert_array_equal(tif.asarray(), labels)
    image = read_tiff(tmp_path / "labels.tif")
    assert image.spacing == VOXEL_UM and image.unit == "um" and image.meta["tiff_kind"] == "ome"


def test_mrc_writer_converts_micrometre_to_angstrom(tiff16, tmp_path: Path) -> None:
    img = LoadImage(reader=TiffReader(), dtype=np.float32)(tiff16[0])
    _saver(tmp_path / "out", ".mrc", output_dtype=np.float32)(img)
    with mrcfile.open(tmp_path / "out" / "stack16_out.mrc") as mrc:
        np.testing.assert_allclose(mrc.voxel_size.item(), (2600.0, 2600.0, 2900.0), rtol=1e-6)
        np.testing.assert_array_equal(mrc.data, tiff16[1].astype(np.float32))


def test_writer_resamples_to_original_affine(tmp_path: Path) -> None:
    img = MetaTensor(
        torch.ones(1, 4, 4, 4),
        affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64)),
        meta={"original_affine": np.eye(4), "spatial_shape": (8, 8, 8)},
    )
    _saver(tmp_path, ".mrc", output_dtype=np.float32, resample=True)(img, filename=tmp_path / "r")
    with mrcfile.open(tmp_path / "r.mrc") as mrc:
        assert mrc.data.shape == (8, 8, 8) and tuple(mrc.voxel_size.item()) == (1.0, 1.0, 1.0)


def test_float_to_uint16_cast_clips_instead_of_wrapping(tmp_path: Path) -> None:
    img = MetaTensor(torch.tensor([[[-5.0, 1.4], [1.6, 70000.0]]]))
    _saver(tmp_path, ".tif", output_dtype=np.uint16)(img, filename=tmp_path / "c")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif"), np.array([[0, 2], [1, 65535]], np.uint16))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 10**6), st.integers(0, 6))
def test_resolution_rational_is_exact_for_decimal_voxel_sizes(n: int, k: int) -> None:
    size = n / 10**k
    num, den = _rational_inverse(size)
    assert num < 2**32 and den < 2**32
    assert float(Fraction(den, num)) == size


# ----------------------------------------------------------------------------------------------
# real data


@pytest.mark.needs_data
def test_real_mrc_template() -> None:
    path = data_root() / "cryoet" / "templates_10A" / "1bxn.mrc"
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    img = LoadImage(reader="emgan_monai.io.MRCReader", dtype=None)(path)
    with mrcfile.open(path) as mrc:
        np.testing.assert_array_equal(img.numpy(), mrc.data.T)
    assert tuple(img.pixdim.tolist()) == (10.0, 10.0, 10.0)
    assert read_image(path)[1] == (10.0, 10.0, 10.0)


@pytest.mark.needs_data
def test_real_fluorescence_stack(tmp_path: Path) -> None:
    path = data_root() / "fluorescence" / "nuclei.tif"
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    reader = TiffReader()
    array, meta = reader.get_data(reader.read(path))
    assert array.dtype == np.uint16 and array.shape == (256, 256, 60)
    img = LoadImage(reader=reader, dtype=None)(path)
    # the file carries no voxel size: write the known cells3d one, as a user would
    img.affine = torch.diag(torch.tensor([0.26, 0.26, 0.29, 1.0], dtype=torch.float64))
    _saver(tmp_path, ".tif", output_dtype=None)(img)
    with tifffile.TiffFile(tmp_path / "nuclei_out.tif") as tif:
        back = tif.asarray()
        assert tif.imagej_metadata["spacing"] == 0.29
        assert _pixel_size(tif.pages[0].tags["XResolution"]) == 0.26
    assert back.dtype == np.uint16 and back.shape == (60, 256, 256)
    np.testing.assert_array_equal(back, tifffile.imread(path))


# ----------------------------------------------------------------------------------------------
# plain helpers and errors


@pytest.mark.parametrize(
    ("name", "array", "voxel"),
    [
        ("v.mrc", np.arange(24, dtype=np.float32).reshape(2, 3, 4), (30.0, 20.0, 10.0)),
        ("i.mrc", np.arange(12, dtype=np.int16).reshape(3, 4), (5.0, 5.0)),
        ("v.tif", np.arange(24, dtype=np.uint16).reshape(2, 3, 4), (0.29, 0.26, 0.26)),
        ("i.tiff", np.arange(12, dtype=np.float32).reshape(3, 4), (0.5, 0.25)),
        ("i.png", np.arange(12, dtype=np.uint8).reshape(3, 4), (1.0, 1.0)),
        ("i16.png", np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000, (1.0, 1.0)),
    ],
)
def test_read_write_image_roundtrip(tmp_path: Path, name: str, array: np.ndarray, voxel: tuple) -> None:
    write_image(tmp_path / name, array, voxel_size=voxel)
    back, back_voxel = read_image(tmp_path / name)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)
    assert back_voxel == voxel
    assert _no_temp_files(tmp_path)


def test_write_image_refuses_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "keep.tif"
    write_image(path, np.zeros((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="keep.tif"):
        write_image(path, np.ones((4, 4), np.uint8))
    np.testing.assert_array_equal(read_image(path)[0], 0)
    write_image(path, np.ones((4, 4), np.uint8), overwrite=True)
    np.testing.assert_array_equal(read_image(path)[0], 1)
    assert _no_temp_files(tmp_path)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match=r"x\.mrc.*float64"):
        write_image(tmp_path / "x.mrc", np.zeros((2, 2, 2)))
    with pytest.raises(ImageWriteError, match="unsupported image file extension"):
        write_image(tmp_path / "x.jpg2", np.zeros((2, 2), np.uint8))
    assert list(tmp_path.iterdir()) == []


def _truncate(path: Path) -> Path:
    raw = path.read_bytes()
    bad = path.with_name("truncated_" + path.name)
    bad.write_bytes(raw[: len(raw) // 2])
    return bad


@pytest.mark.parametrize("kind", ["imagej", "plain", "ome"])
def test_truncated_tiff_raises_naming_file(tmp_path: Path, kind: str) -> None:
    data = np.arange(4 * 30 * 40, dtype=np.uint16).reshape(4, 30, 40)
    path = tmp_path / f"{kind}.tif"
    kwargs = {"imagej": {"imagej": True, "metadata": {"axes": "ZYX"}}, "plain": {}, "ome": {"ome": True}}[kind]
    tifffile.imwrite(path, data, photometric="minisblack", **kwargs)
    bad = _truncate(path)
    with pytest.raises(ImageReadError, match=f"truncated_{kind}.tif"):
        TiffReader().read(bad)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(bad)
    # LoadImage() selects TiffReader by suffix and lets its error through; with an explicit reader (name, dotted
    # path or instance) MONAI would fall back to PIL, so the error comes from get_data and still names the file
    for reader in (None, "TiffReader", "emgan_monai.io.TiffReader", TiffReader()):
        with pytest.raises(ImageReadError, match=f"truncated_{kind}.tif"):
            LoadImage(reader=reader)(bad)


def test_truncated_and_corrupt_mrc_raise_naming_file(mrc10, tmp_path: Path) -> None:
    bad = _truncate(mrc10[0])
    with pytest.raises(ImageReadError, match="truncated_map10.mrc"):
        MRCReader().read(bad)
    for reader in (None, "MRCReader", MRCReader()):
        with pytest.raises(ImageReadError, match="truncated_map10.mrc"):
            LoadImage(reader=reader)(bad)
    junk = tmp_path / "junk.mrc"
    junk.write_bytes(b"\x01" * 2000)
    with pytest.raises(ImageReadError, match="junk.mrc"):
        read_mrc(junk)


def test_missing_empty_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(ImageFileNotFoundError, match="nope.tif") as err:
        read_image(tmp_path / "nope.tif")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    (tmp_path / "empty.mrc").touch()
    with pytest.raises(ImageReadError, match="empty.mrc.*empty"):
        read_image(tmp_path / "empty.mrc")
    (tmp_path / "a.xyz").write_bytes(b"123")
    with pytest.raises(ImageReadError, match="a.xyz.*unsupported"):
        read_image(tmp_path / "a.xyz")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageReadError, match="bad.png"):
        read_image(tmp_path / "bad.png")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png")[0].shape == (3, 3)


def test_truncated_png_with_explicit_reader_names_file(tmp_path: Path) -> None:
    """``LoadImage(reader="PNGReader")`` on a truncated PNG: no bare PIL ``OSError``, an error naming the file."""
    from emgan_monai.io import PNGReader

    good = tmp_path / "cells.png"
    Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(good)
    bad = _truncate(good)
    for reader in (None, "PNGReader", PNGReader()):
        with pytest.raises(ImageReadError, match="truncated_cells.png"):
            LoadImage(reader=reader)(bad)
    with pytest.raises(ImageReadError, match="truncated_cells.png"):
        PNGReader().read(bad)  # called directly, read() raises at once
    np.testing.assert_array_equal(
        np.asarray(LoadImage(reader="PNGReader", image_only=True)(good)).T, np.asarray(Image.open(good))
    )
