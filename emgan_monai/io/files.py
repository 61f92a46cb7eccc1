"""Plain read/write helpers for scripts: numpy arrays in file axis order, no MONAI metadata.

``read_image`` / ``write_image`` pick MRC, TIFF or PNG by the file extension. Arrays are in the
file's own axis order (``(Z, Y, X)`` for volumes, ``(Y, X)`` for images, TIFF series axes as
stored), unlike the MONAI readers, which reverse the spatial axes.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import PurePath

import numpy as np
from monai.config import PathLike
from PIL import Image

from emgan_monai.io.base import atomic_write, check_image_size, check_readable
from emgan_monai.io.errors import ImageReadError, ImageTooLargeError, ImageWriteError
from emgan_monai.io.mrc import MRC_SUFFIXES, read_mrc, write_mrc
from emgan_monai.io.tiff import TIFF_SUFFIXES, read_tiff, write_tiff

__all__ = ["read_image", "open_png", "read_png", "write_image", "image_format"]

_PNG_SUFFIXES = ("png",)


def image_format(filename: PathLike) -> str:
    """``"mrc"``, ``"tiff"`` or ``"png"`` from the file name's extension (``.gz``/``.bz2`` allowed for MRC).

    Raises
    ------
    ValueError
        For any other extension.
    """
    suffixes = [s.lower().lstrip(".") for s in PurePath(str(filename)).suffixes]
    if suffixes and suffixes[-1] in ("gz", "bz2") and len(suffixes) > 1 and suffixes[-2] in MRC_SUFFIXES:
        return "mrc"
    last = suffixes[-1] if suffixes else ""
    if last in MRC_SUFFIXES:
        return "mrc"
    if last in TIFF_SUFFIXES:
        return "tiff"
    if last in _PNG_SUFFIXES:
        return "png"
    known = ", ".join(f".{s}" for s in (*MRC_SUFFIXES, *TIFF_SUFFIXES, *_PNG_SUFFIXES))
    raise ValueError(f"'{filename}': unsupported image file extension '.{last}' (supported: {known})")


def read_image(filename: PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read an MRC, TIFF or PNG file.

    Parameters
    ----------
    filename
        Path to the file.

    Returns
    -------
    array : numpy.ndarray
        The data in file axis order with the file's dtype: MRC ``(Z, Y, X)`` / ``(Y, X)``; TIFF the
        first series as stored (e.g. ``(Z, Y, X)``, ``(Z, C, Y, X)``); PNG ``(Y, X[, S])``.
    voxel_size : tuple of float
        Size of the spatial axes in file order (``(z, y, x)`` or ``(y, x)``): Angstrom for MRC,
        the file's unit for TIFF (1.0 where uncalibrated), 1.0 for PNG.

    Raises
    ------
    ImageReadError
        Missing, truncated or corrupt file, or an unsupported extension.
    """
    try:
        kind = image_format(filename)
    except ValueError as e:
        raise ImageReadError(filename, str(e).split(": ", 1)[-1]) from None
    if kind == "mrc":
        mrc = read_mrc(filename)
        # file axis k runs along cell axis mrc.axis_order[k] (1 = X, 2 = Y, 3 = Z)
        return mrc.data, tuple(float(mrc.voxel_size[a - 1]) for a in mrc.axis_order)
    if kind == "tiff":
        tif = read_tiff(filename)
        spatial = [a for a in tif.axes if a in "ZQIYX" and (a in "YX" or tif.data.shape[tif.axes.index(a)] > 1)]
        voxel = tuple(float(tif.spacing.get("Z" if a in "QI" else a, 1.0)) for a in spatial)
        return tif.data, voxel
    return read_png(filename), (1.0, 1.0)


def open_png(filename: PathLike, max_bytes: int | None = None) -> Image.Image:
    """Open and fully decode a PNG file with Pillow, checking the header's size before decoding.

    Parameters
    ----------
    filename
        Path to the file.
    max_bytes
        Size limit in bytes; ``None`` uses :func:`~emgan_monai.io.base.max_image_bytes`.

    Returns
    -------
    PIL.Image.Image
        The decoded image (its file is closed).

    Raises
    ------
    ImageReadError
        Missing, truncated, corrupt or empty file, or not a PNG.
    ImageTooLargeError
        The header announces more bytes than allowed, or more pixels than Pillow's decompression-bomb guard.
    """
    path = check_readable(filename)
    try:
        with Image.open(path) as im:
            if im.format != "PNG":
                raise ImageReadError(path, f"not a PNG file (Pillow identifies it as {im.format})")
            width, height = im.size
            bands = len(im.getbands())
            depth = 2 if im.mode.startswith("I;16") else 4 if im.mode in ("I", "F") else 1
            check_image_size(path, (height, width, bands), np.dtype(f"u{depth}"), max_bytes, what="PNG header")
            im.load()
            img = im.copy()
    except ImageReadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(path, f"refused by Pillow's decompression-bomb guard ({e})") from e
    except MemoryError as e:
        raise ImageReadError(path, f"not enough memory to decode the PNG data ({e})") from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ... on malformed files
        raise ImageReadError(path, f"invalid or truncated PNG file ({type(e).__name__}: {e})") from e
    if img.width == 0 or img.height == 0:
        raise ImageReadError(path, f"the PNG image is empty ({img.width} x {img.height})")
    img.filename = str(filename)  # ``copy`` drops it; MONAI's PILReader metadata report it
    return img


