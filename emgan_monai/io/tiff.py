"""TIFF images and stacks (ImageJ hyperstacks, OME-TIFF, plain) for MONAI, via :mod:`tifffile`.

Axes come from ``TiffFile.series[0].axes``: ``X``/``Y`` are spatial; one of ``Z``, ``Q`` (a generic
axis, e.g. the planes of a shaped tifffile stack) or ``I`` (image sequence) is the depth; ``C``
(channels) or ``S`` (samples, e.g. RGB) is the channel. Other axes (``T`` ...) must have length 1
(or be re-labelled through ``axes=``). :class:`TiffReader` returns ``(X, Y[, Z][, C])`` -- the file's
spatial axes reversed (like MONAI's ``ITKReader``), channel last -- and keeps the dtype.

Voxel size, in this order of precedence:

1. OME-XML ``PhysicalSizeX/Y/Z`` (and their units, micrometre by default);
2. ImageJ: ``XResolution``/``YResolution`` (pixels per ``unit``) and ``spacing`` (z step);
3. ``XResolution``/``YResolution`` with ``ResolutionUnit`` centimetre/millimetre/micrometre
   (converted to micrometre); dots per inch are not a physical pixel size and are ignored;
4. otherwise 1.0 with ``meta["unit"] = "pixel"``.

:class:`TiffWriter` writes ImageJ hyperstacks (uint8, uint16, float32: ImageJ's types) with the
voxel size as ``XResolution``/``YResolution`` + ImageJ ``spacing``/``unit``, and OME-TIFF with
``PhysicalSize*`` for other dtypes. Resolutions are written as exact rationals so that voxel sizes
such as 0.26 um read back bit-identical.

One module, about 480 lines, for one concept: the TIFF reader/writer pair and the axis / voxel-size rules they share
(a file written by :class:`TiffWriter` must read back identically through :class:`TiffReader`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import tifffile
from monai.config import DtypeLike, PathLike
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.data.utils import is_supported_format
from monai.utils import MetaKeys, ensure_tuple

from emgan_monai.io.base import (
    VoxelImageWriter,
    atomic_write,
    check_image_size,
    check_readable,
    normalise_unit,
    raise_failed_reads,
    read_or_defer,
    spatial_meta,
    unit_scale,
)
from emgan_monai.io.errors import ImageReadError, ImageWriteError

__all__ = ["TIFF_SUFFIXES", "TiffImage", "TiffReader", "TiffWriter", "read_tiff", "write_tiff", "split_axes"]

TIFF_SUFFIXES: tuple[str, ...] = ("tif", "tiff")
_DEPTH_AXES = "ZQI"
_CHANNEL_AXES = "CS"
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_OME_UNITS = {"angstrom": "\u00c5", "nm": "nm", "um": "\u00b5m", "mm": "mm"}
_RESUNIT_UM = {3: 1.0e4, 4: 1.0e3, 5: 1.0}  # CENTIMETER, MILLIMETER, MICROMETER -> micrometre per unit
_MAX_RATIONAL = 2**32 - 1


@dataclass
class TiffImage:
    """A TIFF series read into memory.

    Attributes
    ----------
    data
        The first series in file order, e.g. ``(Z, C, Y, X)``; axes labelled by ``axes``.
    axes
        tifffile axis letters of ``data`` (possibly overridden by the reader's ``axes``).
    spacing
        Voxel size per spatial axis letter (``"X"``, ``"Y"``, ``"Z"``), in ``unit``.
    unit
        Normalised length unit (``"um"`` ...) or ``None`` when the file is uncalibrated.
    meta
        Extra metadata: ``tiff_axes``, ``tiff_kind`` (``"imagej"``, ``"ome"``, ``"plain"``).
    filename
        The file read.
    """

    data: np.ndarray
    axes: str
    spacing: dict[str, float] = field(default_factory=dict)
    unit: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    filename: str = ""


@contextmanager
def _tifffile_problems() -> Iterator[list[str]]:
    """Collect tifffile's logged warnings: it logs (and skips) corrupt IFDs instead of raising."""
    problems: list[str] = []
    thread = threading.get_ident()  # ignore records from other threads (e.g. ThreadDataLoader workers)

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread:
                problems.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield problems
    finally:
        logger.removeHandler(handler)


def _rational_inverse(value: float) -> tuple[int, int]:
    """``1 / value`` as a TIFF RATIONAL ``(numerator, denominator)`` such that ``den / num == value``."""
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"voxel size must be positive and finite, got {value}")
    frac = Fraction(value).limit_denominator(min(_MAX_RATIONAL, max(1, int(_MAX_RATIONAL / value))))
    return frac.denominator, frac.numerator


