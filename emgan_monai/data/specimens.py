"""Procedural 3D fluorescent specimens: filaments, vesicles, membranes and puncta.

A restoration network trained on one kind of structure (e.g. the nuclei of one confocal stack) learns that kind's
shapes as a prior and generalises poorly to others. These generators draw fluorophore densities of several kinds
of structure on a voxel grid, in physical units, so that wide-field / confocal training pairs can be rendered from
them with :mod:`emgan_monai.physics.pair_synthesis` exactly as from a real stack.

Every function returns a non-negative ``float32`` volume of shape ``(Z, Y, X)`` whose brightest structures are
about 1, and is deterministic for a given ``rng`` seed. Sizes are given in micrometres and converted with
``spacing_zyx_um`` (default: the cells3d voxel size 0.29 x 0.26 x 0.26 um).

========== ===========================================================================================
kind        what it imitates
========== ===========================================================================================
filaments   cytoskeleton (actin, microtubules): smooth random curves, mostly parallel to the coverslip
vesicles    endosomes, lysosomes, secretory vesicles: hollow spheres of 0.25-1.2 um radius
membranes   plasma membranes of packed cells: the walls of a 3D Voronoi tessellation
puncta      single-molecule spots, receptor clusters, beads: sub-resolution points of varying brightness
========== ===========================================================================================

:func:`procedural_nuclei` (textured ellipsoidal nuclei) renders the bundle's embedded demo sample.

A weak, smooth cytoplasmic background is added to every kind (``diffuse`` fraction of the peak).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["SPECIMEN_KINDS", "filaments", "make_specimen", "membranes", "procedural_nuclei", "puncta", "vesicles"]

#: what ``np.random.default_rng`` accepts here: a generator, a seed, or a seed sequence such as ``[seed, 0, k]``
SeedLike = np.random.Generator | int | Sequence[int] | None

DEFAULT_SPACING = (0.29, 0.26, 0.26)


def _grid(
    shape_zyx: Sequence[int], spacing_zyx_um: Sequence[float], rng: SeedLike
) -> tuple[tuple[int, int, int], np.ndarray, np.random.Generator, np.ndarray]:
    """Checked grid ``(Z, Y, X)``, voxel size (um), generator and physical extent (um) of a specimen."""
    shape = tuple(int(s) for s in shape_zyx)
    spacing = np.asarray(spacing_zyx_um, dtype=np.float64)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape_zyx must be three positive integers, got {tuple(shape_zyx)}.")
    if spacing.shape != (3,) or np.any(spacing <= 0):
        raise ValueError(f"spacing_zyx_um must be three positive sizes in um, got {spacing_zyx_um}.")
    return shape, spacing, np.random.default_rng(rng), np.array(shape) * spacing


def _splat(vol: np.ndarray, points_vox: np.ndarray, weights: np.ndarray) -> None:
    """Add ``weights`` at sub-voxel ``points_vox`` (N, 3) by trilinear splatting (points outside are dropped)."""
    base = np.floor(points_vox).astype(np.int64)
    frac = points_vox - base
    for corner in range(8):
        offs = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = base + offs
        w = weights * np.prod(np.where(offs == 1, frac, 1.0 - frac), axis=1)
        ok = np.all((idx >= 0) & (idx < np.array(vol.shape)), axis=1)
        np.add.at(vol, tuple(idx[ok].T), w[ok])


def _finish(
    vol: np.ndarray, rng: np.random.Generator, spacing: np.ndarray, blur_um: float, diffuse: float
) -> np.ndarray:
    """Blur to the structure's physical width, scale the 99.9th percentile to 1, add a smooth background."""
    if blur_um > 0:
        vol = ndimage.gaussian_filter(vol, sigma=blur_um / spacing, mode="constant")
    peak = float(np.percentile(vol[vol > 0], 99.9)) if np.any(vol > 0) else 1.0
    vol = vol / max(peak, 1e-12)
    if diffuse > 0:
        field = ndimage.gaussian_filter(rng.random(vol.shape), sigma=2.0 / spacing, mode="wrap")
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-12)
        vol = vol + diffuse * field
    return np.clip(vol, 0.0, None).astype(np.float32)


