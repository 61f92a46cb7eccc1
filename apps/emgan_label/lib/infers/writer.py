"""Result writer shared by the tasks: TIFF / NIfTI / MRC through MONAI's writer registry, with voxel size.

``import emgan_monai.io`` registers :class:`emgan_monai.io.TiffWriter` (8/16-bit and float TIFF with ImageJ/OME voxel
size) and :class:`emgan_monai.io.MRCWriter` (voxel size in Angstrom) with MONAI, so
``monai.data.image_writer.resolve_writer`` picks them by extension; ``.nii``/``.nii.gz`` go to MONAI's
``NibabelWriter`` (voxel size in the affine).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.image_writer import resolve_writer
from monai.data.utils import affine_to_spacing

import emgan_monai.io  # noqa: F401  (registers the TIFF / MRC writers)

SUPPORTED_EXTENSIONS = (".tif", ".tiff", ".nii.gz", ".nii", ".mrc")


def _extension(ext: str | None, default: str) -> str:
    ext = (ext or default).lower()
    ext = ext if ext.startswith(".") else f".{ext}"
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(f"result_extension must be one of {SUPPORTED_EXTENSIONS}, got {ext!r}")
    return ext


def write_result(
    pred: torch.Tensor | np.ndarray,
    meta: Mapping[str, Any] | None,
    extension: str | None = None,
    dtype: str | np.dtype | None = None,
    default_extension: str = ".tif",
) -> tuple[str, dict[str, Any]]:
    """Write ``pred`` ``(C, X, Y[, Z])`` (MONAI axis order, channel first) to a temporary file.

    Parameters
    ----------
    pred
        Result image; values already in the range of ``dtype`` (integer dtypes are rounded and clipped).
    meta
        MONAI metadata giving the voxel size: ``affine`` (and ``unit`` for TIFF/MRC); identity when absent.
    extension
        ``.tif`` (ImageJ/OME TIFF, ``([Z,] [C,] Y, X)``), ``.nii.gz`` / ``.nii`` or ``.mrc`` (single channel).
    dtype
        File dtype (``"uint16"``, ``"uint8"``, ``"float32"``); ``None`` keeps the data's dtype.

    Returns
    -------
    tuple
        ``(path, info)`` with ``info = {"shape", "dtype", "voxel_size", "unit", "format"}``; ``shape`` is the
        array in MONAI order ``(C, X, Y[, Z])``.
    """
    ext = _extension(extension, default_extension)
    data = pred.detach().cpu() if isinstance(pred, torch.Tensor) else torch.as_tensor(np.asarray(pred))
    if isinstance(data, MetaTensor):
        data = data.as_tensor()
    if ext == ".mrc" and data.shape[0] != 1:
        raise ValueError(f"MRC holds one channel; the result has {data.shape[0]} (use .tif or .nii.gz)")
    meta = dict(meta or {})
    r = data.ndim - 1
    affine = meta.get("affine")
    affine = np.eye(r + 1) if affine is None else np.asarray(affine, dtype=np.float64)
    writer_cls = resolve_writer(ext)[0]
    out_dtype = np.dtype(dtype) if dtype is not None else None
    if out_dtype is not None and np.issubdtype(out_dtype, np.integer) and data.is_floating_point():
        info = np.iinfo(out_dtype)  # round and clip here: NibabelWriter would truncate
        data = data.round().clamp(float(info.min), float(info.max))
    kwargs: dict[str, Any] = {} if out_dtype is None else {"output_dtype": out_dtype}
    if issubclass(writer_cls, emgan_monai.io.TiffWriter):
        kwargs["unit"] = None  # no unit in the metadata (PNG, plain TIFF input): write an uncalibrated TIFF
    writer = writer_cls(**kwargs)
    writer.set_data_array(data, channel_dim=0)
    # target = current affine and shape: MONAI's resampling is a no-op (resample=False trips NibabelWriter in 1.6.1)
    writer.set_metadata(
        {"affine": affine, "original_affine": affine, "spatial_shape": tuple(data.shape[1:]), "unit": meta.get("unit")},
        resample=True,
    )
    # a fresh name (MONAI Label deletes the file once it has been sent)
    path = os.path.join(tempfile.gettempdir(), f"emgan_label_{uuid.uuid4().hex}{ext}")
    writer.write(path)
    info = {
        "shape": [int(s) for s in data.shape],
        "dtype": str(out_dtype if out_dtype is not None else np.dtype(str(data.dtype).removeprefix("torch."))),
        "voxel_size": [float(v) for v in affine_to_spacing(affine, r=min(r, affine.shape[0] - 1))],
        "unit": meta.get("unit") or ("mm" if ext.startswith(".nii") else "pixel"),
        "format": ext,
    }
    return path, info
