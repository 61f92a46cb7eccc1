"""Datalists of paired wide-field / confocal fluorescence images, real or physically synthesised.

Real pairs live in two sibling folders with matching file names::

    root/wf/cell01.tif        root/confocal/cell01.tif
    root/wf/cell02.tif        root/confocal/cell02.tif

and :func:`paired_datalist` turns them into a MONAI datalist ``[{"image": wf, "label": confocal}, ...]``.

Without real pairs, :func:`synthesize_pairs_from_stack` makes them from a confocal stack used as the
fluorophore density (see :mod:`emgan_monai.physics.pair_synthesis` for the image-formation model) and writes
them in the same ``wf/`` + ``confocal/`` layout, so that ``paired_datalist(out_dir)`` reads them back,
together with ``pairs.json`` recording every pair's acquisition parameters.

:func:`split_planes` chooses train / validation planes of one stack so that validation is an axially
contiguous block separated from training by a gap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile

from emgan_monai.errors import DataError, DataNotFoundError
from emgan_monai.physics.optics import PSFModel
from emgan_monai.physics.pair_synthesis import SimulationRanges, synthesize_pair

__all__ = ["paired_datalist", "split_planes", "synthesize_pairs_from_stack"]

TIFF_EXTENSIONS = (".tif", ".tiff")
_ALLOWED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_MAX_LISTED = 20


def _tiff_files(folder: Path, extensions: Sequence[str]) -> dict[str, Path]:
    """Map file stem -> path for the TIFF files directly inside ``folder``."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in extensions:
            continue
        if path.stem in files:
            raise DataError(folder, f"two files share the name {path.stem!r} ({files[path.stem].name}, {path.name}).")
        files[path.stem] = path
    return files


