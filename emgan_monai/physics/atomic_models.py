"""Atomic models of macromolecules: reading PDB / mmCIF atoms and building noise-free density maps from them.

One concept: an atomic model in, its atoms or its Gaussian-atom electron density map out (the input of every cryo-ET
simulator in :mod:`emgan_monai.physics` and of :mod:`emgan_monai.data.cryoet`).

Conventions
-----------
* Atom coordinates are returned as in the file, columns ``(x, y, z)``, in angstrom (A).
* Density maps are ``numpy`` arrays indexed ``[z, y, x]`` (ZYX, as read by ``mrcfile``); voxel sizes are in A per
  voxel.
* The weighted centre of mass of a model is placed at the array centre ``(n - 1) / 2``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from emgan_monai.physics.volume_geometry import box_shape

__all__ = [
    "ATOMIC_NUMBERS",
    "MMCIF_SUFFIXES",
    "density_from_pdb",
    "read_atoms",
    "read_mmcif_atoms",
    "read_pdb_atoms",
]

#: Atomic numbers used as scattering weights (a common first-order approximation of the electron
#: scattering factor). Unknown elements fall back to carbon (6) with a warning.
ATOMIC_NUMBERS: dict[str, int] = {
    "H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "NA": 11, "MG": 12, "P": 15, "S": 16, "CL": 17, "K": 19,
    "CA": 20, "MN": 25, "FE": 26, "CO": 27, "NI": 28, "CU": 29, "ZN": 30, "SE": 34, "BR": 35, "I": 53,
}  # fmt: skip


def _element_of(line: str) -> str:
    """Element symbol of a PDB ATOM/HETATM line (columns 77-78, else derived from the atom name)."""
    element = line[76:78].strip().upper() if len(line) >= 78 else ""
    if element:
        return element
    name = line[12:16]
    # PDB convention: a one-letter element is right-justified in columns 13-14 (e.g. " CA " = C alpha).
    candidate = name[:2].strip().upper() if name[0] != " " else name[1].upper()
    return "".join(c for c in candidate if c.isalpha()) or "C"


def read_pdb_atoms(pdb_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Parse ATOM/HETATM records of a PDB file.

    Only the first model (up to the first ``ENDMDL``) is read; alternate locations other than
    blank/``A`` are skipped.

    Parameters
    ----------
    pdb_path
        Path to a ``.pdb`` file.

    Returns
    -------
    coords : np.ndarray
        ``(N, 3)`` float64 atom coordinates in A, columns ``(x, y, z)`` as in the file.
    weights : np.ndarray
        ``(N,)`` float64 atomic numbers.

    Raises
    ------
    ValueError
        If the file holds no atom record or a coordinate field cannot be parsed.
    FileNotFoundError
        If the file does not exist.
    """
    pdb_path = Path(pdb_path)
    if not pdb_path.is_file():
        raise FileNotFoundError(f"PDB file not found: {pdb_path}")
    coords: list[tuple[float, float, float]] = []
    weights: list[int] = []
    unknown: set[str] = set()
    with open(pdb_path, encoding="ascii", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            record = line[:6]
            if record.startswith("ENDMDL"):
                break
            if not (record.startswith("ATOM") or record.startswith("HETATM")):
                continue
            if line[16] not in (" ", "A"):
                continue
            try:
                xyz = (float(line[30:38]), float(line[38:46]), float(line[46:54]))
            except ValueError as err:
                raise ValueError(
                    f"{pdb_path}: line {lineno}: cannot parse atom coordinates: {line.rstrip()!r}"
                ) from err
            element = _element_of(line)
            if element not in ATOMIC_NUMBERS:
                unknown.add(element)
            coords.append(xyz)
            weights.append(ATOMIC_NUMBERS.get(element, 6))
    if not coords:
        raise ValueError(f"{pdb_path}: no ATOM/HETATM records found; cannot build a density map")
    if unknown:
        warnings.warn(f"{pdb_path}: unknown elements {sorted(unknown)} weighted as carbon (Z=6)", stacklevel=2)
    return np.asarray(coords, dtype=np.float64), np.asarray(weights, dtype=np.float64)


#: file-name endings read as mmCIF / PDBx (:func:`read_mmcif_atoms`)
MMCIF_SUFFIXES: tuple[str, ...] = (".cif", ".mmcif", ".cif.gz", ".mmcif.gz")


def read_mmcif_atoms(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of the first model of an mmCIF / PDBx file (``.cif``, ``.mmcif``, optionally gzipped), read with gemmi.

    Large complexes (ribosomes, anything over 99,999 atoms or 62 chains) exist only in this format. Same rules as
    :func:`read_pdb_atoms`: first model, alternate locations other than none/``A`` skipped, atomic numbers as
    weights (unknown elements weighted as carbon with a warning).

    Returns
    -------
    coords : np.ndarray
        ``(N, 3)`` float64 coordinates in A, columns ``(x, y, z)``.
    weights : np.ndarray
        ``(N,)`` float64 atomic numbers.

    Raises
    ------
    FileNotFoundError
        Missing file.
    ValueError
        Unreadable file or no atoms (the message names the file).
    """
    import gemmi

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mmCIF file not found: {path}")
    try:
        structure = gemmi.read_structure(str(path), format=gemmi.CoorFormat.Mmcif)
    except Exception as err:  # gemmi raises RuntimeError/ValueError on malformed files
        raise ValueError(f"{path}: cannot read mmCIF: {err}") from err
    if len(structure) == 0:
        raise ValueError(f"{path}: no model in the mmCIF file; cannot build a density map")
    coords, weights, unknown = [], [], set()
    for chain in structure[0]:
        for residue in chain:
            for atom in residue:
                if atom.altloc not in ("\0", "A"):
                    continue
                z = atom.element.atomic_number
                if z <= 0:
                    unknown.add(atom.element.name)
                    z = 6
                coords.append((atom.pos.x, atom.pos.y, atom.pos.z))
                weights.append(z)
    if not coords:
        raise ValueError(f"{path}: no atoms in the first model; cannot build a density map")
    if unknown:
        warnings.warn(f"{path}: unknown elements {sorted(unknown)} weighted as carbon (Z=6)", stacklevel=2)
    return np.asarray(coords, dtype=np.float64), np.asarray(weights, dtype=np.float64)


def read_atoms(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of a PDB (``.pdb``, ``.ent``) or mmCIF (:data:`MMCIF_SUFFIXES`) model: ``(coords_xyz, atomic_numbers)``."""
    name = Path(path).name.lower()
    if name.endswith(MMCIF_SUFFIXES):
        return read_mmcif_atoms(path)
    return read_pdb_atoms(path)


def density_from_pdb(
    pdb_path: str | os.PathLike,
    voxel_size: float = 10.0,
    resolution: float | None = None,
    box: int | Sequence[int] | None = None,
    max_voxels: int | None = None,
) -> tuple[np.ndarray, float]:
    """Noise-free electron density map of an atomic model (PDB or mmCIF; sum of isotropic Gaussian atoms).

    Each atom contributes a 3D Gaussian weighted by its atomic number. Atoms are first spread onto
    the grid by trilinear interpolation and the grid is then blurred with a Gaussian of standard
    deviation ``sigma = resolution / (pi * sqrt(2))`` A (the convention of UCSF Chimera ``molmap``).
    The weighted centre of mass of the model is placed at the array centre ``(n - 1) / 2``.

    Parameters
    ----------
    pdb_path
        Path to a PDB file (ATOM/HETATM records, first model).
    voxel_size
        Output voxel size in A.
    resolution
        Target resolution in A; defaults to ``2 * voxel_size`` (Nyquist).
    box
        Output box edge (int, cubic) or ``(D, H, W)``. Default: the smallest even cube containing the
        model plus a ``3 sigma`` margin on every side. Atoms falling outside a given box are dropped
        with a warning.
    max_voxels
        Refuse (``ValueError``, before the grid is allocated) a map of more voxels, e.g. a model with a stray atom
        thousands of A away; ``None``: no limit.

    Returns
    -------
    density : np.ndarray
        ``(D, H, W)`` float32 map indexed ``[z, y, x]``.
    voxel_size : float
        The voxel size of the map in A (same as the argument).

    Raises
    ------
    ValueError
        If the PDB file holds no atoms (the message names the file) or arguments are invalid.
    """
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    resolution = 2.0 * voxel_size if resolution is None else float(resolution)
    if resolution <= 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    coords_xyz, weights = read_atoms(pdb_path)
    zyx = coords_xyz[:, ::-1]
    sigma_a = resolution / (np.pi * np.sqrt(2.0))
    sigma_vox = sigma_a / voxel_size
    com = np.average(zyx, axis=0, weights=weights)
    rel = (zyx - com) / voxel_size  # voxel units relative to the centre of mass
    if box is None:
        half = np.abs(rel).max() + 3.0 * sigma_vox + 1.0
        edge = int(2 * np.ceil(half))
        shape: tuple[int, ...] = (edge, edge, edge)
    else:
        shape = box_shape(box, 3)
    if max_voxels is not None and int(np.prod(shape, dtype=np.int64)) > max_voxels:
        raise ValueError(
            f"{pdb_path}: the model spans {tuple(int(n) for n in shape)} voxels at {voxel_size:g} A "
            f"({2 * np.abs(rel).max() * voxel_size:.0f} A across its atoms), more than the {max_voxels:,} "
            "voxels allowed (--max_memory_gb); check the model's coordinates or raise --max_memory_gb"
        )
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    pos = rel + centre
    # trilinear splatting of the atomic weights onto the grid
    base = np.floor(pos).astype(np.int64)
    frac = pos - base
    grid = np.zeros(shape, dtype=np.float64)
    dropped = 0
    for corner in np.ndindex(2, 2, 2):
        offs = np.asarray(corner)
        idx = base + offs
        w = weights * np.prod(np.where(offs == 1, frac, 1.0 - frac), axis=1)
        inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
        dropped += int(np.count_nonzero(~inside & (w > 0)))
        np.add.at(grid, tuple(idx[inside].T), w[inside])
    if dropped:
        warnings.warn(
            f"{pdb_path}: model extends beyond box {shape}; parts of atoms outside were dropped", stacklevel=2
        )
    density = ndimage.gaussian_filter(grid, sigma=sigma_vox, mode="constant", truncate=4.0)
    return density.astype(np.float32), float(voxel_size)
