"""Dataset builder for the segmented Drosophila VNC ssTEM stack (Gerhard et al. 2013).

Folder layout (``stack1`` of the public dataset, doi 10.6084/m9.figshare.856713)::

    <root>/raw/NN.tif            uint8 EM section, (H, W)
    <root>/mitochondria/NN.png   uint8 0/255 mitochondria mask (anti-aliased: threshold at 127)
    <root>/membranes/NN.png      bool cell-membrane mask

Seed 000's paired task maps a 3-channel one-hot mask (mitochondria / membrane / background, mitochondria
winning where both are set) to the EM section. :func:`drosophila_datalist` turns the folder into a MONAI
datalist, :func:`split_sections` splits it by section, :func:`build_mask` is the numpy face of
:class:`~emgan_monai.transforms.MaskToOneHot` and
:func:`make_synthetic_stack` writes a small EM-like stack with the same layout for tests and CI.
:func:`load_sections` loads a datalist as ``(N, 3, R, R)`` one-hot masks and ``(N, 1, R, R)`` EM tensors at one
resolution (evaluation, ablation and scripts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from emgan_monai.errors import DataError, DataNotFoundError

__all__ = [
    "IMAGE_DIR",
    "MITO_DIR",
    "MEMBRANE_DIR",
    "MASK_CHANNELS",
    "check_section",
    "drosophila_datalist",
    "split_sections",
    "build_mask",
    "make_synthetic_stack",
    "load_sections",
]

IMAGE_DIR = "raw"
MITO_DIR = "mitochondria"
MEMBRANE_DIR = "membranes"
#: channel order of the one-hot masks built by :func:`build_mask`
MASK_CHANNELS = ("mitochondria", "membrane", "background")


def _section_stems(folder: Path, suffix: str) -> dict[int, str]:
    """Map section number -> file stem for the files ``NN<suffix>`` in ``folder`` (non-numeric names ignored)."""
    return {int(p.stem): p.stem for p in folder.iterdir() if p.suffix.lower() == suffix and p.stem.isdigit()}


def check_section(item: dict, min_size: int | None = None) -> tuple[int, int]:
    """Read one section's three files and check that they make a training pair.

    Parameters
    ----------
    item
        A datalist item with ``image`` (raw EM TIFF), ``mito`` and ``membrane`` (mask PNGs) paths.
    min_size
        Smallest accepted side of the section in pixels; ``None`` accepts any size.

    Returns
    -------
    (H, W)
        The section's shape.

    Raises
    ------
    ImageReadError
        A file is missing, truncated or corrupt, or its header announces an absurd size.
    DataError
        The raw image is not a single-channel 2D image, holds NaN/Inf, or is constant (a blank section); a mask is
        not a single-channel 2D image or differs in shape from the raw image; the section is smaller than
        ``min_size``. The message names the file.
    """
    from emgan_monai.io import read_image

    raw, _ = read_image(item["image"])
    raw = np.squeeze(raw)
    if raw.ndim != 2:
        raise DataError(item["image"], f"expected a single-channel 2D EM section (H, W), got shape {raw.shape}")
    if not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
        raise DataError(item["image"], f"expected a real-valued EM section, got dtype {raw.dtype}")
    if np.issubdtype(raw.dtype, np.floating) and not np.all(np.isfinite(raw)):
        raise DataError(item["image"], f"the EM section holds {int(np.sum(~np.isfinite(raw)))} NaN/Inf pixels")
    if raw.min() == raw.max():
        raise DataError(item["image"], f"the EM section is constant (every pixel = {raw.flat[0]}): a blank section")
    if min_size is not None and min(raw.shape) < int(min_size):
        raise DataError(item["image"], f"the section {raw.shape} is smaller than the minimum side of {min_size} px")
    for key in ("mito", "membrane"):
        mask, _ = read_image(item[key])
        if mask.ndim != 2:
            raise DataError(
                item[key], f"expected a single-channel (grey or 1-bit) {key} mask (H, W), got shape {mask.shape}"
            )
        if mask.shape != raw.shape:
            raise DataError(
                item[key], f"{key} mask shape {mask.shape} differs from the EM section {raw.shape} ({item['image']})"
            )
    return raw.shape


def drosophila_datalist(
    root: str | os.PathLike,
    sections: Sequence[int] | None = None,
    validate: bool = True,
    min_size: int | None = None,
) -> list[dict]:
    """Build a MONAI datalist from a Drosophila-VNC style stack folder.

    Parameters
    ----------
    root
        Stack folder holding ``raw/NN.tif``, ``mitochondria/NN.png`` and ``membranes/NN.png``.
    sections
        Section numbers to include (``NN`` in the file names). ``None`` takes every section found in ``raw/``.
    validate
        Read every file once and check it with :func:`check_section` (before any training starts), so a corrupt,
        blank or mismatched section fails here, naming its file, rather than in the middle of a run.
    min_size
        With ``validate``, the smallest accepted side of a section in pixels.

    Returns
    -------
    list of dict
        One item per section, sorted by section, with keys ``image`` (raw EM path), ``mito`` (mitochondria
        mask path), ``membrane`` (membrane mask path) and ``section`` (int). Paths are ``str``.

    Raises
    ------
    DataNotFoundError
        If ``root`` or one of its three sub-folders is missing, if ``raw/`` holds no section, if a requested
        section has no raw image, or if a section lacks one of its mask files (the message names the missing path).
        Also a :class:`FileNotFoundError`.
    DataError
        If ``sections`` holds duplicates, or (with ``validate``) a file is unusable (see :func:`check_section`).
        Also a :class:`ValueError`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(root, "Drosophila stack folder not found (set --dataset_dir)")
    for sub in (IMAGE_DIR, MITO_DIR, MEMBRANE_DIR):
        if not (root / sub).is_dir():
            raise DataNotFoundError(root, f"the Drosophila stack has no '{sub}/' folder (expected {root / sub})")
    stems = _section_stems(root / IMAGE_DIR, ".tif")
    if sections is None:
        ids = sorted(stems)
        if not ids:
            raise DataNotFoundError(root / IMAGE_DIR, "no raw sections named NN.tif found")
    else:
        ids = [int(s) for s in sections]
        if len(set(ids)) != len(ids):
            raise DataError(root, f"duplicate section numbers in sections={list(sections)}")
        ids = sorted(ids)
    datalist = []
    for s in ids:
        stem = stems.get(s, f"{s:02d}")
        item = {
            "image": root / IMAGE_DIR / f"{stem}.tif",
            "mito": root / MITO_DIR / f"{stem}.png",
            "membrane": root / MEMBRANE_DIR / f"{stem}.png",
        }
        for key, path in item.items():
            if not path.is_file():
                raise DataNotFoundError(root, f"section {s}: missing {key} file {path}")
        entry = {**{k: str(v) for k, v in item.items()}, "section": s}
        if validate:
            check_section(entry, min_size=min_size)
        datalist.append(entry)
    return datalist


