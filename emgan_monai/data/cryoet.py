"""Cryo-ET dataset builders: density-map folders, subtomograms cut from tomograms, unpaired datalists.

Two domains feed the unpaired (CycleGAN) trainer of CryoETGAN-style experiments:

* domain D: noise-free density maps, from MRC maps or PDB models (:func:`density_datalist`,
  :func:`load_density`);
* domain S: experimental-like subtomograms cut from tomograms at particle positions
  (:func:`subtomograms_from_deepfinder`, :func:`subtomograms_from_points`), normalised
  (:class:`ZScoreStats`) and written as MRC files (:func:`save_subtomograms`).

:func:`unpaired_datalist` pairs the two folders for ``monai.data.Dataset``.

Axis conventions
----------------
Arrays are returned in the axis order of their source array; for MRC files and the HIV TIFF this is
``(z, y, x)``. The DeepFinder toy HDF5 arrays are indexed ``array[x, y, z]`` by their XML object
lists, but their missing wedge shows that array axis 0 is the beam direction and axis 1 the tilt
axis, i.e. the same geometry as :func:`emgan_monai.physics.subtomogram_simulator.missing_wedge_mask` with
``tilt_axis="y"``; subtomograms are therefore returned in the HDF5 axis order, unchanged.

One module, about 550 lines, for one concept: the files of the two unpaired domains, from their sources (maps,
models, tomograms) to normalised MRC files and the datalist that pairs them; the domain objects built on them are
in :mod:`emgan_monai.data.cryoet_domains`, the generator's density-map inputs in
:mod:`emgan_monai.data.cryoet_density_inputs`.
"""

from __future__ import annotations

import csv
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from pathlib import Path

import numpy as np

from emgan_monai.errors import DataError, DataNotFoundError
from emgan_monai.physics.atomic_models import MMCIF_SUFFIXES, density_from_pdb
from emgan_monai.physics.volume_geometry import pad_or_crop, resample_map

__all__ = [
    "DENSITY_SUFFIXES",
    "ZScoreStats",
    "binning_scale_from_points",
    "cut_subvolume",
    "density_datalist",
    "density_draws_datalist",
    "load_density",
    "load_tomogram",
    "point_contrast",
    "read_deepfinder_objlist",
    "save_subtomograms",
    "subtomograms_from_deepfinder",
    "subtomograms_from_points",
    "unique_names",
    "unpaired_datalist",
    "zscore",
]

DENSITY_SUFFIXES: tuple[str, ...] = (".mrc", ".map", ".pdb", ".ent", *MMCIF_SUFFIXES)
_MODEL_SUFFIXES = (".pdb", ".ent", *MMCIF_SUFFIXES)


def _matching_suffix(path: Path, suffixes: Collection[str]) -> str | None:
    """The longest of ``suffixes`` that the file name ends with (case-insensitive; ``.cif.gz`` before ``.gz``)."""
    name = path.name.lower()
    hits = [s.lower() for s in suffixes if name.endswith(s.lower())]
    return max(hits, key=len) if hits else None


_MRC_SUFFIXES = (".mrc", ".map", ".rec", ".st", ".ali")

Subtomogram = tuple[np.ndarray, int, tuple[int, int, int]]


