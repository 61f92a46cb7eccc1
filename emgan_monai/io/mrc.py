"""MRC/CCP4 maps, tomograms and image stacks (``.mrc``, ``.mrcs``, ``.map``, ``.rec``) for MONAI.

Uses :mod:`mrcfile`. MRC stores data as ``(sections, rows, columns)``, normally ``(Z, Y, X)``;
:class:`MRCReader` returns ``(X, Y, Z)`` (MONAI's convention, see :mod:`emgan_monai.io.base`),
honouring the header's ``mapc/mapr/maps`` axis order. Voxel sizes are in Angstrom.

Origin convention (as UCSF ChimeraX): the physical position of voxel ``(0, 0, 0)`` is the header
``origin`` when it is non-zero, otherwise ``(nxstart, nystart, nzstart) * voxel_size``. The writer
stores that position in ``origin`` and sets ``n*start`` to zero.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mrcfile
import mrcfile.utils
import numpy as np
from monai.config import DtypeLike, PathLike
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.data.utils import is_supported_format
from monai.utils import MetaKeys, ensure_tuple

from emgan_monai.io.base import (
    VoxelImageWriter,
    atomic_write,
    cast_array,
    check_image_size,
    check_readable,
    raise_failed_reads,
    read_or_defer,
    spatial_meta,
    unit_scale,
)
from emgan_monai.io.errors import ImageReadError, ImageWriteError

__all__ = ["MRC_SUFFIXES", "MRCImage", "MRCReader", "MRCWriter", "read_mrc", "write_mrc"]

#: File name suffixes handled by :class:`MRCReader` (gzip/bzip2-compressed files are read too).
MRC_SUFFIXES: tuple[str, ...] = ("mrc", "mrcs", "map", "rec", "st", "ali")

#: dtypes that MRC modes 0, 1, 2, 6 and 12 store (mrcfile writes uint8 as mode 6, i.e. uint16).
MRC_DTYPES: tuple[np.dtype, ...] = tuple(np.dtype(t) for t in (np.int8, np.int16, np.uint16, np.float16, np.float32))


@dataclass
class MRCImage:
    """An MRC file read into memory.

    Attributes
    ----------
    data
        Voxels in file order ``(Z, Y, X)`` (``(Y, X)`` for a single section), native byte order.
    voxel_size
        Voxel size in Angstrom, ``(x, y, z)``.
    origin
        Position of voxel ``(0, 0, 0)`` in Angstrom, ``(x, y, z)``.
    header
        Useful header fields (``mrc_mode``, ``mrc_ispg``, ``mrc_dmin`` ...), plain Python values.
    filename
        The file read.
    axis_order
        Which cell axis (1 = X, 2 = Y, 3 = Z) each axis of ``data`` runs along.
    """

    data: np.ndarray
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    header: dict[str, Any] = field(default_factory=dict)
    filename: str = ""
    axis_order: tuple[int, ...] = (3, 2, 1)


def _is_compressed(path) -> bool:
    with open(path, "rb") as fh:
        magic = fh.read(3)
    return magic[:2] == b"\x1f\x8b" or magic == b"BZh"


def _check_mrc_header(path, permissive: bool, max_bytes: int | None) -> None:
    """Read only the header; refuse absurd or truncated data blocks before mrcfile allocates them."""
    if not _is_compressed(path) and os.path.getsize(path) < 1024:
        raise ImageReadError(
            path, f"truncated MRC file: {os.path.getsize(path):,} bytes, shorter than the 1,024-byte MRC header"
        )
    with mrcfile.open(path, mode="r", permissive=permissive, header_only=True) as mrc:
        hdr = mrc.header
        if hdr is None:
            raise ImageReadError(path, "no valid MRC header (file too short or not an MRC file)")
        shape = (int(hdr.nz), int(hdr.ny), int(hdr.nx))
        mode = int(hdr.mode)
        nsymbt = int(hdr.nsymbt)
        dtype = mrcfile.utils.data_dtype_from_header(hdr)
    nbytes = check_image_size(path, shape, dtype, max_bytes, what="MRC header")
    if nsymbt < 0:
        raise ImageReadError(path, f"invalid MRC header: negative extended header size nsymbt={nsymbt}")
    if mode != 101 and not _is_compressed(path):  # mode 101 packs two voxels per byte
        expected = 1024 + nsymbt + nbytes
        size = os.path.getsize(path)
        if size < expected:
            raise ImageReadError(
                path,
                f"truncated MRC file: the header announces {shape} voxels of {np.dtype(dtype)} "
                f"({expected:,} bytes with headers) but the file has {size:,} bytes",
            )


def read_mrc(filename: PathLike, permissive: bool = False, max_bytes: int | None = None) -> MRCImage:
    """Read an MRC file.

    The header is read and checked first: a data block larger than the size limit
    (:func:`~emgan_monai.io.base.max_image_bytes`) or longer than the file is refused before anything is allocated.

    Parameters
    ----------
    filename
        Path to the file.
    permissive
        Passed to :func:`mrcfile.open`; ``False`` (default) rejects invalid headers.
    max_bytes
        Size limit in bytes for this call; ``None`` uses :func:`~emgan_monai.io.base.max_image_bytes`.

    Returns
    -------
    MRCImage
        Data in file order ``(Z, Y, X)`` plus voxel size, origin and header fields.

    Raises
    ------
    ImageReadError
        Missing, truncated or invalid file, or a 4D volume stack.
    ImageTooLargeError
        The header announces more bytes than allowed (nothing is allocated).
    """
    path = check_readable(filename)
    try:
        _check_mrc_header(path, permissive, max_bytes)
        with mrcfile.open(path, mode="r", permissive=permissive) as mrc:
            if mrc.data is None:
                raise ImageReadError(path, "no data block could be read (truncated file?)")
            data = np.asarray(mrc.data)
            hdr = mrc.header
            voxel = tuple(float(v) for v in (mrc.voxel_size.x, mrc.voxel_size.y, mrc.voxel_size.z))
            origin = np.array([float(hdr.origin.x), float(hdr.origin.y), float(hdr.origin.z)])
            nstart = np.array([int(hdr.nxstart), int(hdr.nystart), int(hdr.nzstart)])
            axis_order: tuple[int, ...] = (int(hdr.maps), int(hdr.mapr), int(hdr.mapc))
            labels = [bytes(lbl).rstrip(b"\0 ").decode("ascii", "replace") for lbl in hdr.label[: int(hdr.nlabl)]]
            header = {
                "mrc_mode": int(hdr.mode),
                "mrc_ispg": int(hdr.ispg),
                "mrc_nstart": tuple(int(v) for v in nstart),
                "mrc_origin": tuple(float(v) for v in origin),
                "mrc_cella": tuple(float(v) for v in (hdr.cella.x, hdr.cella.y, hdr.cella.z)),
                "mrc_sampling": (int(hdr.mx), int(hdr.my), int(hdr.mz)),
                "mrc_axis_order": (int(hdr.mapc), int(hdr.mapr), int(hdr.maps)),
                "mrc_dmin": float(hdr.dmin),
                "mrc_dmax": float(hdr.dmax),
                "mrc_dmean": float(hdr.dmean),
                "mrc_rms": float(hdr.rms),
                "mrc_exttyp": bytes(hdr.exttyp).decode("ascii", "replace").strip("\0 "),
                "mrc_labels": "\n".join(labels),
                "mrc_is_image_stack": bool(mrc.is_image_stack()),
                "mrc_is_volume_stack": bool(mrc.is_volume_stack()),
            }
    except ImageReadError:
        raise
    except MemoryError as e:
        raise ImageReadError(path, f"not enough memory to read the MRC data ({e})") from e
    except Exception as e:  # mrcfile/numpy raise ValueError, OSError, EOFError, TypeError ... on malformed input
        raise ImageReadError(path, f"invalid or truncated MRC file ({type(e).__name__}: {e})") from e
    if data.size == 0:
        raise ImageReadError(path, f"the MRC data block is empty (shape {data.shape})")
    if header["mrc_is_volume_stack"] or data.ndim > 3:
        raise ImageReadError(path, f"4D MRC volume stacks are not supported (data shape {data.shape})")
    if sorted(axis_order) != [1, 2, 3]:
        raise ImageReadError(path, f"invalid axis order mapc/mapr/maps = {header['mrc_axis_order']}")
    if data.ndim == 2:  # a single section: mrcfile drops the section axis
        axis_order = axis_order[1:]
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if not all(np.isfinite(v) and v > 0 for v in voxel):
        warnings.warn(f"{path}: invalid voxel size {voxel} in the MRC header, using 1 Angstrom", stacklevel=2)
        voxel = tuple(v if np.isfinite(v) and v > 0 else 1.0 for v in voxel)
    if not np.any(origin):  # ChimeraX convention: fall back to the index origin
        origin = nstart * np.asarray(voxel)
    return MRCImage(
        data=data,
        voxel_size=voxel,  # type: ignore[arg-type]
        origin=tuple(float(v) for v in origin),  # type: ignore[arg-type]
        header=header,
        filename=str(filename),
        axis_order=axis_order,
    )


def write_mrc(
    filename: PathLike,
    data: np.ndarray,
    voxel_size: float | Sequence[float] | np.ndarray = 1.0,
    origin: Sequence[float] | np.ndarray | None = None,
    image_stack: bool | None = None,
    overwrite: bool = True,
) -> None:
    """Write ``data`` in file order ``(Z, Y, X)`` or ``(Y, X)`` to an MRC file, atomically.

    Parameters
    ----------
    filename
        Destination; ``.mrcs`` files are marked as image stacks (``ispg = 0``).
    data
        Array of dtype int8, int16, uint16, float16 or float32 (uint8 is stored as uint16, mode 6,
        by mrcfile). Other dtypes raise :class:`ImageWriteError`: cast first.
    voxel_size
        Angstrom per voxel, a scalar or ``(x, y, z)``.
    origin
        Position of voxel ``(0, 0, 0)`` in Angstrom, ``(x, y, z)``.
    image_stack
        Mark a 3D array as a stack of 2D images; default: ``True`` for ``.mrcs`` files.
    overwrite
        Replace an existing file; ``False`` raises :class:`FileExistsError`.
    """
    data = np.asarray(data)
    name = str(filename)
    if data.ndim not in (2, 3):
        raise ImageWriteError(name, f"MRC holds 2D or 3D arrays, got shape {data.shape}")
    if data.dtype == np.uint8:
        warnings.warn(f"{name}: MRC has no uint8 mode; mrcfile stores uint8 data as uint16 (mode 6)", stacklevel=2)
    elif data.dtype.newbyteorder("=") not in MRC_DTYPES:
        raise ImageWriteError(
            name, f"dtype {data.dtype} has no MRC mode; use one of {[str(d) for d in MRC_DTYPES]} (or uint8)"
        )
    vs = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
    if image_stack is None:
        image_stack = name.lower().endswith(".mrcs")
    with atomic_write(filename, overwrite=overwrite) as tmp:
        with mrcfile.new(tmp, overwrite=False) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            if data.ndim == 3:
                if image_stack:
                    mrc.set_image_stack()
                else:
                    mrc.set_volume()
            mrc.voxel_size = tuple(float(v) for v in vs)
            mrc.header.nxstart = mrc.header.nystart = mrc.header.nzstart = 0
            if origin is not None:
                o = np.zeros(3)
                o[: len(origin)] = np.asarray(origin, dtype=np.float64)
                mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = (float(v) for v in o)


class MRCReader(ImageReader):
    """MONAI :class:`~monai.data.ImageReader` for MRC files, via :mod:`mrcfile`.

    ``get_data`` returns the array with spatial axes ``(X, Y, Z)`` (or ``(X, Y)``) and metadata
    holding ``affine`` (Angstrom, diagonal voxel size, origin translation), ``original_affine``,
    ``pixdim`` (NIfTI style), ``spacing``, ``spatial_shape``, ``original_channel_dim``
    (``nan``: no channel), ``unit = "angstrom"`` and the header fields prefixed ``mrc_``.
    Several files are stacked along a new first (channel) axis, as MONAI's readers do.

    Usable as ``LoadImage(reader=MRCReader())`` or ``LoadImage(reader="emgan_monai.io.MRCReader")``.

    Parameters
    ----------
    permissive
        Passed to :func:`mrcfile.open`; keep ``False`` to reject invalid files.
    dtype
        Optional dtype to cast to in ``get_data``; ``None`` keeps the file's dtype.
    max_bytes
        Refuse files whose header announces more bytes (see :func:`read_mrc`); ``None``: the global limit.
    """

    def __init__(
        self, permissive: bool = False, dtype: DtypeLike = None, max_bytes: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        self.permissive = permissive
        self.dtype = dtype
        self.max_bytes = max_bytes
        if kwargs:
            raise TypeError(f"MRCReader got unexpected arguments {sorted(kwargs)}")

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """``True`` when every file name ends in an MRC suffix (optionally ``.gz``/``.bz2``)."""
        return is_supported_format(filename, MRC_SUFFIXES)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> MRCImage | list[MRCImage]:
        """Read one file or a list of files into :class:`MRCImage` objects."""
        permissive = kwargs.pop("permissive", self.permissive)
        max_bytes = kwargs.pop("max_bytes", self.max_bytes)
        images = [
            read_or_defer(functools.partial(read_mrc, name, permissive=permissive, max_bytes=max_bytes))
            for name in ensure_tuple(data)
        ]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: MRCImage | Sequence[MRCImage]) -> tuple[np.ndarray, dict]:
        """Return ``(array (X, Y[, Z]) or (N, X, Y[, Z]) for N files, metadata)``; raises a failed read's error."""
        raise_failed_reads(img)
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for image in ensure_tuple(img):
            # file axis k runs along cell axis image.axis_order[k]; put cell axes X, Y, Z first to last
            perm = [image.axis_order.index(a) for a in sorted(image.axis_order)]
            array = np.transpose(image.data, perm)
            if self.dtype is not None:
                array = cast_array(array, self.dtype)
            r = array.ndim
            header = dict(image.header)
            header.update(spatial_meta(image.voxel_size[:r], image.origin[:r], channel_dim=None, unit="angstrom"))
            header[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape)
            header["filename_or_obj"] = image.filename
            header["original_dtype"] = str(array.dtype)  # LoadImage turns uint16 into int32; writers restore it
            arrays.append(array)
            _copy_compatible_dict(header, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta


class MRCWriter(VoxelImageWriter):
    """MONAI :class:`~monai.data.ImageWriter` for MRC files (``SaveImage(writer=MRCWriter)``).

    Registered for ``.mrc``, ``.mrcs``, ``.map`` and ``.rec`` when :mod:`emgan_monai.io` is
    imported, so ``SaveImage(output_ext=".mrc", output_dtype=None)`` picks it. Writes the voxel
    size and origin from the metadata's affine, converted to Angstrom when ``meta["unit"]`` names
    another length unit (e.g. an image read from a TIFF in micrometres). The dtype is kept
    (``output_dtype=None``) or cast to ``output_dtype``. Files are written atomically.

    Parameters
    ----------
    output_dtype
        dtype of the file; ``None`` keeps the data's dtype. Must have an MRC mode (see
        :func:`write_mrc`).
    """

    def write(self, filename: PathLike, verbose: bool = False, **kwargs: Any) -> None:
        """Write the data set by ``set_data_array``/``set_metadata`` to ``filename``.

        ``kwargs`` may hold ``image_stack`` (see :func:`write_mrc`).
        """
        super(VoxelImageWriter, self).write(filename, verbose=verbose)
        if self.has_channel:
            raise ImageWriteError(filename, f"MRC cannot store channels, got data {self.data_obj.shape} (X, Y[, Z], C)")
        scale = unit_scale(self.unit, "angstrom")
        if self.unit is not None and scale is None:
            warnings.warn(f"{filename}: unknown unit '{self.unit}', writing the voxel size as Angstrom", stacklevel=2)
        scale = 1.0 if scale is None else scale
        spacing = np.ones(3)
        spacing[: self.spatial_ndim] = self.spacing * scale
        if self.spatial_ndim == 2:
            spacing[2] = spacing[0]
        write_mrc(
            filename,
            self.output_array().T,  # (X, Y[, Z]) -> (Z, Y, X)
            voxel_size=spacing,
            origin=self.origin * scale,
            image_stack=kwargs.get("image_stack"),
            overwrite=True,
        )
