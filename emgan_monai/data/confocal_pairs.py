"""Wide-field / confocal pair files: folders of real pairs, plane-split synthesis from one stack, the demo sample.

:func:`prepare_pairs` returns ``{"train", "val", "test"}`` datalists ``[{"image": wf.tif, "label": confocal.tif}, ...]``
either from a folder of real pairs (``wf/`` + ``confocal/``, split by file, i.e. by field of view; what
``bundles/confocal_enhance/configs/real_pairs.json`` uses) or by synthesising pairs from planes of one 3D confocal
stack with :func:`emgan_monai.data.fluorescence.synthesize_pairs_from_stack` (the first release's recipe: its held-out
planes still receive light from the training planes; the shipped weights use the independent specimens of
:mod:`emgan_monai.data.confocal_training` instead). :func:`image_datalist` lists the TIFF inputs of inference.
:func:`make_sample` renders the bundle's embedded demo pair from :func:`~emgan_monai.data.specimens.procedural_nuclei`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch

from ..io import write_image
from ..physics.optics import confocal_psf, widefield_psf
from ..physics.pair_synthesis import SimulationRanges, synthesize_pair
from .fluorescence import paired_datalist, split_planes, synthesize_pairs_from_stack
from .specimens import procedural_nuclei

__all__ = ["image_datalist", "make_sample", "occupied_planes", "prepare_pairs"]

logger = logging.getLogger(__name__)

TIFF_EXTENSIONS = (".tif", ".tiff")
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------------------------
# data preparation
# ----------------------------------------------------------------------------------------------------------------
def occupied_planes(stack_zyx: np.ndarray, fraction: float = 0.25, dark_percentile: float = 1.0) -> list[int]:
    """Planes of a stack that contain specimen.

    A plane is kept when its 99.8th percentile above the stack's dark level (``dark_percentile`` of all voxels) is at
    least ``fraction`` of the largest such value over the planes. For the cells3d nuclei stack (60 planes) this keeps
    planes 21-59; the first ~20 planes hold only background and would teach the network to enhance noise.

    Parameters
    ----------
    stack_zyx : np.ndarray
        ``(Z, Y, X)`` intensities.
    fraction : float
        Relative threshold in ``[0, 1)``.
    dark_percentile : float
        Percentile of the stack taken as its dark level.

    Returns
    -------
    list[int]
        Sorted plane indices (at least one).
    """
    stack = np.asarray(stack_zyx, dtype=np.float64)
    if stack.ndim != 3:
        raise ValueError(f"expected a 3D (Z, Y, X) stack, got shape {stack.shape}.")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction}.")
    dark = float(np.percentile(stack, dark_percentile))
    signal = np.percentile(stack.reshape(stack.shape[0], -1), 99.8, axis=1) - dark
    if not signal.max() > 0:
        raise ValueError("the stack holds no signal above its dark level.")
    return [int(z) for z in np.nonzero(signal >= fraction * signal.max())[0]]


def _split_heldout(held_out: Sequence[int]) -> tuple[list[int], list[int]]:
    """First half of a held-out block -> ``val``, second half -> ``test`` (both non-empty when possible)."""
    held_out = list(held_out)
    if len(held_out) < 2:
        return held_out, held_out
    half = len(held_out) // 2
    return held_out[:half], held_out[half:]


def _split_files(datalist: list[dict[str, str]], val_fraction: float) -> dict[str, list[dict[str, str]]]:
    """Contiguous split of sorted real pairs into train / val / test (each file is its own field of view)."""
    n = len(datalist)
    if n < 3:
        raise ValueError(f"need at least 3 real pairs to hold out validation and test files, got {n}.")
    n_held = min(n - 1, max(2, int(round(n * val_fraction))))
    val, test = _split_heldout(range(n - n_held, n))
    return {
        "train": datalist[: n - n_held],
        "val": [datalist[i] for i in val],
        "test": [datalist[i] for i in test],
    }


def _synthesize_split(
    stack_path: Path,
    out_dir: Path,
    planes: Sequence[int],
    n_pairs_per_plane: int,
    seed: int,
    ranges: SimulationRanges,
    spacing_zyx_um: Sequence[float],
    psf_model: str,
    psf_shape: Sequence[int] | None,
) -> list[dict[str, str]]:
    request = {
        "stack": str(stack_path.resolve()),
        "stack_mtime": stack_path.stat().st_mtime,
        "planes": [int(p) for p in planes],
        "n_pairs_per_plane": int(n_pairs_per_plane),
        "seed": int(seed),
        "ranges": ranges.to_dict(),
        "spacing_zyx_um": [float(s) for s in spacing_zyx_um],
        "psf_model": psf_model,
        "psf_shape": None if psf_shape is None else [int(s) for s in psf_shape],
    }
    request_file = out_dir / "request.json"
    if request_file.is_file() and (out_dir / "pairs.json").is_file():
        try:
            cached = json.loads(request_file.read_text())
        except ValueError:
            cached = None
        if cached == json.loads(json.dumps(request)):
            logger.info("reusing %d cached pairs in %s", len(planes) * n_pairs_per_plane, out_dir)
            return paired_datalist(out_dir, check_shapes=False)
    for sub in ("wf", "confocal"):  # stale pairs from another request must not leak into this split
        for old in (out_dir / sub).glob("*.tif") if (out_dir / sub).is_dir() else ():
            old.unlink()
    logger.info("synthesising %d pairs from %s into %s", len(planes) * n_pairs_per_plane, stack_path, out_dir)
    datalist = synthesize_pairs_from_stack(
        stack_path,
        out_dir,
        planes=planes,
        n_pairs_per_plane=n_pairs_per_plane,
        seed=seed,
        ranges=ranges,
        psf_model=psf_model,  # type: ignore[arg-type]
        spacing_zyx_um=spacing_zyx_um,
        psf_shape=psf_shape,
    )
    request_file.write_text(json.dumps(request, indent=2))
    return datalist


def prepare_pairs(
    dataset_dir: str | os.PathLike,
    pairs_dir: str | os.PathLike,
    stack_name: str = "nuclei.tif",
    heldout_fraction: float = 0.3,
    gap: int = 2,
    heldout_position: Literal["start", "middle", "end"] = "end",
    n_train_per_plane: int = 4,
    n_eval_per_plane: int = 1,
    seed: int = 0,
    spacing_zyx_um: Sequence[float] = (0.29, 0.26, 0.26),
    ranges: SimulationRanges | Mapping[str, Any] | None = None,
    psf_model: Literal["born_wolf", "gaussian"] = "born_wolf",
    psf_shape: Sequence[int] | None = None,
    occupancy: float = 0.25,
) -> dict[str, list[dict[str, str]]]:
    """Train / val / test datalists of wide-field -> confocal pairs, real or synthesised.

    Parameters
    ----------
    dataset_dir : str | os.PathLike
        Either a folder of real pairs (``wf/`` and ``confocal/`` with matching names; 2D or 3D TIFF, 8/16-bit or
        float), or a folder holding the confocal stack ``stack_name``, or the stack file itself.
    pairs_dir : str | os.PathLike
        Where synthesised pairs go (``train/``, ``val/``, ``test/``, each ``wf/`` + ``confocal/`` + ``pairs.json``
        + ``request.json``). Unused for real pairs.
    stack_name : str
        File name of the stack inside ``dataset_dir``.
    heldout_fraction : float
        Fraction of the occupied planes (or of the real files) held out for val + test.
    gap : int
        Occupied planes left unused between training planes and the held-out block (see
        :func:`~emgan_monai.data.fluorescence.split_planes`).
    heldout_position : {"start", "middle", "end"}
        Where the held-out block lies among the occupied planes. ``"end"`` (the shipped weights' split) holds out the
        top of the cells3d nuclei, which differs from the training planes (nucleus tops, few nuclei in focus);
        ``"middle"`` gives a more representative test set with a gap on both sides.
    n_train_per_plane, n_eval_per_plane : int
        Pairs rendered per plane (each with its own draw of NA, photons, background, read noise).
    seed : int
        Seed of the synthesis; ``val`` and ``test`` use ``seed + 1`` and ``seed + 2``.
    spacing_zyx_um : Sequence[float]
        Voxel size of the stack (cells3d: 0.29, 0.26, 0.26 um).
    ranges : SimulationRanges | Mapping | None
        Acquisition parameter ranges (a mapping is passed to :class:`SimulationRanges`, lists become tuples).
    psf_model : {"born_wolf", "gaussian"}
        PSF model of the synthesis.
    psf_shape : Sequence[int] | None
        PSF grid ``(Z, Y, X)``; default ``(2 D - 1, 127, 127)`` (every plane adds its out-of-focus light).
    occupancy : float
        Threshold of :func:`occupied_planes`.

    Returns
    -------
    dict[str, list[dict[str, str]]]
        ``{"train": [...], "val": [...], "test": [...]}``, items ``{"image": wf path, "label": confocal path}``.

    Notes
    -----
    Under ``torch.distributed`` only rank 0 synthesises; the other ranks wait at a barrier and read the cache.
    """
    root = Path(dataset_dir)
    if root.is_dir() and (root / "wf").is_dir() and (root / "confocal").is_dir():
        return _split_files(paired_datalist(root), heldout_fraction)
    stack_path = root if root.is_file() else root / stack_name
    if not stack_path.is_file():
        raise FileNotFoundError(
            f"{root}: neither a folder of real pairs (wf/ + confocal/) nor a stack {stack_path.name} to synthesise "
            "pairs from; pass --dataset_dir <folder> (see the bundle's docs/README.md)."
        )
    if ranges is None:
        ranges = SimulationRanges()
    elif isinstance(ranges, Mapping):
        ranges = SimulationRanges(**{k: tuple(v) if isinstance(v, list) else v for k, v in ranges.items()})
    try:
        stack = np.squeeze(tifffile.imread(stack_path))
    except (tifffile.TiffFileError, OSError) as err:
        raise ValueError(f"{stack_path}: not a readable TIFF ({err}).") from err
    if stack.ndim != 3:
        raise ValueError(f"{stack_path}: expected a 3D (Z, Y, X) stack, got shape {stack.shape}.")
    occupied = occupied_planes(stack, occupancy)
    train_idx, held_idx = split_planes(
        len(occupied), val_fraction=heldout_fraction, gap=gap, val_position=heldout_position
    )
    val_idx, test_idx = _split_heldout(held_idx)
    planes = {
        "train": [occupied[i] for i in train_idx],
        "val": [occupied[i] for i in val_idx],
        "test": [occupied[i] for i in test_idx],
    }
    out = Path(pairs_dir)
    dist = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if dist else 0
    result: dict[str, list[dict[str, str]]] = {}
    for offset, split in enumerate(SPLITS):
        n_per_plane = n_train_per_plane if split == "train" else n_eval_per_plane
        args = (stack_path, out / split, planes[split], n_per_plane, seed + offset, ranges, spacing_zyx_um,
                psf_model, psf_shape)  # fmt: skip
        if rank == 0:
            result[split] = _synthesize_split(*args)
    if dist:
        torch.distributed.barrier()
        if rank != 0:
            result = {split: paired_datalist(out / split, check_shapes=False) for split in SPLITS}
    logger.info("pairs: %s (planes %s)", {k: len(v) for k, v in result.items()}, planes)
    return result


def image_datalist(input_dir: str | os.PathLike, key: str = "image") -> list[dict[str, str]]:
    """``[{key: path}, ...]`` for the TIFF files of a folder (or a single TIFF file), sorted by name.

    Raises
    ------
    FileNotFoundError
        if ``input_dir`` does not exist.
    ValueError
        if it holds no ``.tif``/``.tiff`` file.
    """
    path = Path(input_dir)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in TIFF_EXTENSIONS)
    else:
        raise FileNotFoundError(f"input {path} does not exist.")
    if not files:
        raise ValueError(f"{path}: no TIFF images (.tif/.tiff) to enhance.")
    return [{key: str(f)} for f in files]


def make_sample(
    out_dir: str | os.PathLike,
    shape_zyx: Sequence[int] = (31, 200, 264),
    photons: float = 300.0,
    na: float = 1.2,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, str]:
    """Render the bundle's embedded demo input: one wide-field plane (uint16) of :func:`procedural_nuclei`.

    Writes ``widefield_sample.tif`` (uint16 ADU, the inference input) and ``reference/confocal_sample.tif``
    (float32, the noise-free confocal image of the same plane, for a visual check), both with 0.26 um pixels.

    Returns
    -------
    dict[str, str]
        ``{"widefield": path, "confocal": path}``.
    """
    out = Path(out_dir)
    spacing = (0.29, 0.26, 0.26)
    volume = procedural_nuclei(shape_zyx, spacing_zyx_um=spacing, seed=seed)
    depth = volume.shape[0]
    psf_shape = (2 * depth - 1, 63, 63)
    wf, conf = synthesize_pair(
        volume,
        depth // 2,
        widefield_psf(psf_shape, spacing, na=na),
        confocal_psf(psf_shape, spacing, na=na),
        photons=photons,
        background=10.0,
        read_noise=2.0,
        offset=100.0,
        rng=seed,
    )
    paths = {"widefield": out / "widefield_sample.tif", "confocal": out / "reference" / "confocal_sample.tif"}
    paths["confocal"].parent.mkdir(parents=True, exist_ok=True)
    wf16 = np.clip(np.rint(wf), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    write_image(paths["widefield"], wf16, voxel_size=spacing[1:], overwrite=overwrite)
    write_image(paths["confocal"], conf.astype(np.float32), voxel_size=spacing[1:], overwrite=overwrite)
    return {k: str(v) for k, v in paths.items()}