# ----------------------------------------------------------------------------------------------
# domain D: density maps
# ----------------------------------------------------------------------------------------------
def density_datalist(folder: str | Path, suffixes: Sequence[str] = DENSITY_SUFFIXES) -> list[dict[str, str]]:
    """Datalist of the density maps (MRC) and atomic models (PDB, mmCIF) in a folder.

    Parameters
    ----------
    folder
        Folder holding e.g. ``1bxn.mrc``, ``3cf3.pdb``.
    suffixes
        Accepted file suffixes (case-insensitive).

    Returns
    -------
    list of dict
        ``[{"image": "/abs/1bxn.mrc", "label": "1bxn"}, ...]`` sorted by file name; the class label is
        the file name without its suffix (e.g. the PDB id; ``4v6x.cif.gz`` -> ``4v6x``).

    Raises
    ------
    DataNotFoundError
        If the folder does not exist or contains no matching file (a ``ValueError`` and a ``FileNotFoundError``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError(folder, "density folder does not exist")
    wanted = {s.lower() for s in suffixes}
    files = sorted(p for p in folder.iterdir() if p.is_file() and _matching_suffix(p, wanted))
    if not files:
        raise DataNotFoundError(folder, f"no density map / model files with suffixes {sorted(wanted)}")
    return [{"image": str(p.resolve()), "label": p.name[: -len(_matching_suffix(p, wanted) or "")]} for p in files]


def density_draws_datalist(
    folder: str | Path, n_samples: int = 1, suffixes: Sequence[str] = DENSITY_SUFFIXES
) -> list[dict[str, str | int]]:
    """:func:`density_datalist` with every map listed ``n_samples`` times, once per generator draw.

    Returns
    -------
    list of dict
        ``[{"image": "/abs/1bxn.mrc", "name": "1bxn", "sample": 0}, {..., "sample": 1}, ...]``: the draws of one map
        next to each other, maps sorted by file name; ``name`` is unique per file (:func:`unique_names`: ``x.mrc``
        and ``x.pdb`` in one folder are ``x_mrc`` and ``x_pdb``).
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    items = density_datalist(folder, suffixes)
    names = unique_names([item["image"] for item in items], [item["label"] for item in items])
    return [
        {"image": item["image"], "name": name, "sample": j}
        for item, name in zip(items, names)
        for j in range(int(n_samples))
    ]


def unique_names(files: Sequence[str], stems: Sequence[str]) -> list[str]:
    """One output name per input file: its ``stem``, or, where several files share a stem (``x.mrc``, ``x.map`` and
    ``x.pdb``), the full file name with dots as underscores (``x_mrc``, ``x_map``, ``x_pdb``); any name still taken
    gets ``_2``, ``_3`` ... appended.

    Parameters
    ----------
    files
        Input paths (their base names are used).
    stems
        The names wanted, one per file (e.g. the file name without its suffix).

    Returns
    -------
    list of str
        Distinct names, in the order of ``files``.
    """
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    wanted = [stem if counts[stem] == 1 else Path(f).name.replace(".", "_") for f, stem in zip(files, stems)]
    out: list[str] = []
    taken: set[str] = set()
    for name in wanted:
        candidate, k = name, 1
        while candidate in taken:
            k += 1
            candidate = f"{name}_{k}"
        taken.add(candidate)
        out.append(candidate)
    return out