def split_sections(datalist: Sequence[dict], n_train: int = 16, n_val: int = 4) -> tuple[list[dict], list[dict]]:
    """Split a datalist by section: the first ``n_train`` sections train, the next ``n_val`` validate.

    Splitting by section (not by crop) keeps validation sections unseen, as the dataset's challenge
    recommends (80 % / 20 % of the 20 sections of ``stack1``).

    Parameters
    ----------
    datalist
        Items with a ``section`` key, e.g. from :func:`drosophila_datalist`.
    n_train, n_val
        Number of sections in each part; ``n_train + n_val`` must not exceed the number of sections.

    Returns
    -------
    (train, val)
        Two lists of items, each sorted by section, sharing no section.
    """
    if n_train < 0 or n_val < 0:
        raise ValueError(f"n_train and n_val must be non-negative, got {n_train} and {n_val}.")
    items = sorted(datalist, key=lambda d: int(d["section"]))
    sections = [int(d["section"]) for d in items]
    if len(set(sections)) != len(sections):
        raise ValueError("Datalist has several items for one section; split_sections expects one per section.")
    if n_train + n_val > len(items):
        raise ValueError(f"Cannot split {len(items)} sections into {n_train} train + {n_val} validation.")
    return list(items[:n_train]), list(items[n_train : n_train + n_val])


