"""Files of wide-field / confocal fluorescence images: folders of real pairs and the inputs of inference.

Real pairs live in two sibling folders with matching file names::

    root/wf/cell01.tif        root/confocal/cell01.tif
    root/wf/cell02.tif        root/confocal/cell02.tif

:func:`paired_datalist` turns them into a MONAI datalist ``[{"image": wf, "label": confocal}, ...]`` and
:func:`split_real_pairs` splits the sorted files into train / val / test by file, i.e. by field of view (what
``bundles/confocal_enhance/configs/real_pairs.json`` uses). :func:`image_datalist` lists the TIFF images of a folder,
the inputs of ``inference.json``. Synthesised pairs (no real pairs offline) come from
:mod:`emgan_monai.data.confocal_training`, written in the same ``wf/`` + ``confocal/`` layout.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from emgan_monai.errors import DataError, DataNotFoundError

__all__ = ["image_datalist", "paired_datalist", "split_real_pairs"]

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
    root: str | os.PathLike,
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


def split_real_pairs(dataset_dir: str | os.PathLike, heldout_fraction: float = 0.3) -> dict[str, list[dict[str, str]]]:
    """Train / val / test datalists of a folder of real pairs, split by file (each file its own field of view).

    The pairs are sorted by name; the last ``heldout_fraction`` of them (at least two) are held out, their first
    half for validation, the second half for test.

    Parameters
    ----------
    dataset_dir : str | os.PathLike
        Folder with ``wf/`` and ``confocal/`` sub-folders of matching TIFF names (see :func:`paired_datalist`).
    heldout_fraction : float
        Fraction of the files held out for val + test.

    Returns
    -------
    dict[str, list[dict[str, str]]]
        ``{"train": [...], "val": [...], "test": [...]}``, items ``{"image": wf path, "label": confocal path}``.
    """
    datalist = paired_datalist(dataset_dir)
    n = len(datalist)
    if n < 3:
        raise DataError(dataset_dir, f"need at least 3 real pairs to hold out validation and test files, got {n}.")
    n_held = min(n - 1, max(2, int(round(n * heldout_fraction))))
    half = n_held // 2
    return {"train": datalist[: n - n_held], "val": datalist[n - n_held : n - n_held + half],
            "test": datalist[n - n_held + half :]}  # fmt: skip


def image_datalist(input_dir: str | os.PathLike, key: str = "image") -> list[dict[str, str]]:
    """``[{key: path}, ...]`` for the TIFF files of a folder (or a single TIFF file), sorted by name.

    Outputs are named after the input's stem (``x.tif`` -> ``x_confocal.tif``, ``x_preview.png``), so two inputs
    whose stems differ only in the extension or in letter case (``x.tif`` and ``x.tiff``; ``X.tif`` and ``x.tif``
    on a case-insensitive file system) would write the same outputs: such a folder is refused before any work.

    Raises
    ------
    DataNotFoundError
        if ``input_dir`` does not exist or holds no ``.tif``/``.tiff`` file.
    DataError
        if two inputs would write the same output names (both named in the message).
    """
    path = Path(input_dir)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TIFF_EXTENSIONS)
    else:
        raise DataNotFoundError(path, "the input does not exist")
    if not files:
        raise DataNotFoundError(path, "no TIFF images (.tif/.tiff) to enhance")
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_stem.setdefault(f.stem.casefold(), []).append(f)
    clashes = [group for group in by_stem.values() if len(group) > 1]
    if clashes:
        pairs = "; ".join(
            " and ".join(f.name for f in group) + f" would both write {group[0].stem}_*" for group in clashes
        )
        raise DataError(path, f"{pairs}: rename one of them (nothing was processed or written)")
    return [{key: str(f)} for f in files]