def load_density(
    path: str | Path, voxel_size: float = 10.0, box: int | Sequence[int] | None = None, max_voxels: int | None = None
) -> np.ndarray:
    """Load a density map (MRC) or build one from a PDB model, at ``voxel_size`` in a ``box``.

    MRC maps are resampled from the voxel size in their header (:func:`resample_map`) and then
    centre-padded/cropped (:func:`pad_or_crop`). PDB models go through
    :func:`emgan_monai.physics.atomic_models.density_from_pdb` (resolution ``2 * voxel_size``, centred).

    Parameters
    ----------
    path
        ``.mrc``/``.map`` or ``.pdb``/``.ent`` file.
    voxel_size
        Wanted voxel size in A.
    box
        Output edge or ``(D, H, W)``; ``None`` keeps the resampled size.
    max_voxels
        Atomic models only: refuse a model whose map would hold more voxels (before it is built).

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 density, indexed ``[z, y, x]``.

    Raises
    ------
    DataError
        Unknown suffix, a PDB file without atoms, an MRC file that is corrupt or truncated
        (:class:`~emgan_monai.io.errors.ImageReadError`), not 3D, holds NaN/Inf, or has no voxel size in its header.
        All are ``ValueError`` subclasses naming the file.
    """
    import mrcfile

    from emgan_monai.io.mrc import read_mrc

    path = Path(path)
    suffix = _matching_suffix(path, (*_MODEL_SUFFIXES, *_MRC_SUFFIXES)) or path.suffix.lower()
    if suffix in _MODEL_SUFFIXES:
        try:
            density, _ = density_from_pdb(path, voxel_size=voxel_size, box=box, max_voxels=max_voxels)
        except FileNotFoundError as err:
            raise DataNotFoundError(path, "atomic model file not found") from err
        except DataError:
            raise
        except ValueError as err:  # e.g. no ATOM/HETATM records; the message already names the file
            raise DataError(path, str(err).split(": ", 1)[-1]) from err
        return density
    if suffix not in _MRC_SUFFIXES:
        raise DataError(path, f"unsupported density file type {suffix!r}; expected MRC, PDB or mmCIF")
    # header checks (size limit, truncation) and clear errors from the project reader; permissive like mrcfile's
    # own handling of maps written by tools with sloppy headers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mrc = read_mrc(path, permissive=True)
    data = np.asarray(mrc.data, dtype=np.float32)
    with mrcfile.open(path, permissive=True, header_only=True) as fh:
        vs = fh.voxel_size
        header_vs = np.array([float(vs.z), float(vs.y), float(vs.x)])
    if data.ndim != 3:
        raise DataError(path, f"expected a 3D map, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise DataError(path, f"the map holds {int(np.sum(~np.isfinite(data)))} NaN/Inf voxels")
    if np.any(header_vs <= 0) or not np.all(np.isfinite(header_vs)):
        raise DataError(path, f"MRC header has no voxel size; cannot resample to {voxel_size} A")
    if not np.allclose(header_vs, header_vs[0]):
        raise DataError(path, f"anisotropic voxel size {tuple(header_vs)} is not supported")
    data = resample_map(data, float(header_vs[0]), voxel_size)
    return pad_or_crop(data, box) if box is not None else data


# ----------------------------------------------------------------------------------------------
# domain S: subtomograms
# ----------------------------------------------------------------------------------------------
def load_tomogram(path: str | Path, key: str = "dataset") -> np.ndarray:
    """Read a tomogram from HDF5 (``key``), MRC or TIFF as a float32 3D array (axes as stored)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(path, "tomogram not found")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".hdf"):
        import h5py

        from emgan_monai.io.base import check_image_size

        try:
            with h5py.File(path, "r") as fh:
                if key not in fh:
                    raise DataError(path, f"HDF5 key {key!r} not found (keys: {list(fh.keys())})")
                check_image_size(path, fh[key].shape, fh[key].dtype, what="HDF5 dataset")
                data = np.asarray(fh[key][()], dtype=np.float32)
        except DataError:
            raise
        except Exception as err:  # h5py raises OSError, KeyError, TypeError ... on corrupt files
            raise DataError(path, f"invalid or truncated HDF5 file ({type(err).__name__}: {err})") from err
    elif suffix in _MRC_SUFFIXES:
        from emgan_monai.io.mrc import read_mrc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            data = np.asarray(read_mrc(path, permissive=True).data, dtype=np.float32)
    elif suffix in (".tif", ".tiff"):
        from emgan_monai.io.tiff import read_tiff

        data = np.asarray(np.squeeze(read_tiff(path).data), dtype=np.float32)
    else:
        raise DataError(path, f"unsupported tomogram type {suffix!r}; expected .h5, .mrc or .tif")
    if data.ndim != 3:
        raise DataError(path, f"expected a 3D tomogram, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise DataError(
            path, f"the tomogram holds {int(np.sum(~np.isfinite(data)))} NaN/Inf voxels (a failed reconstruction?)"
        )
    if float(data.min()) == float(data.max()):
        raise DataError(path, f"the tomogram is constant (every voxel = {data.flat[0]})")
    return data


def cut_subvolume(volume: np.ndarray, centre: Sequence[int], box: int, border: str = "drop") -> np.ndarray | None:
    """Cut a cubic ``box`` centred on ``centre`` (voxel ``box // 2`` of the cut is ``centre``).

    Parameters
    ----------
    volume
        3D array.
    centre
        Integer index of the centre in ``volume``.
    box
        Edge length in voxels.
    border
        ``"drop"``: return ``None`` when the box leaves the volume. ``"pad"``: fill the outside with
        the volume mean (a neutral grey, unlike zeros which would add an edge to normalised data).

    Returns
    -------
    np.ndarray or None
        ``(box, box, box)`` float32 copy, or ``None`` (dropped).
    """
    if border not in ("drop", "pad"):
        raise ValueError(f"border must be 'drop' or 'pad', got {border!r}")
    if np.ndim(volume) != 3:
        raise DataError("", f"cut_subvolume needs a 3D volume, got shape {np.shape(volume)}")
    if int(box) < 1:
        raise ValueError(f"box must be a positive number of voxels, got {box}")
    if np.size(centre) != 3:
        raise ValueError(f"centre must hold 3 indices, got {centre!r}")
    if border == "drop" and any(int(box) > n for n in np.shape(volume)):
        raise DataError(
            "",
            f"the volume {np.shape(volume)} is smaller than the box {box}: every subvolume would be dropped "
            "(use a smaller box or border='pad')",
        )
    c = np.asarray(centre, dtype=np.int64)
    lo = c - box // 2
    hi = lo + box
    shape = np.asarray(volume.shape)
    if np.all(lo >= 0) and np.all(hi <= shape):
        return np.array(volume[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]], dtype=np.float32)
    if border == "drop":
        return None
    out = np.full((box, box, box), float(volume.mean()), dtype=np.float32)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - lo
    dst_hi = dst_lo + (src_hi - src_lo)
    out[dst_lo[0] : dst_hi[0], dst_lo[1] : dst_hi[1], dst_lo[2] : dst_hi[2]] = volume[
        src_lo[0] : src_hi[0], src_lo[1] : src_hi[1], src_lo[2] : src_hi[2]
    ]
    return out


def read_deepfinder_objlist(xml_path: str | Path) -> list[tuple[int, tuple[int, int, int]]]:
    """Read a DeepFinder ``objlist.xml``: ``[(class_label, (x, y, z)), ...]`` (integer voxel indices)."""
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"{xml_path}: cannot read DeepFinder object list: {err}") from err
    out = []
    for i, obj in enumerate(root.iter("object")):
        try:
            label = int(float(obj.attrib["class_label"]))
            xyz = tuple(int(round(float(obj.attrib[k]))) for k in ("x", "y", "z"))
        except (KeyError, ValueError) as err:
            raise ValueError(f"{xml_path}: object {i} lacks a numeric class_label/x/y/z: {obj.attrib}") from err
        out.append((label, xyz))
    if not out:
        raise ValueError(f"{xml_path}: no <object> entries")
    return out  # type: ignore[return-value]


def subtomograms_from_deepfinder(
    h5_path: str | Path, xml_path: str | Path, box: int = 32, border: str = "drop", key: str = "dataset"
) -> list[Subtomogram]:
    """Cut subtomograms from a DeepFinder tomogram at the particle positions of its object list.

    The XML's ``x, y, z`` index the HDF5 array as ``array[x, y, z]`` (verified on the toy data: every
    centre carries its class label in the target volume within one voxel, 59 % exactly).

    Parameters
    ----------
    h5_path
        ``tomoN_data.h5`` (or ``tomoN_target.h5`` to cut the label volumes the same way).
    xml_path
        ``tomoN_objlist.xml``.
    box
        Cube edge in voxels.
    border
        ``"drop"`` (default) skips particles whose box leaves the tomogram; ``"pad"`` keeps them,
        padded with the tomogram mean (see :func:`cut_subvolume`).
    key
        HDF5 dataset key.

    Returns
    -------
    list of (array, class_label, centre)
        ``array`` is ``(box, box, box)`` float32 in the HDF5 axis order (axis 0 = beam direction),
        ``centre`` the ``(x, y, z)`` index, i.e. ``array[box // 2, box // 2, box // 2]`` is the centre.
    """
    tomo = load_tomogram(h5_path, key=key)
    items: list[Subtomogram] = []
    for label, xyz in read_deepfinder_objlist(xml_path):
        sub = cut_subvolume(tomo, xyz, box, border)
        if sub is not None:
            items.append((sub, label, xyz))
    return items


def binning_scale_from_points(points: np.ndarray, shape: Sequence[int]) -> int:
    """Smallest integer binning factor that brings all particle positions inside ``shape``.

    For the HIV-1 VLP tomogram (napari sample data) the positions span about z 143-303, y 33-507,
    x 29-487 while the binned array is ``(101, 135, 135)``: the largest ratio is 507 / 135 = 3.76,
    so the factor is 4 (original grid about 404 x 540 x 540). Check it with :func:`point_contrast`:
    at scale 4 the smoothed tomogram at the positions is about 2.1 standard deviations above its
    mean, while at 4.5, 5 or 6 it is within 0.1 (the positions then miss the particles).

    Parameters
    ----------
    points
        ``(N, 3)`` positions in the un-binned grid, same axis order as ``shape``.
    shape
        Shape of the binned array.

    Returns
    -------
    int
        Binning factor ``s``: binned index = original / s.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != len(shape):
        raise ValueError(f"points must be (N, {len(shape)}), got {points.shape}")
    if np.any(points < 0):
        raise ValueError("points hold negative coordinates; cannot derive a binning scale")
    ratio = float(np.max(points.max(axis=0) / (np.asarray(shape, dtype=np.float64) - 0.5)))
    return max(1, int(np.ceil(ratio)))


def point_contrast(tomogram: np.ndarray, points: np.ndarray, scale: float, sigma: float = 1.0) -> float:
    """Mean of the Gaussian-smoothed, z-scored tomogram at ``round(points / scale)``.

    A value far from 0 (in units of the smoothed volume's standard deviation) means the scaled
    positions sit on structure; about 0 means they fall on random background. Points outside the
    volume are ignored.
    """
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(np.asarray(tomogram, dtype=np.float32), sigma)
    smooth = (smooth - smooth.mean()) / (smooth.std() + 1e-12)
    idx = np.rint(np.asarray(points, dtype=np.float64) / scale).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(smooth.shape)), axis=1)
    if not np.any(inside):
        return 0.0
    idx = idx[inside]
    return float(smooth[idx[:, 0], idx[:, 1], idx[:, 2]].mean())


