"""Cryo-electron tomography (cryo-ET) physics: density maps, CTF, missing wedge, noise.

This module provides the *traditional* subtomogram simulator used as the baseline in CryoETGAN-style
experiments (noise-free density map -> CTF x missing wedge in Fourier space -> Gaussian noise at a
given SNR), together with the building blocks it needs.

Conventions
-----------
* Volumes are ``numpy`` arrays indexed ``[z, y, x]`` (ZYX, as read by ``mrcfile``). Axis 0 is the
  electron-beam direction, axis 1 (``y``) the default tilt axis, axis 2 (``x``) the remaining one.
* Voxel sizes are in angstrom (A) per voxel, spatial frequencies in 1/A.
* Fourier-space masks (:func:`ctf_2d`, :func:`ctf_3d`, :func:`missing_wedge_mask`) are returned in the
  *unshifted* layout of :func:`numpy.fft.fftn` (DC at index 0), ready to multiply ``np.fft.fftn(v)``.
  Apply :func:`numpy.fft.fftshift` for display.
* Geometry (rotation centre, centring of density maps) uses the array centre ``(n - 1) / 2``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

__all__ = [
    "ATOMIC_NUMBERS",
    "add_noise_snr",
    "bandpass",
    "ctf_1d",
    "ctf_2d",
    "ctf_3d",
    "ctf_first_zero",
    "density_from_pdb",
    "electron_wavelength",
    "missing_wedge_mask",
    "pad_or_crop",
    "random_rotation_matrix",
    "MMCIF_SUFFIXES",
    "read_atoms",
    "read_mmcif_atoms",
    "read_pdb_atoms",
    "resample_map",
    "rotate_volume",
    "simulate_subtomogram",
    "tilt_series",
    "weighted_back_projection",
]

#: Atomic numbers used as scattering weights (a common first-order approximation of the electron
#: scattering factor). Unknown elements fall back to carbon (6) with a warning.
ATOMIC_NUMBERS: dict[str, int] = {
    "H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "NA": 11, "MG": 12, "P": 15, "S": 16, "CL": 17, "K": 19,
    "CA": 20, "MN": 25, "FE": 26, "CO": 27, "NI": 28, "CU": 29, "ZN": 30, "SE": 34, "BR": 35, "I": 53,
}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# density maps from atomic models
# ----------------------------------------------------------------------------------------------
def _element_of(line: str) -> str:
    """Element symbol of a PDB ATOM/HETATM line (columns 77-78, else derived from the atom name)."""
    element = line[76:78].strip().upper() if len(line) >= 78 else ""
    if element:
        return element
    name = line[12:16]
    # PDB convention: a one-letter element is right-justified in columns 13-14 (e.g. " CA " = C alpha).
    candidate = name[:2].strip().upper() if name[0] != " " else name[1].upper()
    return "".join(c for c in candidate if c.isalpha()) or "C"


def read_pdb_atoms(pdb_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
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
                raise ValueError(f"{pdb_path}: line {lineno}: cannot parse atom coordinates: {line.rstrip()!r}") from err
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


def read_mmcif_atoms(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
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


def read_atoms(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Atoms of a PDB (``.pdb``, ``.ent``) or mmCIF (:data:`MMCIF_SUFFIXES`) model: ``(coords_xyz, atomic_numbers)``."""
    name = Path(path).name.lower()
    if name.endswith(MMCIF_SUFFIXES):
        return read_mmcif_atoms(path)
    return read_pdb_atoms(path)