def build_mask(mito: np.ndarray, membrane: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """One-hot mask (mitochondria / membrane / background) from the two binary masks of a section.

    The numpy face of :class:`~emgan_monai.transforms.MaskToOneHot`, which holds the one thresholding and priority
    rule of both.

    Parameters
    ----------
    mito, membrane
        Masks of shape ``(H, W)`` (or any equal shape): bool, or numbers binarised with ``> threshold``.
    threshold
        Binarisation threshold for non-bool masks; ``None`` uses 127 for 0/255 masks and 0.5 for 0/1 masks.

    Returns
    -------
    np.ndarray
        ``(3, H, W)`` float32 one-hot in the order of :data:`MASK_CHANNELS`; mitochondria wins where both are set.
    """
    from monai.utils import convert_to_numpy

    from emgan_monai.transforms.masks import MaskToOneHot

    mi, me = (np.require(m, requirements="W") for m in (mito, membrane))  # torch warns on read-only arrays
    if mi.shape != me.shape:
        raise ValueError(f"mito and membrane masks differ in shape: {mi.shape} vs {me.shape}.")
    # a leading channel axis, which MaskToOneHot strips again: any mask shape comes back as (3, *shape)
    onehot = MaskToOneHot((threshold, threshold))(mi[None], me[None])
    return convert_to_numpy(onehot, dtype=np.float32)


def make_synthetic_stack(folder: str | os.PathLike, n_sections: int = 4, size: int = 64, seed: int = 0) -> Path:
    """Write a small synthetic EM stack with the Drosophila-VNC folder layout.

    Cells are Voronoi regions whose boundaries are the membranes (about 2 px wide); mitochondria are
    ellipses inside cells (about one in four with a lumen hole). The EM image is a smoothed grey
    cytoplasm with dark membranes, darker mitochondria with inner texture, and noise.

    Parameters
    ----------
    folder
        Output folder; ``raw/``, ``mitochondria/`` and ``membranes/`` are created inside.
    n_sections
        Number of sections ``00 .. n_sections-1``.
    size
        Side of the square sections in pixels (at least 16).
    seed
        Seed of the random generator (the stack is reproducible).

    Returns
    -------
    Path
        ``folder``, ready for :func:`drosophila_datalist`.
    """
    import tifffile
    from PIL import Image
    from scipy import ndimage
    from skimage.draw import ellipse
    from skimage.segmentation import find_boundaries

    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}.")
    if n_sections < 1:
        raise ValueError(f"n_sections must be positive, got {n_sections}.")
    folder = Path(folder)
    for sub in (IMAGE_DIR, MITO_DIR, MEMBRANE_DIR):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    width = max(2, len(str(n_sections - 1)))
    for s in range(n_sections):
        n_cells = max(3, (size // 24) ** 2)
        seeds = rng.uniform(0, size, (n_cells, 2))
        dist = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        cells = np.argmin(dist, axis=-1) + 1
        membrane = find_boundaries(cells, mode="thick")
        mito = np.zeros((size, size), bool)
        for _ in range(int(rng.integers(1, max(2, size // 16) + 1))):
            r0, c0 = rng.uniform(size * 0.15, size * 0.85, 2)
            ry, rx = rng.uniform(size / 32 + 1.5, size / 12 + 2.5, 2)
            rr, cc = ellipse(r0, c0, ry, rx, shape=mito.shape, rotation=rng.uniform(0, np.pi))
            blob = np.zeros_like(mito)
            blob[rr, cc] = True
            blob &= cells == cells[int(r0), int(c0)]  # stay inside one cell
            if rng.random() < 0.25 and min(ry, rx) > 5:  # lumen: a hole in the mitochondrion
                blob &= ~ndimage.binary_erosion(blob, iterations=3)
            mito |= blob
        texture = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (size, size)), 2.0)
        em = 0.62 + 0.05 * texture / (texture.std() + 1e-8)
        em = np.where(membrane & ~mito, 0.22, em)
        em = np.where(mito, 0.38 + 0.06 * np.sin(xx * 0.9 + yy * 0.4), em)
        em = ndimage.gaussian_filter(em, 0.8) + rng.normal(0.0, 0.03, em.shape)
        raw = np.clip(em * 255.0, 0, 255).astype(np.uint8)
        name = f"{s:0{width}d}"
        tifffile.imwrite(folder / IMAGE_DIR / f"{name}.tif", raw)
        Image.fromarray((mito * 255).astype(np.uint8)).save(folder / MITO_DIR / f"{name}.png")
        Image.fromarray(membrane).save(folder / MEMBRANE_DIR / f"{name}.png")
    return folder


def load_sections(
    datalist: Sequence[dict], resolution: int, em_max: float = 255.0, mask_transform: Callable | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load sections of the stack layout at ``resolution``: one-hot masks and EM.

    Parameters
    ----------
    mask_transform
        The mask pipeline of the bundle config (e.g. ``train_mask.json``'s ``mask_preprocessing`` as a ``Compose``):
        maps a datalist item to a dict whose ``"label"`` is the ``(3, R, R)`` one-hot mask. Passing the config's
        transforms keeps evaluation and training on identical masks. ``None`` uses the same pipeline built here:
        one-hot at full size, area downsampling of each class channel, argmax back to one-hot (thin membranes
        survive; nearest-neighbour downsampling breaks them).

    Returns
    -------
    masks, em
        ``(N, 3, R, R)`` one-hot masks and ``(N, 1, R, R)`` EM in [0, 1] (area resize).
    """
    from monai.transforms import (
        AsDiscreted,
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        Resized,
        ScaleIntensityRanged,
    )

    from emgan_monai.transforms import MaskToOneHotd

    if mask_transform is None:
        mask_transform = Compose(
            [
                LoadImaged(keys=["mito", "membrane"], image_only=True),
                EnsureChannelFirstd(keys=["mito", "membrane"]),
                MaskToOneHotd(keys=["mito", "membrane"], output_key="label", delete_keys=True),
                Resized(keys="label", spatial_size=[resolution, resolution], mode="area"),
                AsDiscreted(keys="label", argmax=True, to_onehot=3),
                EnsureTyped(keys="label", dtype=torch.float32, track_meta=False),
            ]
        )
    em_tf = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image"),
            ScaleIntensityRanged(keys="image", a_min=0.0, a_max=em_max, b_min=0.0, b_max=1.0, clip=True),
            Resized(keys="image", spatial_size=[resolution, resolution], mode="area"),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        ]
    )
    masks, ems = [], []
    for d in datalist:
        m = torch.as_tensor(mask_transform({k: v for k, v in d.items() if k != "image"})["label"]).float()
        if tuple(m.shape[1:]) != (resolution, resolution):
            raise ValueError(
                f"mask_transform gave masks of shape {tuple(m.shape)}, expected (3, {resolution}, "
                f"{resolution}): set the config's section size to the evaluation resolution"
            )
        masks.append(m)
        ems.append(torch.as_tensor(em_tf({"image": d["image"]})["image"]).float())
    return torch.stack(masks), torch.stack(ems)
