"""Shared pieces of the MRC and TIFF readers/writers.

Axis convention (the same as MONAI's ``ITKReader``/``PILReader``): files store volumes in C order
``(Z, Y, X)``; readers return the spatial axes reversed, ``(X, Y, Z)`` (or ``(X, Y)``), followed by
the channel axis when there is one, so that ``LoadImage`` gives spatial shape ``(X, Y, Z)`` and an
affine whose first column is the x voxel size. Writers take MONAI's channel-first data
``(C, X, Y[, Z])`` and reverse the axes back to file order. A file read and written back is
therefore bit-identical in array layout.

Physical units: MRC voxel sizes are in Angstrom; TIFF voxel sizes are in the unit the file states
(``meta["unit"]``, normalised to ``"angstrom"``, ``"nm"``, ``"um"``, ``"mm"``), else 1.0 with
``meta["unit"] = "pixel"``.

Loading strictly: ``LoadImage()`` (no ``reader=``) picks these readers by suffix once
:mod:`emgan_monai.io` is imported and lets their :class:`~emgan_monai.io.errors.ImageReadError`
through. With an explicit ``reader=`` (a name or an instance), MONAI catches any exception of the
reader's ``read`` and falls back to its other readers; PIL would then open a truncated TIFF or PNG
lazily and fail later with a bare ``OSError: image file is truncated`` that names no file. So, when
called by ``LoadImage``, the readers' ``read`` returns a :class:`FailedRead` instead of raising, and
their ``get_data`` (which ``LoadImage`` calls outside its fallback loop) raises the
:class:`~emgan_monai.io.errors.ImageReadError` naming the file (:func:`read_or_defer`). Called
directly, ``read`` raises as usual.

One module, about 520 lines, for one concept: the rules both formats' readers and writers must follow identically
(axis order, units, size limits, strict failure, atomic writes, the common writer class); splitting it would put
those rules in more than one place.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from monai.config import DtypeLike, NdarrayOrTensor, PathLike
from monai.data.image_writer import ImageWriter
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import affine_to_spacing, to_affine_nd
from monai.transforms import SpatialResample
from monai.utils import MetaKeys, SpaceKeys, convert_data_type, get_equivalent_dtype
from monai.utils.type_conversion import UNSUPPORTED_TYPES

from emgan_monai.io.errors import ImageFileNotFoundError, ImageReadError, ImageTooLargeError

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "FailedRead",
    "raise_failed_reads",
    "read_or_defer",
    "atomic_write",
    "check_image_size",
    "check_readable",
    "max_image_bytes",
    "set_max_image_bytes",
    "normalise_unit",
    "unit_scale",
    "spatial_meta",
    "cast_array",
    "VoxelImageWriter",
]

#: Length of one unit in Angstrom, keyed by the normalised unit name.
_UNIT_IN_ANGSTROM: dict[str, float] = {"angstrom": 1.0, "nm": 10.0, "um": 1.0e4, "mm": 1.0e7}

_UNIT_ALIASES: dict[str, str] = {
    "a": "angstrom",
    "\u00c5": "angstrom",  # LATIN CAPITAL LETTER A WITH RING ABOVE
    "\u212b": "angstrom",  # ANGSTROM SIGN
    "angstrom": "angstrom",
    "angstroms": "angstrom",
    "nm": "nm",
    "nanometer": "nm",
    "nanometre": "nm",
    "um": "um",
    "\u00b5m": "um",  # MICRO SIGN
    "\u03bcm": "um",  # GREEK SMALL LETTER MU
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "micrometre": "um",
    "mm": "mm",
    "millimeter": "mm",
    "millimetre": "mm",
}


def normalise_unit(unit: Any) -> str | None:
    """Map a length unit as written by ImageJ/OME/users to ``"angstrom" | "nm" | "um" | "mm"``.

    Returns ``None`` for a missing or uncalibrated unit (``None``, ``""``, ``"pixel"``); an
    unknown unit string is returned unchanged (stripped).
    """
    if unit is None:
        return None
    text = str(unit).strip()
    if text.lower() in ("", "pixel", "pixels", "px", "none"):
        return None
    return _UNIT_ALIASES.get(text.lower(), _UNIT_ALIASES.get(text, text))


def unit_scale(unit_from: str | None, unit_to: str | None) -> float | None:
    """Factor converting lengths in ``unit_from`` to ``unit_to``; ``None`` when either is unknown."""
    src, dst = normalise_unit(unit_from), normalise_unit(unit_to)
    if src not in _UNIT_IN_ANGSTROM or dst not in _UNIT_IN_ANGSTROM:
        return None
    if src == dst:
        return 1.0
    return _UNIT_IN_ANGSTROM[src] / _UNIT_IN_ANGSTROM[dst]


#: Default limit on the decoded size of one image file (16 GiB): far above any section, stack or binned tomogram
#: this project trains on, far below what a corrupt header can announce (an MRC header can claim 2**93 bytes).
DEFAULT_MAX_IMAGE_BYTES: int = 16 * 2**30
_max_image_bytes: int | None = None


def max_image_bytes() -> int:
    """Largest decoded image (in bytes) the readers accept.

    :func:`set_max_image_bytes` wins, then the environment variable ``EMGAN_MAX_IMAGE_BYTES`` (an integer number of
    bytes), then :data:`DEFAULT_MAX_IMAGE_BYTES`.
    """
    if _max_image_bytes is not None:
        return _max_image_bytes
    env = os.environ.get("EMGAN_MAX_IMAGE_BYTES")
    if env:
        try:
            value = int(float(env))
        except ValueError:
            raise ValueError(f"EMGAN_MAX_IMAGE_BYTES must be a number of bytes, got {env!r}") from None
        if value <= 0:
            raise ValueError(f"EMGAN_MAX_IMAGE_BYTES must be positive, got {env!r}")
        return value
    return DEFAULT_MAX_IMAGE_BYTES


def set_max_image_bytes(limit: int | None) -> None:
    """Set the readers' size limit for this process (``None`` restores the environment/default)."""
    global _max_image_bytes
    if limit is not None and int(limit) <= 0:
        raise ValueError(f"the image size limit must be positive, got {limit}")
    _max_image_bytes = None if limit is None else int(limit)