def _resolution_size(tag: tifffile.TiffTag | None) -> float | None:
    """Pixel size ``1 / resolution`` from an ``XResolution``/``YResolution`` tag, computed exactly."""
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    return float(Fraction(int(den), int(num)))


def _ome_spacing(ome_xml: str) -> tuple[dict[str, float], str | None]:
    pixels = tifffile.xml2dict(ome_xml).get("OME", {}).get("Image", {})
    if isinstance(pixels, list):
        pixels = pixels[0]
    pixels = pixels.get("Pixels", {})
    spacing: dict[str, float] = {}
    unit: str | None = None
    for ax in "XYZ":
        size = pixels.get(f"PhysicalSize{ax}")
        if size is None:
            continue
        ax_unit = normalise_unit(pixels.get(f"PhysicalSize{ax}Unit", "\u00b5m"))
        if unit is None:
            unit = ax_unit
        scale = unit_scale(ax_unit, unit) if ax_unit != unit else 1.0
        spacing[ax] = float(size) * (scale if scale is not None else 1.0)
    return spacing, unit


def _file_spacing(tif: tifffile.TiffFile) -> tuple[dict[str, float], str | None, str]:
    """Voxel size per axis letter, unit and the kind of metadata it came from."""
    page = tif.pages.first
    if tif.is_ome and tif.ome_metadata:
        spacing, unit = _ome_spacing(tif.ome_metadata)
        if spacing:
            return spacing, unit, "ome"
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        spacing = {}
        for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
            size = _resolution_size(page.tags.get(tag))
            if size is not None:
                spacing[ax] = size
        if ij.get("spacing") is not None:
            spacing["Z"] = float(ij["spacing"])
        unit = normalise_unit(ij.get("unit"))
        return spacing, unit, "imagej"
    resunit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
    if resunit in _RESUNIT_UM:
        spacing = {}
        for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
            size = _resolution_size(page.tags.get(tag))
            if size is not None:
                spacing[ax] = size * _RESUNIT_UM[resunit]
        return spacing, "um", "plain"
    return {}, None, "ome" if tif.is_ome else "plain"