def read_png(filename: PathLike, max_bytes: int | None = None) -> np.ndarray:
    """Read a PNG file as ``(Y, X[, S])`` with its own dtype (see :func:`open_png` for the checks and errors)."""
    return np.asarray(open_png(filename, max_bytes=max_bytes))


def write_image(
    filename: PathLike,
    array: np.ndarray,
    voxel_size: float | Sequence[float] | None = None,
    overwrite: bool = False,
    axes: str | None = None,
    unit: str | None = None,
) -> None:
    """Write ``array`` (file axis order) as MRC, TIFF or PNG by extension, atomically.

    Parameters
    ----------
    filename
        Destination; ``.mrc``/``.mrcs``/``.map``/``.rec``, ``.tif``/``.tiff`` or ``.png``.
    array
        ``(Z, Y, X)`` or ``(Y, X)``; for TIFF any layout described by ``axes``; for PNG ``(Y, X)``
        or ``(Y, X, 3|4)`` of dtype uint8 or uint16 (grey only).
    voxel_size
        Scalar or one value per spatial axis in file order (``(z, y, x)`` / ``(y, x)``):
        Angstrom for MRC, ``unit`` for TIFF. PNG stores no voxel size (a warning is given
        when one other than 1 is passed).
    overwrite
        Replace an existing file; by default an existing file raises :class:`FileExistsError`.
    axes
        TIFF axis letters (default ``"YX"``/``"ZYX"``); must be ``None`` for MRC and PNG.
    unit
        TIFF length unit; default ``"um"`` (MRC is always Angstrom).

    Raises
    ------
    FileExistsError
        ``filename`` exists and ``overwrite`` is ``False``.
    ImageWriteError
        Unsupported extension, dtype or shape.
    """
    array = np.asarray(array)
    try:
        kind = image_format(filename)
    except ValueError as e:
        raise ImageWriteError(filename, str(e).split(": ", 1)[-1]) from None
    if kind == "mrc":
        if axes is not None:
            raise ImageWriteError(filename, "MRC files take (Z, Y, X) or (Y, X) arrays; axes= applies to TIFF")
        vs = np.broadcast_to(np.asarray(1.0 if voxel_size is None else voxel_size, dtype=np.float64), (array.ndim,))
        xyz = np.ones(3)
        xyz[: array.ndim] = vs[::-1]
        if array.ndim == 2:
            xyz[2] = xyz[0]
        write_mrc(filename, array, voxel_size=xyz, overwrite=overwrite)
        return
    if kind == "tiff":
        ax = (axes or ("ZYX"[-array.ndim :] if array.ndim in (2, 3) else "")).upper()
        if len(ax) != array.ndim:
            raise ImageWriteError(filename, f"pass axes=... matching the array shape {array.shape}")
        spatial = [a for a in ax if a in "ZYX"]
        spacing: dict[str, float] = {}
        if voxel_size is not None:
            vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (len(spatial),))
            spacing = dict(zip(spatial, vs.tolist()))
        write_tiff(filename, array, axes=ax, spacing=spacing, unit=unit or "um", overwrite=overwrite)
        return
    if axes is not None:
        raise ImageWriteError(filename, "PNG files take (Y, X) or (Y, X, S) arrays; axes= applies to TIFF")
    if voxel_size is not None and np.any(np.asarray(voxel_size, dtype=np.float64) != 1.0):
        warnings.warn(f"{filename}: PNG stores no voxel size; {voxel_size} is not written", stacklevel=2)
    grey = array.ndim == 2
    if not (grey or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise ImageWriteError(filename, f"PNG holds (Y, X) or (Y, X, 3|4) arrays, got shape {array.shape}")
    if array.dtype != np.uint8 and not (grey and array.dtype == np.uint16):
        raise ImageWriteError(filename, f"PNG holds uint8 (or grey uint16) data, got {array.dtype}: cast first")
    with atomic_write(filename, overwrite=overwrite) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
