"""Density maps and atomic models given at inference -> the D-domain shape maps the cryo-ET generator takes.

:func:`density_input` reads one MRC map / PDB or mmCIF model, resamples it to the bundle's voxel size, turns it into
a shape map (:func:`~emgan_monai.data.cryoet_domains.shape_map`) and fits it to the generator's box
(:func:`fit_to_box`: centred, never cropped in silence); :func:`load_density_inputs` does so for every file of a
folder. Outputs are ``(box, box, box)`` float32 arrays in ``[0, 1]`` (larger, multiple-of-4 shapes with
``allow_larger``); feed them through :func:`~emgan_monai.transforms.cryoet_value_range.density_to_network`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emgan_monai.data.cryoet import DENSITY_SUFFIXES, density_datalist, load_density
from emgan_monai.data.cryoet_domains import shape_map
from emgan_monai.physics.volume_geometry import pad_or_crop

__all__ = ["density_input", "fit_to_box", "load_density_inputs"]


def load_density_inputs(
    input_dir: str | Path, voxel_size: float = 10.0, box: int = 32, iso: float = 0.3, sigma: float = 1.0,
    allow_larger: bool = False,
) -> list[tuple[str, np.ndarray]]:
    """Read every density map (MRC) / atomic model (PDB, mmCIF) of a folder as a D-domain shape map.

    Returns ``[(name, shape map in [0, 1]), ...]`` sorted by name (see :func:`density_input`).
    """
    return [(item["label"], density_input(item["image"], voxel_size, box, iso, sigma, allow_larger))
            for item in density_datalist(input_dir, DENSITY_SUFFIXES)]


def density_input(
    path: str | Path, voxel_size: float = 10.0, box: int = 32, iso: float = 0.3, sigma: float = 1.0,
    allow_larger: bool = False,
) -> np.ndarray:
    """One density map (MRC) / atomic model (PDB, mmCIF) as the D-domain shape map the generator was trained on.

    The map is resampled to ``voxel_size`` (anti-aliased), turned into a shape map (:func:`shape_map`) and fitted to
    the box by :func:`fit_to_box`: a molecule that fits is centred in a ``(box,)*3`` volume; a larger one is refused
    with a clear error, or (``allow_larger``) returned whole, padded to a multiple of 4, for tiled (sliding-window)
    inference. Never cropped in silence. float32 in ``[0, 1]`` (feed it through :func:`density_to_network`).
    """
    return fit_to_box(shape_map(load_density(path, voxel_size=voxel_size, box=None), iso=iso, sigma=sigma), box,
                      allow_larger=allow_larger, name=str(path), voxel_size=voxel_size)


def fit_to_box(
    m: np.ndarray, box: int, allow_larger: bool = False, name: str = "", voxel_size: float | None = None,
    multiple: int = 4,
) -> np.ndarray:
    """Fit a ``(D, H, W)`` shape map to the generator's box without cutting the molecule.

    The molecule is the region where ``m >= 0.5``. If it fits in ``box`` the output is the ``(box,)*3`` window
    centred on it (padding with zeros where the map is smaller); only empty margin is dropped. Otherwise, with
    ``allow_larger``, the whole map zero-padded to at least ``box`` and to a multiple of ``multiple`` per axis (for
    a sliding-window inferer); without it a :class:`~emgan_monai.errors.DataError` explains the options.
    """
    from emgan_monai.errors import DataError

    m = np.asarray(m, dtype=np.float32)
    support = np.argwhere(m >= 0.5)
    if support.size == 0:
        return pad_or_crop(m, box)
    lo, hi = support.min(0), support.max(0) + 1
    extent = hi - lo
    if np.all(extent <= box):
        centre = (lo + hi) // 2
        start = centre - box // 2
        out = np.zeros((box,) * 3, dtype=np.float32)
        src_lo = np.maximum(start, 0)
        src_hi = np.minimum(start + box, m.shape)
        dst_lo = src_lo - start
        dst_hi = dst_lo + (src_hi - src_lo)
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi))] = m[tuple(slice(a, b) for a, b in zip(src_lo, src_hi))]
        return out
    if not allow_larger:
        vs = f" at {voxel_size} A/voxel" if voxel_size else ""
        raise DataError(
            name, f"the molecule spans {tuple(int(e) for e in extent)} voxels{vs}, more than the generator's box "
            f"{box}: it would be cut. Generate it whole through the sliding window (--tile_large_maps true, the "
            "default of inference.json; inference_uncertainty.json also needs --fix_noise false)"
        )
    shape = [max(box, int(np.ceil(n / multiple)) * multiple) for n in m.shape]
    return pad_or_crop(m, shape)