def density_from_pdb(
    pdb_path: str | Path,
    voxel_size: float = 10.0,
    resolution: float | None = None,
    box: int | Sequence[int] | None = None,
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
        shape = (edge, edge, edge)
    else:
        shape = _as_shape(box, 3)
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
        warnings.warn(f"{pdb_path}: model extends beyond box {shape}; parts of atoms outside were dropped", stacklevel=2)
    density = ndimage.gaussian_filter(grid, sigma=sigma_vox, mode="constant", truncate=4.0)
    return density.astype(np.float32), float(voxel_size)


def _as_shape(box: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    shape = (int(box),) * ndim if np.isscalar(box) else tuple(int(b) for b in box)  # type: ignore[arg-type]
    if len(shape) != ndim or min(shape) <= 0:
        raise ValueError(f"box must be a positive int or a sequence of {ndim} positive ints, got {box}")
    return shape


def resample_map(volume: np.ndarray, voxel_size_in: float, voxel_size_out: float, order: int = 1) -> np.ndarray:
    """Resample a map to another voxel size with :func:`scipy.ndimage.zoom`, anti-aliased when downsampling.

    Downsampling by ``d = voxel_size_out / voxel_size_in > 1`` first applies a Gaussian of standard deviation
    ``(d - 1) / 2`` input voxels (the rule of :func:`skimage.transform.rescale`), so that detail finer than the new
    voxel does not alias into the map.

    Parameters
    ----------
    volume
        ``(D, H, W)`` (or 2D) array.
    voxel_size_in, voxel_size_out
        Input and output voxel sizes in A; the zoom factor is ``voxel_size_in / voxel_size_out``.
    order
        Spline order (1 = trilinear, which does not create negative ringing around densities).

    Returns
    -------
    np.ndarray
        float32 array of shape ``round(shape * voxel_size_in / voxel_size_out)``.
    """
    if voxel_size_in <= 0 or voxel_size_out <= 0:
        raise ValueError(f"voxel sizes must be positive, got {voxel_size_in} and {voxel_size_out}")
    if np.isclose(voxel_size_in, voxel_size_out):
        return np.asarray(volume, dtype=np.float32)
    factor = voxel_size_in / voxel_size_out
    volume = np.asarray(volume, dtype=np.float32)
    if factor < 1.0:
        volume = ndimage.gaussian_filter(volume, sigma=(1.0 / factor - 1.0) / 2.0, mode="constant")
    return ndimage.zoom(volume, factor, order=order, mode="grid-constant", grid_mode=True)


def pad_or_crop(volume: np.ndarray, box: int | Sequence[int], pad_value: float = 0.0) -> np.ndarray:
    """Centre-pad and/or centre-crop a volume to ``box``.

    The array centre ``n // 2`` of every axis maps onto ``box // 2``, so that the centre voxel of an
    even or odd box is kept for both even and odd inputs (same rule as ``np.fft.fftshift``).

    Parameters
    ----------
    volume
        ``(D, H, W)`` or ``(H, W)`` array.
    box
        Target edge (int) or full target shape.
    pad_value
        Constant used for padding.

    Returns
    -------
    np.ndarray
        Array of shape ``box`` and the input dtype.
    """
    volume = np.asarray(volume)
    shape = _as_shape(box, volume.ndim)
    out = np.full(shape, pad_value, dtype=volume.dtype)
    src, dst = [], []
    for n_in, n_out in zip(volume.shape, shape):
        offset = n_out // 2 - n_in // 2  # position of input index 0 in the output
        lo_in, lo_out = max(0, -offset), max(0, offset)
        length = min(n_in - lo_in, n_out - lo_out)
        src.append(slice(lo_in, lo_in + length))
        dst.append(slice(lo_out, lo_out + length))
    out[tuple(dst)] = volume[tuple(src)]
    return out


# ----------------------------------------------------------------------------------------------
# rotations
# ----------------------------------------------------------------------------------------------
def random_rotation_matrix(rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Rotation matrix drawn uniformly from SO(3) (Haar measure).

    Parameters
    ----------
    rng
        ``numpy`` generator or seed.

    Returns
    -------
    np.ndarray
        ``(3, 3)`` float64 orthonormal matrix with determinant +1.
    """
    return Rotation.random(random_state=np.random.default_rng(rng)).as_matrix()


def rotate_volume(
    volume: np.ndarray,
    matrix: np.ndarray,
    shift: Sequence[float] = (0.0, 0.0, 0.0),
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Rotate a volume about its centre ``(n - 1) / 2``, then translate it.

    The output satisfies ``out[c + R (p - c) + shift] = volume[p]``: ``matrix`` acts on index
    coordinates ``(z, y, x)`` and ``shift`` is in voxels along ``(z, y, x)``. Rotating by ``R`` and
    then by ``R.T`` restores the volume up to interpolation error.

    Parameters
    ----------
    volume
        ``(D, H, W)`` array.
    matrix
        ``(3, 3)`` rotation matrix.
    shift
        Translation in voxels applied after the rotation.
    order
        Spline interpolation order of :func:`scipy.ndimage.affine_transform`.
    cval
        Value outside the input.

    Returns
    -------
    np.ndarray
        float32 ``(D, H, W)`` rotated volume.
    """
    volume = np.asarray(volume, dtype=np.float32)
    matrix = np.asarray(matrix, dtype=np.float64)
    if volume.ndim != 3 or matrix.shape != (3, 3):
        raise ValueError(f"expected a 3D volume and a (3, 3) matrix, got {volume.shape} and {matrix.shape}")
    centre = (np.asarray(volume.shape, dtype=np.float64) - 1.0) / 2.0
    inv = matrix.T  # inverse of a rotation; affine_transform maps output -> input coordinates
    offset = centre - inv @ (centre + np.asarray(shift, dtype=np.float64))
    return ndimage.affine_transform(volume, inv, offset=offset, order=order, mode="constant", cval=cval)


# ----------------------------------------------------------------------------------------------
# contrast transfer function
# ----------------------------------------------------------------------------------------------
def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in A: ``h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))``.

    300 kV gives 0.01969 A, 200 kV 0.02508 A.
    """
    if voltage_kv <= 0:
        raise ValueError(f"voltage_kv must be positive, got {voltage_kv}")
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 2.99792458e8
    volts = voltage_kv * 1e3
    lam_m = h / np.sqrt(2.0 * m0 * e * volts * (1.0 + e * volts / (2.0 * m0 * c**2)))
    return float(lam_m * 1e10)


def ctf_1d(
    freq: np.ndarray | float,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> np.ndarray:
    """Contrast transfer function at spatial frequency magnitude ``freq`` (1/A).

    ``chi(k) = pi * lambda * dz * k^2 - pi / 2 * Cs * lambda^3 * k^4`` with ``dz > 0`` for underfocus,
    ``CTF(k) = [sqrt(1 - A^2) sin(chi) + A cos(chi)] * exp(-B k^2 / 4)``.

    Sign convention: this CTF is *positive* at low frequency (``CTF(0) = A``), i.e. it transfers the
    projected density with a positive sign. Real bright-field images of an underfocused specimen
    show the opposite contrast (dense = dark); :func:`simulate_subtomogram` applies that inversion
    as a separate, explicit step.

    Parameters
    ----------
    freq
        Spatial frequency magnitudes in 1/A (any shape).
    defocus_um
        Defocus in micrometres, positive = underfocus.
    voltage_kv
        Acceleration voltage in kV (sets the relativistic wavelength).
    cs_mm
        Spherical aberration in mm.
    amplitude_contrast
        Amplitude contrast fraction ``A`` in [0, 1).
    bfactor
        B-factor of the Gaussian envelope ``exp(-B k^2 / 4)`` in A^2 (0 = no envelope).

    Returns
    -------
    np.ndarray
        CTF values, same shape as ``freq``, float64.
    """
    if not 0.0 <= amplitude_contrast < 1.0:
        raise ValueError(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    k2 = np.asarray(freq, dtype=np.float64) ** 2
    lam = electron_wavelength(voltage_kv)
    dz = defocus_um * 1e4  # um -> A
    cs = cs_mm * 1e7  # mm -> A
    chi = np.pi * lam * dz * k2 - 0.5 * np.pi * cs * lam**3 * k2**2
    ctf = np.sqrt(1.0 - amplitude_contrast**2) * np.sin(chi) + amplitude_contrast * np.cos(chi)
    if bfactor:
        ctf = ctf * np.exp(-bfactor * k2 / 4.0)
    return ctf


def ctf_first_zero(
    defocus_um: float = 3.0, voltage_kv: float = 300.0, cs_mm: float = 2.7, amplitude_contrast: float = 0.07
) -> float:
    """Analytic spatial frequency (1/A) of the first CTF zero of :func:`ctf_1d`.

    Solves ``chi(k) = pi - arctan(A / sqrt(1 - A^2))`` as a quadratic in ``k^2``.
    """
    lam = electron_wavelength(voltage_kv)
    dz, cs = defocus_um * 1e4, cs_mm * 1e7
    target = np.pi - np.arctan2(amplitude_contrast, np.sqrt(1.0 - amplitude_contrast**2))
    a, b = 0.5 * np.pi * cs * lam**3, np.pi * lam * dz
    if a == 0:
        return float(np.sqrt(target / b))
    disc = b * b - 4.0 * a * target
    if disc < 0:
        raise ValueError("the CTF phase never reaches its first zero for these parameters")
    return float(np.sqrt((b - np.sqrt(disc)) / (2.0 * a)))


def _freq_magnitude(shape: Sequence[int], voxel_size: float) -> np.ndarray:
    grids = np.meshgrid(*[np.fft.fftfreq(int(n), d=voxel_size) for n in shape], indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def _ctf_on_grid(shape: Sequence[int], voxel_size: float, *ctf_args: float) -> np.ndarray:
    """:func:`ctf_1d` of the frequency magnitude on the unshifted FFT grid of ``shape``, float32."""
    return ctf_1d(_freq_magnitude(shape, voxel_size), *ctf_args).astype(np.float32)


def ctf_2d(
    shape: Sequence[int],
    voxel_size: float,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> np.ndarray:
    """2D (projection-image) CTF on the FFT grid of an ``(H, W)`` image, no astigmatism.

    See :func:`ctf_1d` for the formula and sign convention. Returns an ``(H, W)`` float32 array in
    unshifted FFT layout (multiply ``np.fft.fft2(image)``).
    """
    if len(shape) != 2:
        raise ValueError(f"ctf_2d expects a 2D shape, got {shape}")
    return _ctf_on_grid(shape, voxel_size, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor)


def ctf_3d(
    shape: Sequence[int],
    voxel_size: float,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> np.ndarray:
    """Radially symmetric 3D CTF on the FFT grid of a ``(D, H, W)`` volume.

    The subtomogram-averaging approximation: the CTF of every tilt is taken as the same function of
    the 3D frequency magnitude (defocus gradient across tilts ignored). See :func:`ctf_1d` for the
    formula and sign convention. Returns ``(D, H, W)`` float32 in unshifted FFT layout.
    """
    if len(shape) != 3:
        raise ValueError(f"ctf_3d expects a 3D shape, got {shape}")
    return _ctf_on_grid(shape, voxel_size, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor)


# ----------------------------------------------------------------------------------------------
# missing wedge, noise, filters
# ----------------------------------------------------------------------------------------------
def missing_wedge_mask(
    shape: Sequence[int], tilt_range: tuple[float, float] = (-60.0, 60.0), tilt_axis: str = "y"
) -> np.ndarray:
    """Binary Fourier mask of the frequencies sampled by a single-axis tilt series.

    The beam is along axis 0 (``z``) at zero tilt; the specimen is tilted about ``tilt_axis``
    (``"y"`` = axis 1, ``"x"`` = axis 2). The projection at tilt ``theta`` samples the central plane
    that contains the tilt axis and the in-plane direction at angle ``theta`` from the perpendicular
    axis (``k_perp cos(theta), k_z sin(theta)``). A frequency is kept when its angle
    ``atan2(k_z, k_perp)``, folded by Friedel symmetry to ``k_perp >= 0``, lies in ``tilt_range``.
    Frequencies on the tilt axis (``k_z = k_perp = 0``) are always kept. For ``(-60, 60)`` about one
    third of Fourier space is zero.

    Parameters
    ----------
    shape
        ``(D, H, W)`` volume shape.
    tilt_range
        ``(min, max)`` tilt angles in degrees, within [-90, 90].
    tilt_axis
        ``"y"`` or ``"x"``.

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 mask (1 = sampled, 0 = missing) in unshifted FFT layout.
    """
    if len(shape) != 3:
        raise ValueError(f"missing_wedge_mask expects a 3D shape, got {shape}")
    lo, hi = float(tilt_range[0]), float(tilt_range[1])
    if not -90.0 <= lo < hi <= 90.0:
        raise ValueError(f"tilt_range must satisfy -90 <= min < max <= 90, got {tilt_range}")
    axes = {"y": 1, "x": 2}
    if tilt_axis not in axes:
        raise ValueError(f"tilt_axis must be 'y' or 'x', got {tilt_axis!r}")
    perp_axis = 2 if tilt_axis == "y" else 1
    kz = np.fft.fftfreq(int(shape[0]))
    kp = np.fft.fftfreq(int(shape[perp_axis]))
    kz2, kp2 = np.meshgrid(kz, kp, indexing="ij")
    sign = np.where(kp2 < 0, -1.0, 1.0)  # Friedel fold onto k_perp >= 0
    angle = np.degrees(np.arctan2(sign * kz2, sign * kp2))
    angle = np.where((kp2 == 0) & (kz2 != 0), 90.0, angle)  # pure k_z: sampled only by a 90 degree tilt
    plane = (angle >= lo - 1e-9) & (angle <= hi + 1e-9)
    plane |= (kz2 == 0) & (kp2 == 0)
    # broadcast the (k_z, k_perp) plane along the tilt axis
    if tilt_axis == "y":
        mask = np.broadcast_to(plane[:, None, :], tuple(int(s) for s in shape))
    else:
        mask = np.broadcast_to(plane[:, :, None], tuple(int(s) for s in shape))
    return mask.astype(np.float32)


def add_noise_snr(
    volume: np.ndarray, snr: float, rng: np.random.Generator | int | None = None
) -> np.ndarray:
    """Add white Gaussian noise with variance ``var(volume) / snr``.

    Parameters
    ----------
    volume
        Noise-free array of any shape.
    snr
        Target signal-to-noise ratio (variance ratio), > 0.
    rng
        ``numpy`` generator or seed.

    Returns
    -------
    np.ndarray
        float32 noisy array, same shape.
    """
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    volume = np.asarray(volume, dtype=np.float64)
    noise_std = np.sqrt(volume.var() / snr)
    noise = np.random.default_rng(rng).standard_normal(volume.shape) * noise_std
    return (volume + noise).astype(np.float32)


def bandpass(
    volume: np.ndarray, voxel_size: float, low_A: float | None = None, high_A: float | None = None
) -> np.ndarray:
    """Hard Fourier band-pass keeping feature sizes between ``high_A`` and ``low_A`` angstrom.

    Frequencies ``1 / low_A <= |k| <= 1 / high_A`` (1/A) are kept. ``low_A=None`` keeps everything
    down to DC (low-pass only), ``high_A=None`` everything up to Nyquist (high-pass only).

    Parameters
    ----------
    volume
        2D or 3D array.
    voxel_size
        Voxel size in A.
    low_A
        Largest kept length scale in A (low-frequency cut-off), e.g. 200.
    high_A
        Smallest kept length scale in A (high-frequency cut-off), e.g. 20 (>= 2 * voxel_size to matter).

    Returns
    -------
    np.ndarray
        float32 filtered array, same shape.
    """
    if low_A is not None and high_A is not None and low_A <= high_A:
        raise ValueError(f"low_A ({low_A}) must be larger than high_A ({high_A})")
    volume = np.asarray(volume, dtype=np.float32)
    k = _freq_magnitude(volume.shape, voxel_size)
    keep = np.ones(k.shape, dtype=bool)
    if low_A is not None:
        keep &= k >= 1.0 / low_A
    if high_A is not None:
        keep &= k <= 1.0 / high_A
    return np.fft.ifftn(np.fft.fftn(volume) * keep).real.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# traditional simulator
# ----------------------------------------------------------------------------------------------
def simulate_subtomogram(
    density: np.ndarray,
    voxel_size: float,
    snr: float | None = 0.1,
    tilt_range: tuple[float, float] = (-60.0, 60.0),
    tilt_axis: str = "y",
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
    invert_contrast: bool = True,
    rng: np.random.Generator | int | None = None,
    noise_in_wedge: bool = False,
) -> np.ndarray:
    """Traditional cryo-ET subtomogram simulation from a noise-free density map.

    ``s = -IFFT(FFT(density) * CTF_3d * wedge)`` followed by additive white Gaussian noise with
    variance ``var(s) / snr`` (:func:`add_noise_snr`). The leading minus sign (``invert_contrast``)
    reproduces the negative phase contrast of underfocused cryo-EM images: protein density
    appears *dark* on a brighter background, as in raw tomograms. Set ``invert_contrast=False``
    to keep density positive (e.g. to compare with inverted/"white-protein" data).

    Parameters
    ----------
    density
        ``(D, H, W)`` noise-free density map, beam along axis 0.
    voxel_size
        Voxel size in A.
    snr
        Signal-to-noise ratio (variance ratio) of the output; ``None`` for no noise.
    tilt_range, tilt_axis
        Missing-wedge geometry, see :func:`missing_wedge_mask`.
    defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor
        CTF parameters, see :func:`ctf_1d`.
    invert_contrast
        Multiply the noise-free signal by -1 (dark protein).
    rng
        ``numpy`` generator or seed for the noise.
    noise_in_wedge
        Pass the noise through the missing-wedge mask too (rescaled to the same variance): noise reconstructed from
        a tilt series lacks the wedge's frequencies, noise added after the reconstruction does not.

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 simulated subtomogram.
    """
    density = np.asarray(density, dtype=np.float32)
    if density.ndim != 3:
        raise ValueError(f"density must be a 3D (D, H, W) array, got shape {density.shape}")
    transfer = ctf_3d(density.shape, voxel_size, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor)
    wedge = missing_wedge_mask(density.shape, tilt_range, tilt_axis)
    signal = np.fft.ifftn(np.fft.fftn(density) * transfer * wedge).real
    if invert_contrast:
        signal = -signal
    if snr is None:
        return signal.astype(np.float32)
    if not noise_in_wedge:
        return add_noise_snr(signal, snr, rng)
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    noise = np.fft.ifftn(np.fft.fftn(np.random.default_rng(rng).standard_normal(density.shape)) * wedge).real
    noise *= np.sqrt(signal.var() / snr) / max(float(noise.std()), 1e-12)
    return (signal + noise).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# tilt series and weighted back-projection
# ----------------------------------------------------------------------------------------------
def tilt_series(volume: np.ndarray, angles_deg: Sequence[float]) -> np.ndarray:
    """Parallel-beam projections of a volume tilted about the y axis (axis 1).

    Each ``(z, x)`` slice is projected with :func:`skimage.transform.radon`; the beam is along z at
    zero tilt. The volume's ``(z, x)`` slices must be square and the object must lie inside their
    inscribed circle (a centred particle in a subtomogram box); the detector is ``W`` pixels wide.

    Parameters
    ----------
    volume
        ``(D, H, W)`` array with ``D == W``.
    angles_deg
        Tilt angles in degrees.

    Returns
    -------
    np.ndarray
        ``(n_tilts, H, W)`` float32 projection images.
    """
    from skimage.transform import radon

    volume = np.asarray(volume, dtype=np.float64)
    if volume.ndim != 3 or volume.shape[0] != volume.shape[2]:
        raise ValueError(f"tilt_series needs a (D, H, W) volume with D == W, got {volume.shape}")
    theta = np.asarray(angles_deg, dtype=np.float64)
    # radon at theta=0 sums over image rows (axis 0 = z): beam along z at zero tilt
    sino = np.stack([radon(volume[:, j, :], theta=theta, circle=True) for j in range(volume.shape[1])])  # (H, W, T)
    return np.transpose(sino, (2, 0, 1)).astype(np.float32)


def weighted_back_projection(projections: np.ndarray, angles_deg: Sequence[float], filter_name: str = "ramp") -> np.ndarray:
    """Weighted (ramp-filtered) back-projection of a y-axis tilt series.

    Uses :func:`skimage.transform.iradon` per ``(z, x)`` slice.

    Parameters
    ----------
    projections
        ``(n_tilts, H, W)`` projections as returned by :func:`tilt_series`.
    angles_deg
        The tilt angles in degrees.
    filter_name
        ``iradon`` filter (``"ramp"`` = classic WBP).

    Returns
    -------
    np.ndarray
        ``(W, H, W)`` float32 reconstruction indexed ``[z, y, x]``.
    """
    from skimage.transform import iradon

    projections = np.asarray(projections, dtype=np.float64)
    if projections.ndim != 3 or projections.shape[0] != len(angles_deg):
        raise ValueError(f"projections must be (n_tilts={len(angles_deg)}, H, W), got {projections.shape}")
    theta = np.asarray(angles_deg, dtype=np.float64)
    width = projections.shape[2]
    slices = [
        iradon(projections[:, j, :].T, theta=theta, output_size=width, filter_name=filter_name, circle=True)
        for j in range(projections.shape[1])
    ]
    return np.stack(slices, axis=1).astype(np.float32)