def subtomograms_from_points(
    tomo: str | Path | np.ndarray,
    points_zyx: np.ndarray,
    scale: float | None = None,
    box: int = 32,
    border: str = "drop",
    label: int = 0,
) -> list[Subtomogram]:
    """Cut subtomograms of a (binned) tomogram at particle positions given in the un-binned grid.

    Parameters
    ----------
    tomo
        ``(D, H, W)`` array or a path readable by :func:`load_tomogram` (e.g. the HIV ``tomo.tif``).
    points_zyx
        ``(N, 3)`` positions ``(z, y, x)`` in the original (un-binned) grid.
    scale
        Binning factor; ``None`` derives it with :func:`binning_scale_from_points`.
    box
        Cube edge in voxels of the binned tomogram.
    border
        ``"drop"`` or ``"pad"`` (see :func:`cut_subvolume`).
    label
        Class label attached to every item.

    Returns
    -------
    list of (array, label, centre)
        ``(box, box, box)`` float32 arrays ``[z, y, x]`` and the binned integer centre ``(z, y, x)``.
    """
    volume = load_tomogram(tomo) if isinstance(tomo, (str, Path)) else np.asarray(tomo, dtype=np.float32)
    points = np.asarray(points_zyx, dtype=np.float64)
    if scale is None:
        scale = binning_scale_from_points(points, volume.shape)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    items: list[Subtomogram] = []
    for p in np.rint(points / scale).astype(np.int64):
        centre = (int(p[0]), int(p[1]), int(p[2]))
        sub = cut_subvolume(volume, centre, box, border)
        if sub is not None:
            items.append((sub, label, centre))
    return items