def check_image_size(
    filename: PathLike, shape: Sequence[int], dtype: Any, max_bytes: int | None = None, what: str = "header"
) -> int:
    """Refuse an image whose announced ``shape`` x ``dtype`` exceeds the limit, before anything is allocated.

    Parameters
    ----------
    filename
        File the shape comes from (for the message).
    shape
        Shape announced by the file's header.
    dtype
        Data type announced by the header (anything :class:`numpy.dtype` takes).
    max_bytes
        Limit in bytes; ``None`` uses :func:`max_image_bytes`.
    what
        Where the shape comes from, for the message.

    Returns
    -------
    int
        The announced size in bytes.

    Raises
    ------
    ImageReadError
        A negative dimension.
    ImageTooLargeError
        The announced size exceeds the limit.
    """
    dims = [int(s) for s in shape]
    if any(d < 0 for d in dims):
        raise ImageReadError(filename, f"invalid {what}: negative dimension in shape {tuple(dims)}")
    limit = max_image_bytes() if max_bytes is None else int(max_bytes)
    nbytes = int(np.prod(dims, dtype=object)) * int(np.dtype(dtype).itemsize)  # exact: Python ints do not overflow
    if nbytes > limit:
        raise ImageTooLargeError(
            filename,
            f"the {what} announces shape {tuple(dims)} of {np.dtype(dtype)} = {nbytes:,} bytes, more than the limit "
            f"of {limit:,} bytes (a corrupt header, or raise the limit with EMGAN_MAX_IMAGE_BYTES / max_bytes=)",
        )
    return nbytes