def read_tiff(filename: PathLike, axes: str | None = None, max_bytes: int | None = None) -> TiffImage:
    """Read the first series of a TIFF file.

    The header is checked before any pixel is read: the series' shape x dtype must not exceed the size limit
    (:func:`~emgan_monai.io.base.max_image_bytes`), and every strip/tile must lie inside the file.

    Parameters
    ----------
    filename
        Path to the file.
    axes
        Override of the file's axis letters (e.g. ``"CYX"`` for a plain 3D file holding channels),
        one letter per axis of the series.
    max_bytes
        Size limit in bytes for this call; ``None`` uses :func:`~emgan_monai.io.base.max_image_bytes`.

    Returns
    -------
    TiffImage
        Data in file order with axis letters, voxel size and unit.

    Raises
    ------
    ImageReadError
        Missing, truncated or corrupt file, or ``axes`` of the wrong length.
    ImageTooLargeError
        The header announces more bytes than allowed (nothing is allocated).
    """
    path = check_readable(filename)
    try:
        with _tifffile_problems() as problems:
            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise ImageReadError(path, "the TIFF file holds no image series")
                series = tif.series[0]
                file_axes = series.axes
                check_image_size(path, series.shape, series.dtype, max_bytes, what="TIFF header")
                size = os.path.getsize(path)
                for page in series.pages:  # every strip/tile must lie inside the file, checked before reading
                    if page is None:
                        continue
                    ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts) if c]
                    if ends and max(ends) > size:
                        raise ImageReadError(path, f"truncated file: image data extend to byte {max(ends)} of {size}")
                data = series.asarray()
                spacing, unit, kind = _file_spacing(tif)
    except ImageReadError:
        raise
    except MemoryError as e:
        raise ImageReadError(path, f"not enough memory to decode the TIFF data ({e})") from e
    except Exception as e:  # tifffile raises many types on malformed input (struct.error, TypeError, ...)
        raise ImageReadError(path, f"invalid or truncated TIFF file ({type(e).__name__}: {e})") from e
    bad = [p for p in problems if any(w in p.lower() for w in ("invalid", "corrupt", "truncat", "failed"))]
    if bad:
        raise ImageReadError(path, "corrupt or truncated TIFF file: " + "; ".join(bad))
    if data.size == 0:
        raise ImageReadError(path, f"the TIFF series is empty (shape {data.shape})")
    if axes is not None:
        axes = axes.upper()
        if len(axes) != data.ndim:
            raise ImageReadError(path, f"axes='{axes}' has {len(axes)} letters but the data have shape {data.shape}")
    return TiffImage(
        data=data,
        axes=axes or file_axes,
        spacing=spacing,
        unit=unit,
        meta={"tiff_axes": file_axes, "tiff_kind": kind},
        filename=str(filename),
    )


def split_axes(axes: str, shape: Sequence[int], filename: str = "") -> tuple[list[int], int | None, list[int]]:
    """Sort the axes of a TIFF series into MONAI order.

    Parameters
    ----------
    axes
        tifffile axis letters, one per axis of ``shape``.
    shape
        Shape of the series.
    filename
        For error messages.

    Returns
    -------
    spatial
        Indices of the spatial axes in MONAI order ``[X, Y(, depth)]``.
    channel
        Index of the channel axis (length > 1), or ``None``.
    squeeze
        Indices of the remaining axes, all of length 1, to be dropped.
    """
    if "X" not in axes or "Y" not in axes:
        raise ImageReadError(filename, f"TIFF series axes '{axes}' lack X or Y; pass axes=... to the reader")
    spatial = [axes.index("X"), axes.index("Y")]
    depth = [i for i, a in enumerate(axes) if a in _DEPTH_AXES and shape[i] > 1]
    channel = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES and shape[i] > 1]
    if len(depth) > 1:
        raise ImageReadError(filename, f"TIFF series axes '{axes}' {tuple(shape)} have several depth axes")
    if len(channel) > 1:
        raise ImageReadError(filename, f"TIFF series axes '{axes}' {tuple(shape)} have several channel axes")
    spatial += depth
    rest = [i for i in range(len(axes)) if i not in spatial and i not in channel]
    extra = [f"{axes[i]}={shape[i]}" for i in rest if shape[i] > 1]
    if extra:
        raise ImageReadError(
            filename,
            f"TIFF series axes '{axes}' {tuple(shape)}: unsupported non-spatial axes {extra}; "
            "re-label them through axes=... (e.g. T as C)",
        )
    return spatial, (channel[0] if channel else None), rest