# ----------------------------------------------------------------------------------------------
# normalisation and export
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZScoreStats:
    """Mean and standard deviation of a whole dataset, for per-dataset z-score normalisation.

    Attributes
    ----------
    mean, std
        Statistics over all voxels of all fitted volumes.
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, volumes: Iterable[np.ndarray]) -> ZScoreStats:
        """Fit on an iterable of arrays (streamed: running sums in float64)."""
        n, s, s2 = 0, 0.0, 0.0
        for v in volumes:
            v = np.asarray(v, dtype=np.float64)
            n += v.size
            s += float(v.sum())
            s2 += float(np.square(v).sum())
        if n == 0:
            raise ValueError("ZScoreStats.fit needs at least one non-empty volume")
        mean = s / n
        var = max(s2 / n - mean * mean, 0.0)
        return cls(mean=mean, std=float(np.sqrt(var)))

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        return zscore(volume, self)


def zscore(volume: np.ndarray, stats: ZScoreStats | None = None, eps: float = 1e-8) -> np.ndarray:
    """``(volume - mean) / std`` with dataset ``stats`` (or the volume's own when ``None``).

    A constant volume (``std <= eps``) maps to zeros instead of dividing by zero.

    Returns
    -------
    np.ndarray
        float32 array, same shape.
    """
    volume = np.asarray(volume, dtype=np.float32)
    mean, std = (float(volume.mean()), float(volume.std())) if stats is None else (stats.mean, stats.std)
    if std <= eps:
        return np.zeros_like(volume) if stats is None else (volume - mean).astype(np.float32)
    return ((volume - mean) / std).astype(np.float32)


def save_subtomograms(items: Iterable[tuple], out_dir: str | Path, voxel_size: float, prefix: str = "subtomo") -> Path:
    """Write subtomograms as MRC files and a ``labels.csv`` index.

    Parameters
    ----------
    items
        ``(array, label)`` or ``(array, label, centre)`` tuples, e.g. from
        :func:`subtomograms_from_deepfinder`.
    out_dir
        Output folder (created).
    voxel_size
        Voxel size in A written to every MRC header.
    prefix
        File name prefix: ``{prefix}_{index:05d}.mrc``.

    Returns
    -------
    Path
        Path of ``labels.csv`` with columns ``filename, label, centre_0, centre_1, centre_2``
        (centre empty when not given).
    """
    import mrcfile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "labels.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label", "centre_0", "centre_1", "centre_2"])
        for i, item in enumerate(items):
            if len(item) not in (2, 3):
                raise ValueError(f"item {i}: expected (array, label[, centre]), got {len(item)} fields")
            array, label = np.asarray(item[0], dtype=np.float32), item[1]
            centre = list(item[2]) if len(item) == 3 else ["", "", ""]
            name = f"{prefix}_{i:05d}.mrc"
            with mrcfile.new(out_dir / name, overwrite=True) as mrc:
                mrc.set_data(array)
                mrc.voxel_size = voxel_size
            writer.writerow([name, label, *centre])
    return csv_path


def unpaired_datalist(
    dir_a: str | Path, dir_b: str | Path, suffixes: Sequence[str] = (".mrc", ".map", ".tif", ".tiff", ".npy")
) -> list[dict[str, str]]:
    """Unpaired datalist for the CycleGAN trainer.

    Files of both folders are sorted; the list has ``max(len(a), len(b))`` entries and the shorter
    list is cycled (entry ``i`` uses ``short[i % len(short)]``) so that every file of the longer domain
    is seen once per epoch. Pairing is arbitrary and carries no meaning: shuffle the dataset (e.g.
    ``DataLoader(shuffle=True)``) and, to vary the pairs across epochs, rebuild or shuffle one side.

    Returns
    -------
    list of dict
        ``[{"image_a": path_a, "image_b": path_b}, ...]``.

    Raises
    ------
    ValueError
        If a folder is missing or holds no file with an accepted suffix.
    """
    wanted = {s.lower() for s in suffixes}
    lists = []
    for folder in (Path(dir_a), Path(dir_b)):
        if not folder.is_dir():
            raise ValueError(f"folder does not exist: {folder}")
        files = sorted(str(p.resolve()) for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted)
        if not files:
            raise ValueError(f"{folder}: no image files with suffixes {sorted(wanted)}")
        lists.append(files)
    a, b = lists
    n = max(len(a), len(b))
    return [{"image_a": pa, "image_b": pb} for pa, pb in zip(islice(cycle(a), n), islice(cycle(b), n))]