def _tiff_shape(path: Path) -> tuple[int, ...]:
    """Shape of the first image series of a TIFF (without reading pixels), singleton axes dropped.

    The header's size is checked against :func:`emgan_monai.io.base.max_image_bytes` (absurd headers are refused).
    """
    from emgan_monai.io.base import check_image_size

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(int(s) for s in series.shape), np.dtype(series.dtype)
    except Exception as err:  # tifffile raises many types on malformed headers
        raise DataError(path, f"not a readable TIFF ({type(err).__name__}: {err}).") from err
    check_image_size(path, shape, dtype, what="TIFF header")
    shape = tuple(s for s in shape if s != 1)
    if len(shape) not in (2, 3):
        raise DataError(path, f"expected a 2D (Y, X) or 3D (Z, Y, X) image, got shape {shape}.")
    if dtype not in _ALLOWED_DTYPES:
        raise DataError(path, f"unsupported dtype {dtype}; expected uint8, uint16 or float32.")
    return shape


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def paired_datalist(
    root: str | Path,
    image_dir: str = "wf",
    label_dir: str = "confocal",
    extensions: Sequence[str] = TIFF_EXTENSIONS,
    check_shapes: bool = True,
    min_shape: Sequence[int] | None = None,
) -> list[dict[str, str]]:
    """MONAI datalist of real wide-field / confocal pairs matched by file name.

    Parameters
    ----------
    root : str | Path
        Folder holding ``image_dir`` and ``label_dir``.
    image_dir, label_dir : str
        Sub-folders with the wide-field inputs and the confocal targets.
    extensions : Sequence[str]
        Accepted (lower-case) suffixes; ``a.tif`` matches ``a.tiff``.
    check_shapes : bool
        Read each TIFF header (not its pixels) and require 2D or 3D, uint8 / uint16 / float32 images whose
        input and target shapes agree.
    min_shape : Sequence[int] | None
        With ``check_shapes``, the smallest accepted ``(Y, X)`` or ``(Z, Y, X)`` (the training patch / ROI size,
        aligned to the image's last axes): smaller images are refused here, before training, naming the file.

    Returns
    -------
    list[dict[str, str]]
        ``[{"image": <wf path>, "label": <confocal path>}, ...]`` sorted by name.

    Raises
    ------
    FileNotFoundError
        If ``root`` or one of the sub-folders is missing.
    ValueError
        If a folder holds no TIFF, names do not match (both lists of unmatched names are given), a file is
        unreadable, has an unsupported dimensionality or dtype, is smaller than ``min_shape``, or a pair's shapes
        differ (the file is named).

    The errors are :class:`~emgan_monai.errors.DataNotFoundError` / :class:`~emgan_monai.errors.DataError`
    (subclasses of the built-in types above).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(root, "paired data folder does not exist.")
    folders = {}
    for role, sub in (("wide-field", image_dir), ("confocal", label_dir)):
        folder = root / sub
        if not folder.is_dir():
            raise DataNotFoundError(
                root,
                f"missing the {role} folder '{sub}/' (expected {root}/{image_dir}/ and "
                f"{root}/{label_dir}/ with matching file names).",
            )
        folders[sub] = folder
    exts = tuple(e.lower() for e in extensions)
    images = _tiff_files(folders[image_dir], exts)
    labels = _tiff_files(folders[label_dir], exts)
    for sub, files in ((image_dir, images), (label_dir, labels)):
        if not files:
            raise DataNotFoundError(root / sub, f"no image files with extensions {exts}.")
    only_images = sorted(set(images) - set(labels))
    only_labels = sorted(set(labels) - set(images))
    if only_images or only_labels:
        raise DataError(
            root,
            f"unmatched file names; only in {image_dir}/: [{_listing(only_images)}]; "
            f"only in {label_dir}/: [{_listing(only_labels)}].",
        )
    datalist = []
    mismatched = []
    for name in sorted(images):
        if check_shapes:
            s_img, s_lab = _tiff_shape(images[name]), _tiff_shape(labels[name])
            if s_img != s_lab:
                mismatched.append(f"{images[name].name}: {image_dir} {s_img} vs {label_dir} {s_lab}")
            elif min_shape is not None:
                need = tuple(int(m) for m in min_shape)[-len(s_img) :]
                if any(s < m for s, m in zip(s_img[-len(need) :], need)):
                    raise DataError(
                        images[name],
                        f"image shape {s_img} is smaller than the training patch {tuple(min_shape)}: "
                        "use larger images or a smaller patch/ROI size.",
                    )
        datalist.append({"image": str(images[name]), "label": str(labels[name])})
    if mismatched:
        raise DataError(root, f"shape mismatch between input and target for {_listing(mismatched)}.")
    return datalist


def split_planes(
    n_planes: int,
    val_fraction: float = 0.2,
    gap: int = 2,
    val_position: Literal["start", "middle", "end"] = "end",
) -> tuple[list[int], list[int]]:
    """Split the planes of one stack into train / validation planes without axial leakage.

    The validation planes form one contiguous block (at the end, start or middle of the stack) and the
    ``gap`` planes on each side of it are used by neither split. With a random per-plane split, a
    validation plane's immediate neighbours (which share most of its in-focus structures, the axial
    resolution being about 3 planes of 0.29 um) would be training targets. ``gap`` should be at least the
    axial half width at half maximum of the PSF in planes: for NA 1.2 water immersion at 0.29 um steps the
    wide-field HWHM is about 0.44 um (1.5 planes), hence the default 2. Note that wide-field *inputs* still
    receive faint out-of-focus haze from beyond the gap; that is inherent to wide-field imaging.

    Parameters
    ----------
    n_planes : int
        Number of planes in the stack.
    val_fraction : float
        Fraction of planes in validation, in (0, 1); at least one plane.
    gap : int
        Planes discarded on each side of the validation block (>= 0).
    val_position : {"start", "middle", "end"}
        Where the validation block lies.

    Returns
    -------
    tuple[list[int], list[int]]
        ``(train_planes, val_planes)``, sorted plane indices.
    """
    if n_planes < 2:
        raise ValueError(f"n_planes must be >= 2 to split, got {n_planes}.")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}.")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}.")
    n_val = max(1, int(round(n_planes * val_fraction)))
    if val_position == "end":
        start = n_planes - n_val
    elif val_position == "start":
        start = 0
    elif val_position == "middle":
        start = (n_planes - n_val) // 2
    else:
        raise ValueError(f"val_position must be 'start', 'middle' or 'end', got {val_position!r}.")
    val = list(range(start, start + n_val))
    train = [p for p in range(n_planes) if p < start - gap or p >= start + n_val + gap]
    if not train:
        raise ValueError(
            f"no training planes left: {n_planes} planes, {n_val} for validation and a gap of {gap} on each side."
        )
    return train, val


def _default_psf_shape(stack_shape: tuple[int, int, int], max_lateral: int = 127) -> tuple[int, int, int]:
    depth, height, width = stack_shape
    lateral = min(max_lateral, 2 * max(height, width) - 1)
    lateral += 1 - lateral % 2  # odd
    return 2 * depth - 1, lateral, lateral


def synthesize_pairs_from_stack(
    stack_path: str | Path,
    out_dir: str | Path,
    planes: Sequence[int] | None = None,
    n_pairs_per_plane: int = 1,
    seed: int = 0,
    ranges: SimulationRanges | None = None,
    psf_model: PSFModel = "born_wolf",
    spacing_zyx_um: Sequence[float] = (0.29, 0.26, 0.26),
    psf_shape: Sequence[int] | None = None,
    dark_percentile: float = 1.0,
    dtype: Literal["float32", "uint16"] = "float32",
) -> list[dict[str, str]]:
    """Synthesise wide-field / confocal training pairs from a 3D confocal stack and write them as TIFFs.

    The stack (background-subtracted: its ``dark_percentile`` percentile is removed and negatives clipped) is
    the fluorophore density. For every requested plane and repetition, acquisition parameters are drawn from
    ``ranges`` (NA, photon budget, background, read noise), wide-field and confocal PSFs are computed for that
    NA and :func:`emgan_monai.physics.pair_synthesis.synthesize_pair` renders the pair. Each pair is seeded by
    ``(seed, plane, repetition)``, so any pair can be regenerated alone.

    Outputs (files of the same name are overwritten): ``out_dir/wf/zPPP_rRR.tif`` (input, ADU), ``out_dir/confocal/zPPP_rRR.tif`` (target, noise-free,
    peak = photon budget) and ``out_dir/pairs.json`` (stack, voxel size, PSF model and grid, ranges, and per pair:
    files, plane, seed, na, photons, background, read_noise, offset). ``paired_datalist(out_dir)`` reads them back.

    Parameters
    ----------
    stack_path : str | Path
        3D TIFF ``(Z, Y, X)``, e.g. the nuclei channel of the Allen cells3d stack (60, 256, 256).
    out_dir : str | Path
        Output folder (created).
    planes : Sequence[int] | None
        Focal planes to render (default all); use :func:`split_planes` for train / validation sets.
    n_pairs_per_plane : int
        Independent parameter draws per plane.
    seed : int
        Base seed.
    ranges : SimulationRanges | None
        Parameter ranges (default :class:`SimulationRanges()`).
    psf_model : {"born_wolf", "gaussian"}
        PSF model.
    spacing_zyx_um : Sequence[float]
        Voxel size of the stack in um (cells3d: 0.29, 0.26, 0.26).
    psf_shape : Sequence[int] | None
        PSF grid ``(Zp, Yp, Xp)``. Default ``(2 Z - 1, L, L)`` with ``L = min(127, 2 max(Y, X) - 1)``: every plane
        of the stack contributes out-of-focus light to every other; light spread beyond +-L/2 pixels is dropped.
    dark_percentile : float
        Percentile of the stack taken as its dark level.
    dtype : {"float32", "uint16"}
        Pixel type written; ``uint16`` rounds and clips to [0, 65535].

    Returns
    -------
    list[dict[str, str]]
        ``[{"image": <wf tif>, "label": <confocal tif>}, ...]`` in rendering order.
    """
    stack_path, out_dir = Path(stack_path), Path(out_dir)
    if not stack_path.is_file():
        raise FileNotFoundError(f"stack {stack_path} does not exist.")
    try:
        stack = tifffile.imread(stack_path)
    except (tifffile.TiffFileError, OSError) as err:
        raise ValueError(f"{stack_path}: not a readable TIFF ({err}).") from err
    stack = np.squeeze(stack)
    if stack.ndim != 3:
        raise ValueError(f"{stack_path}: expected a 3D (Z, Y, X) stack, got shape {stack.shape}.")
    if not np.issubdtype(stack.dtype, np.number) or np.iscomplexobj(stack):
        raise ValueError(f"{stack_path}: expected a real-valued intensity stack, got dtype {stack.dtype}.")
    if n_pairs_per_plane < 1:
        raise ValueError(f"n_pairs_per_plane must be >= 1, got {n_pairs_per_plane}.")
    if dtype not in ("float32", "uint16"):
        raise ValueError(f"dtype must be 'float32' or 'uint16', got {dtype!r}.")
    depth = stack.shape[0]
    planes = list(range(depth)) if planes is None else [int(p) for p in planes]
    bad = [p for p in planes if not 0 <= p < depth]
    if bad:
        raise ValueError(f"{stack_path}: planes {bad} are outside the stack's {depth} planes.")
    ranges = SimulationRanges() if ranges is None else ranges
    psf_shape = _default_psf_shape(stack.shape) if psf_shape is None else tuple(int(s) for s in psf_shape)

    volume = stack.astype(np.float64)
    dark = float(np.percentile(volume, dark_percentile))
    volume = np.clip(volume - dark, 0.0, None)
    if not volume.max() > 0:
        raise ValueError(f"{stack_path}: the stack is empty after subtracting its dark level {dark}.")

    for sub in ("wf", "confocal"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    records, datalist = [], []
    for plane in planes:
        for rep in range(n_pairs_per_plane):
            pair_seed = [int(seed), plane, rep]
            rng = np.random.default_rng(pair_seed)
            params = ranges.sample(rng)
            psf_wf, psf_conf = ranges.psfs(params["na"], psf_shape, spacing_zyx_um, model=psf_model)
            wf, conf = synthesize_pair(
                volume,
                plane,
                psf_wf,
                psf_conf,
                photons=params["photons"],
                background=params["background"],
                read_noise=params["read_noise"],
                offset=params["offset"],
                rng=rng,
            )
            name = f"z{plane:03d}_r{rep:02d}.tif"
            for sub, img in (("wf", wf), ("confocal", conf)):
                if dtype == "uint16":
                    img = np.clip(np.rint(img), 0, np.iinfo(np.uint16).max).astype(np.uint16)
                tifffile.imwrite(out_dir / sub / name, img)
            records.append(
                {"image": f"wf/{name}", "label": f"confocal/{name}", "plane": plane, "seed": pair_seed, **params}
            )
            datalist.append({"image": str(out_dir / "wf" / name), "label": str(out_dir / "confocal" / name)})

    provenance = {
        "stack": str(stack_path),
        "stack_shape": list(stack.shape),
        "spacing_zyx_um": [float(s) for s in spacing_zyx_um],
        "dark_level": dark,
        "psf_model": psf_model,
        "psf_shape": list(psf_shape),
        "seed": int(seed),
        "dtype": dtype,
        "ranges": ranges.to_dict(),
        "pairs": records,
    }
    (out_dir / "pairs.json").write_text(json.dumps(provenance, indent=2))
    return datalist
