"""Atomic models (PDB, mmCIF) read as density maps, for MONAI's ``LoadImage``.

:class:`AtomicModelReader` turns a model into a noise-free density map at a given voxel size
(:func:`~emgan_monai.physics.atomic_models.density_from_pdb`: Gaussian atoms, resolution ``2 * voxel_size``, the
model's weighted centre at the array centre), with the same metadata as :class:`~emgan_monai.io.MRCReader`: spatial
axes ``(X, Y, Z)``, ``affine = diag(voxel_size)``, ``unit = "angstrom"``. It is not registered for automatic
selection (it needs the voxel size): pass it to ``LoadImage(reader=...)``, e.g. in a bundle config::

    {"_target_": "LoadImaged", "keys": "image",
     "reader": [{"_target_": "emgan_monai.io.AtomicModelReader", "voxel_size": "@voxel_size"}]}
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.config import PathLike
from monai.data.image_reader import ImageReader, _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, ensure_tuple

from emgan_monai.io.base import raise_failed_reads, read_or_defer, spatial_meta
from emgan_monai.io.errors import ImageReadError

__all__ = ["ATOMIC_MODEL_SUFFIXES", "AtomicModelReader"]

#: File name suffixes of atomic models (PDB, and mmCIF optionally gzip-compressed).
ATOMIC_MODEL_SUFFIXES: tuple[str, ...] = (".pdb", ".ent", ".cif", ".mmcif", ".cif.gz", ".mmcif.gz")


class AtomicModelReader(ImageReader):
    """MONAI :class:`~monai.data.ImageReader` that reads PDB / mmCIF atomic models as density maps.

    ``get_data`` returns a float32 ``(X, Y, Z)`` map (``(N, X, Y, Z)`` for ``N`` files of equal size) and metadata
    with ``affine = diag(voxel_size)``, ``pixdim``, ``spacing``, ``original_channel_dim = nan`` (no channel),
    ``unit = "angstrom"`` and ``filename_or_obj``.

    Parameters
    ----------
    voxel_size
        Voxel size of the map in A (the map's resolution is twice that).
    max_memory_gb
        Refuse, before building it, a model whose map would need more memory than this (GiB) at 64 bytes per voxel
        (the float64 grid and its blurred copy, then the inference's float32 copies); ``None``: no limit.
    """

    def __init__(self, voxel_size: float = 10.0, max_memory_gb: float | None = None, **kwargs: Any) -> None:
        super().__init__()
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        self.voxel_size = float(voxel_size)
        self.max_voxels = None if max_memory_gb is None else int(float(max_memory_gb) * 2**30 / 64)
        if kwargs:
            raise TypeError(f"AtomicModelReader got unexpected arguments {sorted(kwargs)}")

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """``True`` when every file name ends in a PDB / mmCIF suffix (case-insensitive)."""
        return all(str(f).lower().endswith(ATOMIC_MODEL_SUFFIXES) for f in ensure_tuple(filename))

    def _read_one(self, name: PathLike) -> tuple[np.ndarray, str]:
        from emgan_monai.errors import DataError
        from emgan_monai.physics.atomic_models import density_from_pdb

        try:
            density, _ = density_from_pdb(name, voxel_size=self.voxel_size, box=None, max_voxels=self.max_voxels)
        except FileNotFoundError as err:
            raise ImageReadError(name, "atomic model file not found") from err
        except DataError as err:  # too many voxels ...: a read error naming the file
            raise ImageReadError(name, err.problem) from err
        except ValueError as err:  # no ATOM/HETATM records; the message names the file already
            raise ImageReadError(name, str(err).split(": ", 1)[-1]) from err
        return density, str(name)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        """Build the density map of each file; ``(Z, Y, X)`` arrays with their file names.

        Raises
        ------
        ValueError
            A file without an atomic-model suffix (not an :class:`ImageReadError`): ``LoadImage``, which tries the
            readers of a ``reader=[...]`` list in turn, goes on to the next one (e.g. :class:`MRCReader` for maps).
        """
        if not self.verify_suffix(data):
            raise ValueError(f"{data}: not an atomic model (suffixes {', '.join(ATOMIC_MODEL_SUFFIXES)})")
        maps = [read_or_defer(functools.partial(self._read_one, name)) for name in ensure_tuple(data)]
        return maps if len(maps) > 1 else maps[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Return ``(array (X, Y, Z) or (N, X, Y, Z), metadata)``; raises a failed read's error."""
        raise_failed_reads(img)
        items = [img] if not isinstance(img, list) else img
        arrays: list[np.ndarray] = []
        compatible_meta: dict = {}
        for density, name in items:
            array = np.ascontiguousarray(np.transpose(density))  # (Z, Y, X) as built -> MONAI's (X, Y, Z)
            header = spatial_meta([self.voxel_size] * 3, None, channel_dim=None, unit="angstrom")
            header[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape)
            header["filename_or_obj"] = name
            header["original_dtype"] = str(array.dtype)
            arrays.append(array)
            _copy_compatible_dict(header, compatible_meta)
        return _stack_images(arrays, compatible_meta), compatible_meta
