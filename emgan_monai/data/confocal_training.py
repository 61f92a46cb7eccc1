"""Training and held-out data for wide-field -> confocal restoration, synthesised from independent specimens.

Design (why it is built this way)
---------------------------------
* **Independent specimens.** A wide-field image collects out-of-focus light from the whole volume, so planes of
  one stack are not independent: held-out planes would light the training inputs. Every split here is rendered
  from its *own* volume: the real stack is cut laterally into a training block, a validation block and a test
  block *before* imaging (each imaged as a separate specimen, so no test fluorophore contributes light to any
  training input), and procedural specimens (:mod:`emgan_monai.data.specimens`) are drawn with split-specific
  seeds.
* **Several kinds of structure.** Training mixes the real stack (its specimen named after the file, e.g. ``nuclei``
  for ``nuclei.tif``) with procedural filaments, membranes and puncta
  (by default); one kind (``heldout_kind``, default vesicles) is never used in training and forms the
  *leave-one-structure-out* set.
* **Noise drawn on the fly.** Training items hold the *noise-free* wide-field signal and confocal target of a plane
  for a few NA draws; :class:`~emgan_monai.transforms.RandCameraNoised` draws photons, background, shot and read
  noise anew for every sample. Validation / test pairs are fixed (seeded) TIFF files with ``pairs.json`` records,
  the ``wf/`` + ``confocal/`` layout of :func:`emgan_monai.data.fluorescence.paired_datalist`, so that the
  evaluation (:mod:`emgan_monai.evaluation.confocal`) knows each pair's true PSF for Richardson-Lucy.

Layout written to ``cache_dir``: ``train_<hash>.npz`` (noise-free planes) and ``<split>/<specimen>/{wf,confocal}/``
``*.tif`` + ``pairs.json`` for ``val``, ``test`` and ``loso``; everything is reused while the request is unchanged.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import tifffile

from ..physics.pair_synthesis import SimulationRanges, camera_noise
from .fluorescence import paired_datalist
from .specimens import SPECIMEN_KINDS, make_specimen

__all__ = ["STACK_BLOCKS", "load_stack_volume", "prepare_confocal_data", "render_clean_planes", "stack_blocks"]

logger = logging.getLogger(__name__)

#: lateral blocks ``(y0, y1, x0, x1)`` of the real stack as fractions of its size: train / val / test
STACK_BLOCKS: dict[str, tuple[float, float, float, float]] = {
    "train": (0.0, 1.0, 0.0, 0.5625),
    "val": (0.0, 0.40625, 0.59375, 1.0),
    "test": (0.4375, 1.0, 0.59375, 1.0),
}


def load_stack_volume(path: str | os.PathLike, dark_percentile: float = 1.0) -> np.ndarray:
    """A 3D TIFF stack as a fluorophore density: dark level subtracted, negatives clipped, peak 1; ``(Z, Y, X)``."""
    try:
        stack = np.squeeze(tifffile.imread(path))
    except (tifffile.TiffFileError, OSError) as err:
        raise ValueError(f"{path}: not a readable TIFF ({err}).") from err
    if stack.ndim != 3 or not np.issubdtype(stack.dtype, np.number):
        raise ValueError(f"{path}: expected a real-valued 3D (Z, Y, X) stack, got shape {stack.shape}, {stack.dtype}.")
    vol = stack.astype(np.float32)
    vol = np.clip(vol - np.percentile(vol, dark_percentile), 0.0, None)
    peak = float(np.percentile(vol, 99.99))
    if not peak > 0:
        raise ValueError(f"{path}: the stack is empty after subtracting its dark level.")
    return vol / peak


def stack_blocks(volume: np.ndarray, gap_px: int = 0) -> dict[str, np.ndarray]:
    """Cut a stack ``(Z, Y, X)`` laterally into the train / val / test specimens of :data:`STACK_BLOCKS`."""
    _, height, width = volume.shape
    blocks = {}
    for name, (y0, y1, x0, x1) in STACK_BLOCKS.items():
        ys, ye = int(round(y0 * height)), int(round(y1 * height))
        xs, xe = int(round(x0 * width)), int(round(x1 * width))
        blocks[name] = np.ascontiguousarray(volume[:, ys:ye, xs:xe])
    return blocks


def render_clean_planes(
    volume: np.ndarray,
    na: float,
    ranges: SimulationRanges,
    spacing_zyx_um: Sequence[float],
    planes: Sequence[int] | None = None,
    max_lateral: int = 127,
    confocal_extent: int = 31,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Noise-free wide-field signal and confocal target of the chosen planes of one specimen at one NA.

    The wide-field PSF spans ``2 Z - 1`` planes (every plane of the specimen lights every other) and ``max_lateral``
    pixels; the specimen is padded by reflection laterally and by zeros axially (nothing above or below it), and
    the whole volume is convolved at once by FFT.

    Parameters
    ----------
    volume : np.ndarray
        Fluorophore density ``(Z, Y, X)``.
    na : float
        Numerical aperture.
    ranges : SimulationRanges
        Wavelengths, immersion index and pinhole.
    spacing_zyx_um : Sequence[float]
        Voxel size.
    planes : Sequence[int] | None
        Planes to return (default all).
    max_lateral, confocal_extent : int
        Lateral size of the wide-field PSF grid; cubic size of the confocal PSF grid.

    Returns
    -------
    tuple[np.ndarray, np.ndarray, tuple[int, int, int]]
        ``signal (P, Y, X)``, ``target (P, Y, X)`` (float32, non-negative) and the wide-field PSF grid.
    """
    depth, height, width = volume.shape
    lateral = min(max_lateral, 2 * max(height, width) - 1)
    lateral += 1 - lateral % 2
    psf_shape = (2 * depth - 1, lateral, lateral)
    planes = list(range(depth)) if planes is None else [int(p) for p in planes]
    conf_shape = (min(confocal_extent, psf_shape[0]), min(confocal_extent, lateral), min(confocal_extent, lateral))
    psf_wf, psf_conf = ranges.psfs(na, psf_shape, spacing_zyx_um, conf_shape)
    out = []
    for psf in (psf_wf, psf_conf):
        pad = psf.shape[1] // 2
        padded = np.pad(volume.astype(np.float32), ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
        conv = scipy.signal.fftconvolve(padded, psf.astype(np.float32), mode="same")
        out.append(np.clip(conv[planes, pad : pad + height, pad : pad + width], 0.0, None).astype(np.float32))
    return out[0], out[1], psf_shape


def _request_hash(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]


def _occupied(volume: np.ndarray, fraction: float) -> list[int]:
    signal = np.percentile(volume.reshape(volume.shape[0], -1), 99.8, axis=1)
    return [int(z) for z in np.nonzero(signal >= fraction * signal.max())[0]]


def _write_eval_pairs(
    out_dir: Path,
    volume: np.ndarray,
    specimen: str,
    planes: Sequence[int],
    seed: int,
    ranges: SimulationRanges,
    spacing_zyx_um: Sequence[float],
    max_lateral: int = 127,
    n_na: int = 3,
) -> list[dict[str, str]]:
    """Seeded noisy pairs of ``planes`` as TIFFs + ``pairs.json``; returns the datalist.

    ``n_na`` NA values are drawn per specimen (one volume rendering each) and assigned to the planes in turn;
    photons, background and read noise are drawn per pair.
    """
    for sub in ("wf", "confocal"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    records, psf_shape = [], None
    rng_na = np.random.default_rng([seed, 0])
    na_values = [float(rng_na.uniform(*ranges.na)) for _ in range(max(1, min(n_na, len(planes))))]
    for a, na in enumerate(na_values):
        chosen = list(planes)[a :: len(na_values)]
        signal, target, psf_shape = render_clean_planes(volume, na, ranges, spacing_zyx_um, chosen, max_lateral)
        for p_i, plane in enumerate(chosen):
            pair_seed = [seed, 1, int(plane)]
            rng = np.random.default_rng(pair_seed)
            params = {**ranges.sample(rng), "na": na}
            wf = camera_noise(signal[p_i], params["photons"], params["background"], params["read_noise"],
                              params["offset"], rng)  # fmt: skip
            t = target[p_i] * (params["photons"] / max(float(target[p_i].max()), 1e-12))
            name = f"{specimen}_z{plane:03d}.tif"
            tifffile.imwrite(out_dir / "wf" / name, wf)
            tifffile.imwrite(out_dir / "confocal" / name, t.astype(np.float32))
            records.append({"image": f"wf/{name}", "label": f"confocal/{name}", "plane": int(plane),
                            "specimen": specimen, "seed": pair_seed, **params})  # fmt: skip
    meta = {
        "specimen": specimen,
        "volume_shape": list(volume.shape),
        "spacing_zyx_um": [float(s) for s in spacing_zyx_um],
        "psf_model": "born_wolf",
        "psf_shape": list(psf_shape) if psf_shape is not None else None,
        "ranges": ranges.to_dict(),
        "pairs": records,
    }
    (out_dir / "pairs.json").write_text(json.dumps(meta, indent=2))
    return paired_datalist(out_dir, check_shapes=False)


def _even(planes: Sequence[int], n: int) -> list[int]:
    planes = list(planes)
    if len(planes) <= n:
        return planes
    return [planes[i] for i in np.linspace(0, len(planes) - 1, n).round().astype(int)]


def prepare_confocal_data(
    dataset_dir: str | os.PathLike,
    cache_dir: str | os.PathLike,
    stack_name: str = "nuclei.tif",
    train_kinds: Sequence[str] = ("filaments", "membranes", "puncta"),
    heldout_kind: str = "vesicles",
    procedural_shape: Sequence[int] = (40, 192, 192),
    n_procedural_train: int = 2,
    n_na_train: int = 3,
    n_eval_planes: int = 12,
    stack_repeats: int = 3,
    seed: int = 0,
    spacing_zyx_um: Sequence[float] = (0.29, 0.26, 0.26),
    ranges: SimulationRanges | Mapping[str, Any] | None = None,
    occupancy: float = 0.25,
    psf_max_lateral: int = 127,
) -> dict[str, list[dict[str, Any]]]:
    """Noise-free training planes and fixed held-out pairs from a real stack plus procedural specimens.

    Parameters
    ----------
    dataset_dir : str | os.PathLike
        Folder holding ``stack_name`` (or the stack itself); ``None``-like empty string = procedural only.
    cache_dir : str | os.PathLike
        Where the rendered data are cached (see the module docstring).
    stack_name : str
        The real confocal stack, ``(Z, Y, X)``.
    train_kinds : Sequence[str]
        Procedural kinds in training (and validation).
    heldout_kind : str
        Procedural kind never trained on: the leave-one-structure-out set ``loso``.
    procedural_shape : Sequence[int]
        Grid of every procedural specimen.
    n_procedural_train : int
        Training specimens per procedural kind.
    n_na_train : int
        NA draws per training specimen (each renders all its planes).
    n_eval_planes : int
        Pairs per held-out specimen (evenly spaced occupied planes, one NA / noise draw each).
    stack_repeats : int
        How often each real-stack training plane appears in the training list (weights real data up).
    seed : int
        Base seed of specimens, NA draws and held-out noise.
    spacing_zyx_um : Sequence[float]
        Voxel size of the stack and of the procedural specimens.
    ranges : SimulationRanges | Mapping | None
        Acquisition ranges (NA, photons, background, read noise; wavelengths).
    occupancy : float
        Planes whose 99.8th percentile is below this fraction of the specimen's brightest plane are skipped.
    psf_max_lateral : int
        Lateral size of the wide-field PSF grid (pixels; light spread farther is dropped).

    Returns
    -------
    dict[str, list[dict[str, Any]]]
        ``"train"``: ``[{"signal": (1, Y, X), "label": (1, Y, X), "specimen": str, "na": float}, ...]`` (arrays,
        noise-free); ``"val"``, ``"test"``, ``"loso"``: ``[{"image": wf tif, "label": confocal tif}, ...]``.
        ``test`` is the real stack's test block; ``val`` mixes its validation block with one specimen per training
        kind; ``loso`` holds two specimens of ``heldout_kind``.
    """
    if ranges is None:
        ranges = SimulationRanges()
    elif isinstance(ranges, Mapping):
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in ranges.items()}
        ranges = SimulationRanges(**fields)
    for kind in (*train_kinds, heldout_kind):
        if kind not in SPECIMEN_KINDS:
            raise ValueError(f"unknown specimen kind {kind!r}; choose from {sorted(SPECIMEN_KINDS)}.")
    if heldout_kind in train_kinds:
        raise ValueError(f"heldout_kind {heldout_kind!r} must not be among train_kinds {list(train_kinds)}.")
    root = Path(dataset_dir)
    stack_path = root if root.is_file() else root / stack_name
    if not stack_path.is_file():
        raise FileNotFoundError(
            f"{stack_path}: no confocal stack to synthesise pairs from; pass --dataset_dir <folder with {stack_name}>."
        )
    cache = Path(cache_dir)
    request = {
        "stack": str(stack_path.resolve()),
        "stack_mtime": stack_path.stat().st_mtime,
        "train_kinds": list(train_kinds),
        "heldout_kind": heldout_kind,
        "procedural_shape": [int(s) for s in procedural_shape],
        "n_procedural_train": n_procedural_train,
        "n_na_train": n_na_train,
        "n_eval_planes": n_eval_planes,
        "seed": seed,
        "spacing": [float(s) for s in spacing_zyx_um],
        "ranges": ranges.to_dict(),
        "occupancy": occupancy,
        "psf_max_lateral": psf_max_lateral,
        "version": 1,
    }
    key = _request_hash(request)
    train_file = cache / f"train_{key}.npz"
    eval_root = cache / f"eval_{key}"
    # specimens are built only when something has to be rendered (a cached request reads the cache alone)
    blocks = functools.cache(lambda: stack_blocks(load_stack_volume(stack_path)))
    # the real stack's specimen is named after its file (nuclei.tif -> "nuclei"), never after a procedural kind
    stack_specimen = stack_path.stem
    if stack_specimen in (*train_kinds, heldout_kind):
        stack_specimen += "_stack"
    specimens: dict[str, list[tuple[str, Callable[[], np.ndarray]]]] = {
        "train": [(stack_specimen, lambda: blocks()["train"])], "val": [], "loso": []}  # fmt: skip
    for k_i, kind in enumerate(train_kinds):
        for j in range(n_procedural_train):
            specimens["train"].append((f"{kind}{j}", partial(make_specimen, kind, procedural_shape, spacing_zyx_um,
                                                             rng=[seed, 0, k_i, j])))  # fmt: skip
        specimens["val"].append(
            (kind, partial(make_specimen, kind, procedural_shape, spacing_zyx_um, rng=[seed, 1, k_i]))
        )
    for j in range(2):
        specimens["loso"].append((f"{heldout_kind}{j}", partial(make_specimen, heldout_kind, procedural_shape,
                                                                spacing_zyx_um, rng=[seed, 2, j])))  # fmt: skip

    if not train_file.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        signals, labels, names, nas = [], [], [], []
        for s_i, (name, build) in enumerate(specimens["train"]):
            vol = build()
            planes = _occupied(vol, occupancy)
            for n_i in range(n_na_train):
                na = float(np.random.default_rng([seed, 3, s_i, n_i]).uniform(*ranges.na))
                sig, tgt, _ = render_clean_planes(vol, na, ranges, spacing_zyx_um, planes, psf_max_lateral)
                logger.info("rendered %s at NA %.3f: %d planes", name, na, len(planes))
                for p in range(len(planes)):
                    signals.append(sig[p])
                    labels.append(tgt[p])
                    names.append(name)
                    nas.append(na)
        shapes = sorted({s.shape for s in signals})
        np.savez(train_file.with_suffix(".tmp.npz"), names=np.array(names), nas=np.array(nas),
                 **{f"signal_{i}": s for i, s in enumerate(signals)},
                 **{f"label_{i}": t for i, t in enumerate(labels)})  # fmt: skip
        os.replace(train_file.with_suffix(".tmp.npz"), train_file)
        logger.info("cached %d noise-free training planes (%s) in %s", len(signals), shapes, train_file)
    with np.load(train_file) as z:
        names, nas = list(z["names"]), list(z["nas"])
        train = []
        for i, (name, na) in enumerate(zip(names, nas)):
            item = {"signal": z[f"signal_{i}"][None], "label": z[f"label_{i}"][None], "specimen": str(name),
                    "na": float(na)}  # fmt: skip
            train.extend([item] * (stack_repeats if name == stack_specimen else 1))

    result: dict[str, list[dict[str, Any]]] = {"train": train}
    eval_sets = {
        "val": [(stack_specimen, lambda: blocks()["val"])] + specimens["val"],
        "test": [(stack_specimen, lambda: blocks()["test"])],
        "loso": specimens["loso"],
    }
    for split_i, (split, items) in enumerate(eval_sets.items()):
        result[split] = []
        for s_i, (name, build) in enumerate(items):
            out = eval_root / split / name
            if (out / "pairs.json").is_file():
                result[split] += paired_datalist(out, check_shapes=False)
                continue
            vol = build()
            planes = _even(_occupied(vol, occupancy), n_eval_planes)
            result[split] += _write_eval_pairs(out, vol, name, planes, seed * 1000 + 100 * split_i + s_i, ranges,
                                               spacing_zyx_um, psf_max_lateral)  # fmt: skip
    logger.info("confocal data: %s", {k: len(v) for k, v in result.items()})
    return result
