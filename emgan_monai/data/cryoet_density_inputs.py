"""Density maps and atomic models given at inference -> the D-domain shape maps the cryo-ET generator takes.

:func:`density_input` reads one MRC map / PDB or mmCIF model, resamples it to the bundle's voxel size, turns it into
a shape map (:func:`~emgan_monai.transforms.density_maps.shape_map`) and fits it to the generator's box
(:func:`fit_to_box`: centred, never cropped in silence); :func:`load_density_inputs` does so for every file of a
folder. Outputs are ``(box, box, box)`` float32 arrays in ``[0, 1]`` (larger, multiple-of-4 shapes with
``allow_larger``); feed them through :func:`~emgan_monai.transforms.cryoet_value_range.density_to_network`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emgan_monai.data.cryoet import DENSITY_SUFFIXES, density_datalist, load_density
from emgan_monai.transforms.density_maps import fit_to_box, shape_map

__all__ = ["density_input", "load_density_inputs"]


def load_density_inputs(
    input_dir: str | Path,
    voxel_size: float = 10.0,
    box: int = 32,
    iso: float = 0.3,
    sigma: float = 1.0,
    allow_larger: bool = False,
) -> list[tuple[str, np.ndarray]]:
    """Read every density map (MRC) / atomic model (PDB, mmCIF) of a folder as a D-domain shape map.

    Returns ``[(name, shape map in [0, 1]), ...]`` sorted by name (see :func:`density_input`).
    """
    return [
        (item["label"], density_input(item["image"], voxel_size, box, iso, sigma, allow_larger))
        for item in density_datalist(input_dir, DENSITY_SUFFIXES)
    ]


def density_input(
    path: str | Path,
    voxel_size: float = 10.0,
    box: int = 32,
    iso: float = 0.3,
    sigma: float = 1.0,
    allow_larger: bool = False,
) -> np.ndarray:
    """One density map (MRC) / atomic model (PDB, mmCIF) as the D-domain shape map the generator was trained on.

    The map is resampled to ``voxel_size`` (anti-aliased), turned into a shape map (:func:`shape_map`) and fitted to
    the box by :func:`fit_to_box`: a molecule that fits is centred in a ``(box,)*3`` volume; a larger one is refused
    with a clear error, or (``allow_larger``) returned whole, padded to a multiple of 4, for tiled (sliding-window)
    inference. Never cropped in silence. float32 in ``[0, 1]`` (feed it through :func:`density_to_network`).
    """
    return fit_to_box(
        shape_map(load_density(path, voxel_size=voxel_size, box=None), iso=iso, sigma=sigma),
        box,
        allow_larger=allow_larger,
        name=str(path),
        voxel_size=voxel_size,
    )