def write_tiff(
    filename: PathLike,
    data: np.ndarray,
    axes: str | None = None,
    spacing: Mapping[str, float] | None = None,
    unit: str | None = "um",
    overwrite: bool = True,
    compression: str | None = None,
) -> None:
    """Write ``data`` (file order, e.g. ``(Z, Y, X)``) to a TIFF file, atomically.

    uint8, uint16 and float32 data whose axes follow ImageJ's order ``TZCYXS`` are written as an
    ImageJ hyperstack (``XResolution``/``YResolution`` as exact rationals, ``spacing`` and
    ``unit`` in the ImageJ description); other data as OME-TIFF with ``PhysicalSize*``.

    Parameters
    ----------
    filename
        Destination file.
    data
        Array in file order.
    axes
        Axis letters of ``data``; default ``"YX"`` / ``"ZYX"`` for 2D / 3D data.
    spacing
        Voxel size per axis letter (``{"X": 0.26, "Y": 0.26, "Z": 0.29}``); missing axes are 1.
    unit
        Length unit of ``spacing`` (``None``: uncalibrated, written as ImageJ ``pixel``).
    overwrite
        Replace an existing file; ``False`` raises :class:`FileExistsError`.
    compression
        tifffile compression (e.g. ``"zlib"``); none by default.
    """
    data = np.asarray(data)
    name = str(filename)
    if axes is None:
        if data.ndim not in (2, 3):
            raise ImageWriteError(name, f"pass axes=... for {data.ndim}D data of shape {data.shape}")
        axes = "ZYX"[-data.ndim :]
    axes = axes.upper()
    if len(axes) != data.ndim:
        raise ImageWriteError(name, f"axes '{axes}' do not match data of shape {data.shape}")
    spacing = {k.upper(): float(v) for k, v in (spacing or {}).items()}
    sx, sy, sz = (spacing.get(a, 1.0) for a in "XYZ")
    unit = normalise_unit(unit)
    order = "TZCYXS"
    imagej_order = all(a in order for a in axes) and list(axes) == sorted(axes, key=order.index)
    imagej = data.dtype in _IMAGEJ_DTYPES and imagej_order
    kwargs: dict[str, Any] = {"compression": compression, "resolution": (_rational_inverse(sx), _rational_inverse(sy))}
    if "S" in axes and data.shape[axes.index("S")] in (3, 4):
        kwargs["photometric"] = "rgb"
    elif "S" not in axes:
        kwargs["photometric"] = "minisblack"
    if imagej:
        meta: dict[str, Any] = {"axes": axes, "unit": "pixel" if unit is None else ("micron" if unit == "um" else unit)}
        if "Z" in axes:
            meta["spacing"] = sz
        kwargs.update(imagej=True, metadata=meta)
    else:
        meta = {"axes": axes}
        ome_unit = _OME_UNITS.get(unit or "", None)
        for ax, value in (("X", sx), ("Y", sy), ("Z", sz)):
            if ax in axes:
                meta[f"PhysicalSize{ax}"] = value
                if ome_unit is not None:
                    meta[f"PhysicalSize{ax}Unit"] = ome_unit
        kwargs.update(ome=True, metadata=meta)
    with atomic_write(filename, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, data, **kwargs)