def filaments(
    shape_zyx: Sequence[int],
    spacing_zyx_um: Sequence[float] = DEFAULT_SPACING,
    rng: SeedLike = None,
    n_filaments: int | None = None,
    persistence_um: float = 6.0,
    width_um: float = 0.06,
    diffuse: float = 0.05,
) -> np.ndarray:
    """Smooth random curves (worm-like chains), mostly parallel to the coverslip.

    Parameters
    ----------
    shape_zyx, spacing_zyx_um : Sequence
        Grid ``(Z, Y, X)`` and voxel size in um.
    rng : np.random.Generator | int | Sequence[int] | None
        Generator or seed.
    n_filaments : int | None
        Number of curves; default about one per 8 um^2 of field.
    persistence_um : float
        Bending persistence length (larger = straighter).
    width_um : float
        Gaussian width of a filament (sub-resolution by default).
    diffuse : float
        Smooth background as a fraction of the peak.

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` float32 density.
    """
    shape, spacing, rng, extent = _grid(shape_zyx, spacing_zyx_um, rng)
    if n_filaments is None:
        n_filaments = max(3, int(extent[1] * extent[2] / 8.0))
    vol = np.zeros(shape, dtype=np.float64)
    step = 0.5 * float(spacing.min())
    for _ in range(n_filaments):
        length = rng.uniform(0.3, 1.5) * float(extent[1:].max())
        n_steps = int(length / step)
        pos = rng.uniform(0.0, 1.0, 3) * extent
        phi = rng.uniform(0.0, 2.0 * np.pi)
        tilt = rng.normal(0.0, 0.03)
        direction = np.array([np.sin(tilt), np.cos(tilt) * np.sin(phi), np.cos(tilt) * np.cos(phi)])
        kicks = rng.normal(0.0, np.sqrt(2.0 * step / persistence_um), size=(n_steps, 3))
        kicks[:, 0] *= 0.05  # curves stay near their plane (z voxels are coarse)
        points = np.empty((n_steps, 3))
        for i in range(n_steps):
            direction = direction + kicks[i]
            direction /= np.linalg.norm(direction)
            pos = pos + step * direction
            points[i] = pos
        _splat(vol, points / spacing, np.full(n_steps, rng.uniform(0.4, 1.0)))
    return _finish(vol, rng, spacing, width_um, diffuse)


def vesicles(
    shape_zyx: Sequence[int],
    spacing_zyx_um: Sequence[float] = DEFAULT_SPACING,
    rng: SeedLike = None,
    n_vesicles: int | None = None,
    radius_um: tuple[float, float] = (0.25, 1.2),
    wall_um: float = 0.05,
    diffuse: float = 0.05,
) -> np.ndarray:
    """Hollow spheres (fluorescent membranes of vesicles), radius drawn log-uniformly in ``radius_um``.

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` float32 density.
    """
    shape, spacing, rng, extent = _grid(shape_zyx, spacing_zyx_um, rng)
    if n_vesicles is None:
        n_vesicles = max(3, int(extent.prod() / 40.0))
    vol = np.zeros(shape, dtype=np.float64)
    sigma = max(wall_um, 0.5 * float(spacing.min()))
    for _ in range(n_vesicles):
        radius = float(np.exp(rng.uniform(*np.log(radius_um))))
        centre = rng.uniform(0.0, 1.0, 3) * extent
        lo = np.maximum(((centre - radius - 3 * sigma) / spacing).astype(int), 0)
        hi = np.minimum(((centre + radius + 3 * sigma) / spacing).astype(int) + 2, np.array(shape))
        if np.any(hi <= lo):
            continue
        zz, yy, xx = (np.arange(a, b) * s for a, b, s in zip(lo, hi, spacing))
        dist = np.sqrt(
            (zz[:, None, None] - centre[0]) ** 2
            + (yy[None, :, None] - centre[1]) ** 2
            + (xx[None, None, :] - centre[2]) ** 2
        )
        vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += rng.uniform(0.4, 1.0) * np.exp(
            -0.5 * ((dist - radius) / sigma) ** 2
        )
    return _finish(vol, rng, spacing, 0.0, diffuse)


