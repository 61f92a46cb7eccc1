"""Wide-field -> confocal enhancement: data preparation, plane-wise inference and previews.

Called by the configs of ``bundles/confocal_enhance`` (``train.json``, ``inference.json``, ``evaluate.json``).

Data
    :func:`prepare_pairs` returns ``{"train", "val", "test"}`` datalists ``[{"image": wf.tif, "label":
    confocal.tif}, ...]`` either from a folder of real pairs (``wf/`` + ``confocal/``, split by file, i.e. by field
    of view) or by physically synthesising pairs from a 3D confocal stack with
    :func:`emgan_monai.data.fluorescence.synthesize_pairs_from_stack`. For a stack, only planes that contain
    specimen (:func:`occupied_planes`) are used; a contiguous block of them is held out by
    :func:`emgan_monai.data.fluorescence.split_planes` (with a gap of unused planes on its training side) and cut in
    two halves: ``val`` (checkpoint selection, Richardson-Lucy tuning) and ``test`` (the reported table). Synthesis is
    cached in ``pairs_dir`` and reused while the request (stack, seed, planes, ranges, ...) is unchanged.

Inference
    :class:`PlanewiseInferer` runs a 2D network over any-size 2D images ``(B, C, H, W)`` with
    :class:`monai.inferers.SlidingWindowInferer` and over 3D stacks ``(B, C, H, W, D)`` plane by plane with
    :class:`monai.inferers.SliceInferer` (overlapping windows, Gaussian blending, reflect padding).
    :class:`PreviewPNGd` writes an ``input | output`` PNG beside the TIFF output.

The training data of the shipped weights (independent specimens, noise drawn on the fly) come from
:mod:`emgan_monai.data.confocal_training`; the evaluation table from :mod:`emgan_monai.evaluation.confocal`.

Sample
    :func:`make_sample` renders the small synthetic wide-field image shipped with the bundle from procedural nuclei
    (no real data), so that ``inference.json`` runs from a fresh clone.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer
from monai.transforms import MapTransform
from scipy import ndimage

from emgan_monai.data.fluorescence import paired_datalist, split_planes, synthesize_pairs_from_stack
from emgan_monai.io import write_image
from emgan_monai.physics.optics import SimulationRanges, synthesize_pair, widefield_psf
from emgan_monai.transforms import PERCENTILE_KEY, InvertPercentile
from emgan_monai.visualize import montage, to_uint8

__all__ = [
    "InvertToInputDtyped",
    "PlanewiseInferer",
    "PreviewPNGd",
    "image_datalist",
    "make_sample",
    "occupied_planes",
    "prepare_pairs",
    "procedural_nuclei",
]

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


# ----------------------------------------------------------------------------------------------------------------
# losses and inference
# ----------------------------------------------------------------------------------------------------------------
class PlanewiseInferer(Inferer):
    """Tiled inference of a 2D network on 2D images or, plane by plane, on 3D stacks.

    Parameters
    ----------
    roi_size : Sequence[int] | int
        2D window ``(H, W)``; each side must be divisible by the network's down-sampling factor.
    sw_batch_size : int
        Windows per network call.
    overlap : float
        Window overlap fraction.
    mode : str
        Blending, ``"gaussian"`` (default) or ``"constant"``.
    padding_mode : str
        Padding of images smaller than the window (``"reflect"`` avoids dark rims).
    spatial_dim : int
        Axis of a 3D input ``(B, C, H, W, D)`` that indexes planes (2: ``D``, the Z axis of a stack read by
        :class:`~emgan_monai.io.TiffReader`).
    kwargs
        Further arguments of :class:`monai.inferers.SlidingWindowInferer`.

    Notes
    -----
    ``(B, C, H, W)`` goes through :class:`~monai.inferers.SlidingWindowInferer`, ``(B, C, H, W, D)`` through
    :class:`~monai.inferers.SliceInferer`; the output has the input's spatial shape.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int = 256,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        padding_mode: str = "reflect",
        spatial_dim: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        roi = (int(roi_size),) * 2 if isinstance(roi_size, int) else tuple(int(r) for r in roi_size)
        if len(roi) != 2:
            raise ValueError(f"roi_size must be 2D (H, W), got {roi_size}.")
        common = {"sw_batch_size": sw_batch_size, "overlap": overlap, "mode": mode, "padding_mode": padding_mode}
        self.inferer_2d = SlidingWindowInferer(roi_size=roi, **common, **kwargs)
        self.inferer_3d = SliceInferer(spatial_dim=spatial_dim, roi_size=roi, **common, **kwargs)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """Predict ``(B, C_out, H, W[, D])`` for ``inputs`` ``(B, C_in, H, W[, D])``."""
        if inputs.ndim == 4:
            return self.inferer_2d(inputs, network, *args, **kwargs)
        if inputs.ndim == 5:
            return self.inferer_3d(inputs, network, *args, **kwargs)
        raise ValueError(f"expected (B, C, H, W) or (B, C, H, W, D) inputs, got shape {tuple(inputs.shape)}.")