class TiffReader(ImageReader):
    """MONAI :class:`~monai.data.ImageReader` for TIFF files, via :mod:`tifffile`.

    ``get_data`` returns ``(X, Y[, Z][, C])`` (file spatial axes reversed, channel last, dtype kept)
    and metadata with ``affine``, ``original_affine``, ``pixdim`` (NIfTI style), ``spacing``,
    ``spatial_shape``, ``original_channel_dim`` (``-1`` with a channel, ``nan`` without),
    ``unit``, ``tiff_axes`` and ``tiff_kind``. Several files are stacked along a new first axis
    (single-channel files) or concatenated along the channel axis, as MONAI's readers do.

    Usable as ``LoadImage(reader=TiffReader())`` or ``LoadImage(reader="emgan_monai.io.TiffReader")``;
    keep the dtype with ``LoadImage(..., dtype=None)``.

    Parameters
    ----------
    axes
        Override of the files' axis letters (see :func:`read_tiff`).
    max_bytes
        Refuse files whose header announces more bytes (see :func:`read_tiff`); ``None``: the global limit.
    """

    def __init__(self, axes: str | None = None, max_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.axes = axes
        self.max_bytes = max_bytes
        if kwargs:
            raise TypeError(f"TiffReader got unexpected arguments {sorted(kwargs)}")

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """``True`` when every file name ends in ``.tif`` or ``.tiff``."""
        return is_supported_format(filename, TIFF_SUFFIXES)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> TiffImage | list[TiffImage]:
        """Read one file or a list of files into :class:`TiffImage` objects."""
        axes = kwargs.pop("axes", self.axes)
        max_bytes = kwargs.pop("max_bytes", self.max_bytes)
        images = [
            read_or_defer(functools.partial(read_tiff, name, axes=axes, max_bytes=max_bytes))
            for name in ensure_tuple(data)
        ]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: TiffImage | Sequence[TiffImage]) -> tuple[np.ndarray, dict]:
        """Return ``(array (X, Y[, Z][, C]), metadata)``; raises the error of a failed read (see ``read``)."""
        raise_failed_reads(img)
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for image in ensure_tuple(img):
            spatial, channel, squeeze = split_axes(image.axes, image.data.shape, image.filename)
            order = spatial + ([channel] if channel is not None else []) + squeeze
            array = np.transpose(image.data, order)
            array = array.reshape(array.shape[: len(spatial) + (channel is not None)])
            letters = ["X", "Y", "Z"][: len(spatial)]
            spacing = [image.spacing.get(a, 1.0) for a in letters]
            header = dict(image.meta)
            header.update(spatial_meta(spacing, None, channel_dim=-1 if channel is not None else None, unit=image.unit))
            header[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape[: len(spatial)])
            header["filename_or_obj"] = image.filename
            header["original_dtype"] = str(array.dtype)  # LoadImage turns uint16 into int32; writers restore it
            arrays.append(array)
            _copy_compatible_dict(header, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta


class TiffWriter(VoxelImageWriter):
    """MONAI :class:`~monai.data.ImageWriter` for TIFF files (``SaveImage(writer=TiffWriter)``).

    Registered for ``.tif`` and ``.tiff`` (ahead of MONAI's 8-bit ``PILWriter``) when
    :mod:`emgan_monai.io` is imported. MONAI's ``(C, X, Y[, Z])`` data are written in file order
    ``([Z,] [C,] Y, X)``; dtype kept (``output_dtype=None``) or cast; voxel size and unit from the
    metadata (``affine``, ``unit``) as ImageJ resolution/spacing, or OME ``PhysicalSize*`` for
    dtypes ImageJ lacks (see :func:`write_tiff`). Files are written atomically.

    Parameters
    ----------
    output_dtype
        dtype of the file; ``None`` keeps the data's dtype.
    unit
        Unit written when the metadata state none (``None``: uncalibrated); metadata that say the image is
        uncalibrated (``meta["unit"] == "pixel"``, as the readers record for files without a physical size) are
        written uncalibrated.
    compression
        tifffile compression, e.g. ``"zlib"``; none by default.
    """

    def __init__(
        self, output_dtype: DtypeLike = None, unit: str | None = "um", compression: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(output_dtype=output_dtype, default_unit=unit, compression=compression, **kwargs)

    def write(self, filename: PathLike, verbose: bool = False, **kwargs: Any) -> None:
        """Write the data set by ``set_data_array``/``set_metadata`` to ``filename``."""
        super(VoxelImageWriter, self).write(filename, verbose=verbose)
        data = self.output_array()  # (X, Y[, Z][, C])
        r = self.spatial_ndim
        spatial_axes = "XYZ"[:r]
        if self.has_channel:
            data = np.moveaxis(data, -1, 0)  # (C, X, Y[, Z])
            data = np.transpose(data, [0, *range(r, 0, -1)])  # (C, [Z,] Y, X)
            if r == 3:
                data = np.swapaxes(data, 0, 1)  # (Z, C, Y, X)
                axes = "ZCYX"
            else:
                axes = "CYX"
        else:
            data = data.T
            axes = spatial_axes[::-1]
        # an uncalibrated input (meta unit "pixel") stays uncalibrated rather than becoming 1 um per pixel
        unit = self.unit
        if unit is None and "unit" not in (self.meta or {}):  # no unit stated: the writer's default
            unit = normalise_unit(self.default_unit)  # type: ignore[attr-defined]
        write_tiff(
            filename,
            data,
            axes=axes,
            spacing=dict(zip(spatial_axes, self.spacing.tolist())),
            unit=unit,
            overwrite=True,
            compression=kwargs.get("compression", self.compression),  # type: ignore[attr-defined]
        )