def membranes(
    shape_zyx: Sequence[int],
    spacing_zyx_um: Sequence[float] = DEFAULT_SPACING,
    rng: SeedLike = None,
    cell_size_um: tuple[float, float] = (4.0, 10.0),
    wall_um: float = 0.06,
    diffuse: float = 0.05,
) -> np.ndarray:
    """Walls between packed cells: the faces of a 3D Voronoi tessellation of random seeds.

    The distance of a voxel to the nearest wall is half the difference of its distances to the two nearest seeds.

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` float32 density.
    """
    shape, spacing, rng, extent = _grid(shape_zyx, spacing_zyx_um, rng)
    cell = rng.uniform(*cell_size_um)
    margin = cell
    n_seeds = max(4, int(np.prod(extent + 2 * margin) / cell**3))
    seeds = rng.uniform(-margin, extent + margin, (n_seeds, 3))
    tree = cKDTree(seeds)
    coords = np.stack(np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij"), -1)
    dist, which = tree.query(coords.reshape(-1, 3), k=2)
    wall = 0.5 * (dist[:, 1] - dist[:, 0])
    sigma = max(wall_um, 0.5 * float(spacing.min()))
    brightness = rng.uniform(0.5, 1.0, n_seeds)[which[:, 0]]  # each cell's membrane its own labelling density
    vol = (brightness * np.exp(-0.5 * (wall / sigma) ** 2)).reshape(shape)
    return _finish(vol, rng, spacing, 0.0, diffuse)


def puncta(
    shape_zyx: Sequence[int],
    spacing_zyx_um: Sequence[float] = DEFAULT_SPACING,
    rng: SeedLike = None,
    density_per_um3: float = 0.1,
    diffuse: float = 0.05,
) -> np.ndarray:
    """Sub-resolution spots at random positions, brightness log-normal (a few bright clusters, many dim ones).

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` float32 density.
    """
    shape, spacing, rng, extent = _grid(shape_zyx, spacing_zyx_um, rng)
    n = max(5, rng.poisson(density_per_um3 * float(extent.prod())))
    points = rng.uniform(0.0, 1.0, (n, 3)) * (np.array(shape) - 1)
    vol = np.zeros(shape, dtype=np.float64)
    _splat(vol, points, rng.lognormal(0.0, 0.6, n))
    return _finish(vol, rng, spacing, 0.04, diffuse)


def procedural_nuclei(
    shape_zyx: Sequence[int] = (31, 200, 264),
    n_nuclei: int = 12,
    radius_um: tuple[float, float] = (3.5, 6.0),
    spacing_zyx_um: Sequence[float] = (0.29, 0.26, 0.26),
    seed: int = 0,
) -> np.ndarray:
    """Synthetic fluorophore density of stained nuclei: textured, randomly oriented ellipsoids.

    Each nucleus is an ellipsoid (semi-axes drawn from ``radius_um``, random in-plane rotation) filled with a
    chromatin-like texture (smoothed noise with dense foci) and a brighter rim, on zero background.

    Returns
    -------
    np.ndarray
        ``(Z, Y, X)`` float64, non-negative, maximum 1.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape_zyx must be three positive sizes, got {shape_zyx}.")
    dz, dy, dx = (float(s) for s in spacing_zyx_um)
    z, y, x = np.meshgrid(*(np.arange(n) * d for n, d in zip(shape, (dz, dy, dx))), indexing="ij")
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(1.0, 2.0, 2.0))
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-12)
    foci = ndimage.gaussian_filter((rng.random(shape) > 0.998).astype(np.float64), sigma=(0.8, 1.5, 1.5))
    foci /= max(float(foci.max()), 1e-12)
    volume = np.zeros(shape)
    centre_z = shape[0] * dz / 2.0
    for _ in range(int(n_nuclei)):
        cy, cx = rng.uniform(0, shape[1] * dy), rng.uniform(0, shape[2] * dx)
        cz = centre_z + rng.uniform(-0.15, 0.15) * shape[0] * dz
        a, b = sorted(rng.uniform(*radius_um, size=2))
        c = rng.uniform(0.6, 0.9) * a
        theta = rng.uniform(0, math.pi)
        u = (y - cy) * math.cos(theta) + (x - cx) * math.sin(theta)
        v = -(y - cy) * math.sin(theta) + (x - cx) * math.cos(theta)
        r = np.sqrt((u / b) ** 2 + (v / a) ** 2 + ((z - cz) / c) ** 2)
        inside = np.clip((1.05 - r) / 0.1, 0.0, 1.0)  # soft edge
        brightness = rng.uniform(0.5, 1.0)
        nucleus = inside * (0.45 + 0.35 * texture + 0.8 * foci + 0.3 * np.exp(-(((r - 0.9) / 0.08) ** 2)))
        volume = np.maximum(volume, brightness * nucleus)
    return volume / max(float(volume.max()), 1e-12)


SPECIMEN_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "filaments": filaments,
    "vesicles": vesicles,
    "membranes": membranes,
    "puncta": puncta,
}


def make_specimen(
    kind: str,
    shape_zyx: Sequence[int],
    spacing_zyx_um: Sequence[float] = DEFAULT_SPACING,
    rng: SeedLike = None,
) -> np.ndarray:
    """A procedural specimen of ``kind`` (one of :data:`SPECIMEN_KINDS`), shape ``(Z, Y, X)``, float32."""
    if kind not in SPECIMEN_KINDS:
        raise ValueError(f"unknown specimen kind {kind!r}; choose from {sorted(SPECIMEN_KINDS)}.")
    return SPECIMEN_KINDS[kind](shape_zyx, spacing_zyx_um, rng=rng)