class FailedRead:
    """Result of a reader's ``read`` inside MONAI's ``LoadImage`` when the file could not be read.

    Attributes
    ----------
    error : ImageReadError
        The error, naming the file; the reader's ``get_data`` raises it (:func:`raise_failed_reads`).
    """

    __slots__ = ("error",)

    def __init__(self, error: ImageReadError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"FailedRead({self.error})"


def _load_image_code():
    from monai.transforms.io.array import LoadImage

    return LoadImage.__call__.__code__


def read_or_defer(read: Callable[[], Any]) -> Any:
    """Run ``read()``; if it raises :class:`ImageReadError` and the reader's ``read`` (the caller of this function)
    was called by MONAI's ``LoadImage``, return :class:`FailedRead` so that MONAI does not swallow the error and
    fall back to a lenient reader; the reader's ``get_data`` then raises it. Any other caller gets the error.

    Parameters
    ----------
    read
        A call without arguments that reads one file (e.g. ``lambda: read_tiff(name)``).
    """
    try:
        return read()
    except ImageReadError as e:
        # the reader's read() is at most a few frames up (a comprehension may add one); LoadImage.__call__ right above
        frame = sys._getframe(1) if hasattr(sys, "_getframe") else None
        code = _load_image_code()
        for _ in range(4):
            if frame is None:
                break
            if frame.f_code is code:
                return FailedRead(e)
            frame = frame.f_back
        raise


def raise_failed_reads(img: Any) -> None:
    """Raise the error of the first :class:`FailedRead` in ``img`` (one image or a sequence of images)."""
    for item in img if isinstance(img, (list, tuple)) else (img,):
        if isinstance(item, FailedRead):
            raise item.error


def check_readable(filename: PathLike) -> Path:
    """Return ``filename`` as a :class:`~pathlib.Path`, raising a clear error when it is no file.

    Raises
    ------
    ImageFileNotFoundError
        The path does not exist.
    ImageReadError
        The path is a folder or is empty.
    """
    path = Path(os.fspath(filename)).expanduser()
    if not path.exists():
        raise ImageFileNotFoundError(path, "no such file")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty")
    return path


@contextmanager
def atomic_write(filename: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``filename``; move it onto ``filename`` when the block succeeds.

    The temporary file lives in the same folder (same file system), so the final move is atomic:
    readers never see a half-written image, and a failed write leaves any previous file intact.

    Parameters
    ----------
    filename
        Destination path.
    overwrite
        When ``False``, raise :class:`FileExistsError` if ``filename`` exists (checked before
        writing and again, atomically where the file system allows hard links, when moving).
    """
    path = Path(os.fspath(filename)).expanduser()
    if not overwrite and path.exists():
        raise FileExistsError(f"'{path}' already exists; pass overwrite=True to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp{''.join(path.suffixes)}")
    try:
        yield tmp
        if not tmp.is_file():
            raise RuntimeError(f"writing '{path}' produced no file")
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails atomically if `path` appeared meanwhile
            except FileExistsError:
                raise FileExistsError(f"'{path}' already exists; pass overwrite=True to replace it") from None
            except OSError:  # file system without hard links
                if path.exists():
                    raise FileExistsError(f"'{path}' already exists; pass overwrite=True to replace it") from None
                os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def spatial_meta(
    spacing: Sequence[float],
    origin: Sequence[float] | None = None,
    channel_dim: int | float | None = None,
    unit: str | None = None,
) -> dict[str, Any]:
    """Build the MONAI metadata shared by the readers for spatial axes ``(X, Y[, Z])``.

    Parameters
    ----------
    spacing
        Voxel size per spatial axis in MONAI order ``(x, y[, z])``.
    origin
        Physical position of voxel ``(0, 0[, 0])`` in the same unit; zeros when ``None``.
    channel_dim
        Index of the channel axis in the returned array, or ``None`` for no channel
        (stored as ``float("nan")``, MONAI's "no_channel" marker).
    unit
        Normalised length unit of ``spacing`` and ``origin``; ``None`` is stored as ``"pixel"``
        (uncalibrated, as ImageJ says).

    Returns
    -------
    dict
        ``affine`` / ``original_affine`` (``(r + 1, r + 1)`` float64, diagonal spacing, translation
        origin), ``pixdim`` (NIfTI style: ``[1, sx, sy, sz, 1, ...]``, length 8), ``spacing``,
        ``space`` (RAS, i.e. the affine is used as is), ``original_channel_dim`` and ``unit``.
    """
    r = len(spacing)
    affine = np.eye(r + 1, dtype=np.float64)
    affine[np.arange(r), np.arange(r)] = np.asarray(spacing, dtype=np.float64)
    if origin is not None:
        affine[:r, r] = np.asarray(origin, dtype=np.float64)
    pixdim = np.ones(8, dtype=np.float64)
    pixdim[1 : r + 1] = np.asarray(spacing, dtype=np.float64)
    return {
        MetaKeys.AFFINE: affine,
        MetaKeys.ORIGINAL_AFFINE: affine.copy(),
        MetaKeys.PIXDIM: pixdim,
        "spacing": np.asarray(spacing, dtype=np.float64),
        MetaKeys.SPACE: SpaceKeys.RAS,
        MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if channel_dim is None else channel_dim,
        "unit": "pixel" if unit is None else unit,
    }


def cast_array(array: np.ndarray, dtype: DtypeLike) -> np.ndarray:
    """Cast ``array`` to ``dtype``; float to integer rounds and clips to the integer range.

    A plain ``astype`` would wrap negative or too large values around (e.g. ``-1.0 -> 65535``).
    """
    target = np.dtype(get_equivalent_dtype(dtype, np.ndarray))
    if array.dtype == target:
        return array
    if np.issubdtype(target, np.integer) and not np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(target)
        array = np.clip(np.rint(array), info.min, info.max)
    return array.astype(target)


class VoxelImageWriter(ImageWriter):
    """Base of :class:`~emgan_monai.io.MRCWriter` and :class:`~emgan_monai.io.TiffWriter`.

    Handles MONAI's channel-first input, the affine (voxel size and origin) and the output dtype;
    subclasses implement :meth:`write`. After :meth:`set_data_array` and :meth:`set_metadata`,
    ``self.data_obj`` is a numpy array ``(X, Y[, Z][, C])`` (channel last, no channel axis for
    single-channel data), ``self.spacing`` / ``self.origin`` are float64 arrays in ``(x, y[, z])``
    order and ``self.unit`` is the normalised unit from the metadata (or ``None``).

    Parameters
    ----------
    output_dtype
        dtype of the written file; ``None`` keeps the dtype of the data, or the file's dtype
        recorded in ``meta["original_dtype"]`` where MONAI widened it (uint16 loaded as int32).
        Float data written as integers is rounded and clipped to the integer range.
    kwargs
        Further attributes, as for :class:`monai.data.ImageWriter`.
    """

    output_dtype: DtypeLike
    data_obj: np.ndarray
    has_channel: bool
    spacing: np.ndarray
    origin: np.ndarray
    unit: str | None

    def __init__(self, output_dtype: DtypeLike = None, **kwargs: Any) -> None:
        super().__init__(output_dtype=output_dtype, has_channel=False, unit=None, meta={}, **kwargs)
        self.affine: np.ndarray | None = None

    def set_data_array(
        self, data_array: NdarrayOrTensor, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs: Any
    ) -> None:
        """Store ``data_array`` channel-last as numpy.

        Parameters
        ----------
        data_array
            ``(C, X, Y[, Z])`` with ``channel_dim=0`` (MONAI's layout), or ``(X, Y[, Z])`` with
            ``channel_dim=None``.
        channel_dim
            Channel axis of ``data_array``; ``None`` for no channel.
        squeeze_end_dims
            Drop a single channel and trailing singleton spatial axes (``(X, Y, 1) -> (X, Y)``).
        """
        data = self.convert_to_channel_last(
            data=data_array, channel_dim=channel_dim, squeeze_end_dims=False, spatial_ndim=None
        )
        data = convert_data_type(data, np.ndarray)[0]
        self.has_channel = data.shape[-1] > 1
        if not self.has_channel:
            data = data[..., 0]
            while squeeze_end_dims and data.ndim > 2 and data.shape[-1] == 1:
                data = data[..., 0]
        spatial_ndim = data.ndim - int(self.has_channel)
        if spatial_ndim not in (2, 3):
            raise ValueError(
                f"{type(self).__name__} writes 2D or 3D images, got data of shape {tuple(data_array.shape)} "
                f"(channel_dim={channel_dim}) with {spatial_ndim} spatial dimensions"
            )
        self.data_obj = data

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes of the stored data (2 or 3)."""
        return int(self.data_obj.ndim - int(self.has_channel))

    def set_metadata(self, meta_dict: Mapping | None = None, resample: bool = False, **options: Any) -> None:
        """Take the voxel size, origin and unit from ``meta_dict`` (optionally resampling first).

        Parameters
        ----------
        meta_dict
            Metadata with ``affine`` (current affine of the data), optionally ``original_affine``,
            ``spatial_shape`` and ``unit``. Without an affine the voxel size is 1.
        resample
            Resample the data from ``affine`` to ``original_affine`` / ``spatial_shape`` before
            writing (as MONAI's writers do); the voxel size written is then the original one.
        options
            ``mode``, ``padding_mode``, ``align_corners``, ``dtype`` for
            :class:`monai.transforms.SpatialResample`.
        """
        meta_dict = dict(meta_dict or {})
        original_affine, affine, spatial_shape = self.get_meta_info(meta_dict)
        if self.output_dtype is None:
            self.output_dtype = self._kept_dtype(meta_dict.get("original_dtype"))
        r = self.spatial_ndim
        current = self._as_affine(affine, r)
        if resample and original_affine is not None:
            target = self._as_affine(original_affine, r)
            if not np.allclose(current, target) or (
                spatial_shape is not None
                and tuple(int(s) for s in np.ravel(spatial_shape)[:r]) != self.data_obj.shape[:r]
            ):
                current = self._resample(current, target, spatial_shape, **options)
        self.affine = current
        self.spacing = np.asarray(affine_to_spacing(current, r=r), dtype=np.float64)
        self.origin = np.asarray(current[:r, r], dtype=np.float64)
        self.unit = normalise_unit(meta_dict.get("unit"))
        self.meta = meta_dict

    def _kept_dtype(self, original_dtype: Any) -> np.dtype:
        """dtype to write for ``output_dtype=None``: the data's, or the file's when MONAI widened it.

        ``LoadImage``/``MetaTensor`` turn uint16 data into int32 (and uint32/uint64 into int64:
        ``monai.utils.type_conversion.UNSUPPORTED_TYPES``) because torch supports few operations on
        unsigned types. When the metadata record such an ``original_dtype`` and the values still fit
        it, that dtype is restored, so a uint16 TIFF loaded with ``dtype=None`` is saved as uint16.
        """
        data_dtype = np.dtype(self.data_obj.dtype)
        if original_dtype is None or isinstance(original_dtype, float):  # nan from collated metadata
            return data_dtype
        try:
            orig = np.dtype(str(original_dtype))
        except TypeError:
            return data_dtype
        if UNSUPPORTED_TYPES.get(orig) is not None and np.dtype(UNSUPPORTED_TYPES[orig]) == data_dtype:
            info = np.iinfo(orig)
            if self.data_obj.size == 0 or (self.data_obj.min() >= info.min and self.data_obj.max() <= info.max):
                return orig
        return data_dtype

    @staticmethod
    def _as_affine(affine: Any, r: int) -> np.ndarray:
        if affine is None:
            return np.eye(r + 1, dtype=np.float64)
        if isinstance(affine, torch.Tensor):
            affine = affine.detach().cpu()
        arr = np.asarray(convert_data_type(affine, np.ndarray)[0], dtype=np.float64)
        if arr.ndim == 3:  # a batch of one affine, as left by `decollate_batch` on some paths
            arr = arr[0]
        return to_affine_nd(r, arr)

    def _resample(self, affine: np.ndarray, target: np.ndarray, spatial_shape: Any, **options: Any) -> np.ndarray:
        r = self.spatial_ndim
        data = self.data_obj if self.has_channel else self.data_obj[..., None]
        img = MetaTensor(np.moveaxis(data, -1, 0).astype(np.float32), affine=torch.as_tensor(affine))
        out = SpatialResample(
            mode=options.get("mode", "bilinear"),
            padding_mode=options.get("padding_mode", "border"),
            align_corners=options.get("align_corners", False),
            dtype=options.get("dtype", np.float64),
        )(img, dst_affine=torch.as_tensor(target), spatial_size=None if spatial_shape is None else spatial_shape[:r])
        out_np = np.moveaxis(convert_data_type(out, np.ndarray)[0], 0, -1)
        self.data_obj = out_np if self.has_channel else out_np[..., 0]
        # SpatialResample returns a MetaTensor for a MetaTensor (its return is annotated torch.Tensor)
        return self._as_affine(cast(MetaTensor, out).affine, r)

    def output_array(self) -> np.ndarray:
        """The stored data cast to ``self.output_dtype`` (channel last, MONAI axis order)."""
        return cast_array(np.asarray(self.data_obj), self.output_dtype)

    def write(self, filename: PathLike, verbose: bool = False, **kwargs: Any) -> None:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement write().")