class InvertToInputDtyped(MapTransform):
    """Undo the percentile scaling of a prediction and cast it to the dtype of the input *file*.

    :class:`~emgan_monai.transforms.InvertPercentile` restores the dtype that :class:`ScalePercentile` saw, but MONAI's
    ``LoadImage`` widens uint16 to int32 before any transform runs; :class:`~emgan_monai.io.TiffReader` records the
    file's dtype in ``meta["original_dtype"]``, which this transform uses (falling back to the recorded dtype).
    Integer outputs are rounded and clipped to the dtype's range.

    Parameters
    ----------
    keys : KeysCollection
        Predictions to invert, e.g. ``"pred"`` ``(C, H, W[, D])``.
    source_key : str
        The normalised input whose ``meta`` holds ``"percentile_scale"`` and ``"original_dtype"``.
    """

    def __init__(self, keys: KeysCollection, source_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = d.get(self.source_key)
        if not isinstance(source, MetaTensor) or PERCENTILE_KEY not in source.meta:
            raise ValueError(
                f"InvertToInputDtyped: d[{self.source_key!r}] carries no '{PERCENTILE_KEY}' metadata "
                "(normalise it with ScalePercentiled and keep meta tracking on)."
            )
        params = source.meta[PERCENTILE_KEY]
        original = source.meta.get("original_dtype")
        dtype = np.dtype(str(original)) if isinstance(original, str) else None
        inverter = InvertPercentile(dtype=dtype)
        for key in self.key_iterator(d):
            d[key] = inverter(d[key], params=params)
        return d


def _display_plane(img: np.ndarray) -> np.ndarray:
    """(C, X, Y[, Z]) reader layout -> (Y, X) middle plane of channel 0."""
    arr = np.asarray(img, dtype=np.float32)[0]
    if arr.ndim == 3:
        arr = arr[..., arr.shape[-1] // 2]
    return arr.T


def _percentile_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(arr, (1.0, 99.8))
    return to_uint8(arr, float(lo), float(hi) if hi > lo else float(lo) + 1.0)


class PreviewPNGd(MapTransform):
    """Write ``<stem>_preview.png``: the middle plane of each key side by side (``input | output``).

    Each panel is scaled to its own 1st-99.8th percentiles. Expects un-batched items ``(C, X, Y[, Z])`` as produced by
    ``LoadImaged`` + ``EnsureChannelFirstd`` with :class:`~emgan_monai.io.TiffReader`; the file stem comes from
    ``meta["filename_or_obj"]`` of the first key.

    Parameters
    ----------
    keys : KeysCollection
        Images shown left to right, e.g. ``["image", "pred"]``.
    output_dir : str
        Folder of the PNGs (created).
    output_postfix : str
        Appended to the stem.
    overwrite : bool
        Replace existing PNGs; otherwise ``FileExistsError``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str,
        output_postfix: str = "preview",
        overwrite: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.output_postfix = output_postfix
        self.overwrite = overwrite

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = d[keys[0]]
        meta = first.meta if isinstance(first, MetaTensor) else d.get(f"{keys[0]}_meta_dict", {})
        stem = Path(str(meta.get("filename_or_obj", "image"))).name
        for ext in (".tiff", ".tif"):
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
        tiles = []
        for key in keys:
            value = d[key]
            arr = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            tiles.append(_percentile_uint8(_display_plane(arr)))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_image(
            self.output_dir / f"{stem}_{self.output_postfix}.png",
            montage(tiles, ncols=len(tiles)),
            overwrite=self.overwrite,
        )
        return d


# ----------------------------------------------------------------------------------------------------------------
# embedded sample
# ----------------------------------------------------------------------------------------------------------------
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
    from emgan_monai.physics.optics import confocal_psf  # local: only this helper needs it

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
