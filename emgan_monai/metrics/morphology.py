"""Morphology statistics of mitochondria / membrane masks, to compare generated masks with real ones.

Masks follow :data:`emgan_monai.data.drosophila.MASK_CHANNELS`: channel (or label) 0 mitochondria,
1 membrane, 2 background. Foreground objects are 8-connected (``connectivity=2``), holes 4-connected,
as in ``skimage.measure.regionprops``' Euler number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wasserstein_distance
from skimage.measure import label, regionprops
from skimage.morphology import skeletonize

__all__ = ["SCALAR_STATS", "mask_labels", "mask_morphology", "summarise_morphology", "compare_morphology"]

MITO, MEMBRANE, BACKGROUND = 0, 1, 2

#: per-mask scalar statistics returned by :func:`mask_morphology`
SCALAR_STATS = (
    "n_mitochondria",
    "mito_fraction",
    "mean_mito_area",
    "hole_fraction",
    "membrane_fraction",
    "membrane_components",
    "membrane_largest_fraction",
    "membrane_skeleton_length",
)


def mask_labels(mask) -> np.ndarray:
    """Label image ``(H, W)`` (0 mito / 1 membrane / 2 background) from a ``(3, H, W)`` mask or labels.

    ``(3, H, W)`` masks (one-hot, probabilities or generator outputs) are reduced by argmax over channels;
    ``(H, W)`` integer label images are returned as they are (after a range check).
    """
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3:
        if mask.shape[0] != 3:
            raise ValueError(f"Channel-first mask must have 3 channels (mito, membrane, background), got {mask.shape}.")
        return np.argmax(mask, axis=0)
    if mask.ndim == 2:
        if not np.issubdtype(mask.dtype, np.integer) or mask.min() < 0 or mask.max() > 2:
            raise ValueError("A 2D mask must be an integer label image with values 0 (mito), 1 (membrane), 2.")
        return mask
    raise ValueError(f"Mask must have shape (3, H, W) or (H, W), got {mask.shape}.")


def mask_morphology(mask, min_area: int = 1) -> dict:
    """Morphology statistics of one mask.

    Parameters
    ----------
    mask
        ``(3, H, W)`` one-hot (or soft, argmax is taken) mask, or ``(H, W)`` label image 0/1/2.
    min_area
        Mitochondria (8-connected components) smaller than this many pixels are ignored (specks).

    Returns
    -------
    dict
        ``n_mitochondria`` (int), ``mito_areas`` (list of int, pixels), ``mito_fraction``, ``mean_mito_area``
        (0 when none), ``hole_fraction`` (fraction of mitochondria with at least one hole, Euler number < 1;
        0 when none), ``membrane_fraction`` (membrane pixels / all pixels), ``membrane_components``
        (8-connected components of the skeletonised membrane), ``membrane_largest_fraction`` (fraction of
        membrane pixels in the largest 8-connected membrane component; 0 without membrane) and
        ``membrane_skeleton_length`` (skeleton pixels).
    """
    labels = mask_labels(mask)
    mito = labels == MITO
    membrane = labels == MEMBRANE
    regions = [r for r in regionprops(label(mito, connectivity=2)) if r.area >= min_area]
    areas = [int(r.area) for r in regions]
    holes = [r.euler_number < 1 for r in regions]

    skeleton = skeletonize(membrane)
    n_skeleton_components = int(label(skeleton, connectivity=2).max())
    membrane_cc = label(membrane, connectivity=2)
    n_membrane = int(membrane.sum())
    largest = int(np.bincount(membrane_cc.ravel())[1:].max()) if n_membrane else 0
    return {
        "n_mitochondria": len(regions),
        "mito_areas": areas,
        "mito_fraction": float(mito.mean()),
        "mean_mito_area": float(np.mean(areas)) if areas else 0.0,
        "hole_fraction": float(np.mean(holes)) if holes else 0.0,
        "membrane_fraction": float(n_membrane / membrane.size),
        "membrane_components": n_skeleton_components,
        "membrane_largest_fraction": float(largest / n_membrane) if n_membrane else 0.0,
        "membrane_skeleton_length": int(skeleton.sum()),
    }


def summarise_morphology(stats: Sequence[dict], area_bins: int | Sequence[float] = 20) -> dict:
    """Pool per-mask statistics from :func:`mask_morphology` over a set of masks.

    Parameters
    ----------
    stats
        Dictionaries from :func:`mask_morphology`.
    area_bins
        Bins of the pooled mitochondrion-area histogram (``np.histogram``'s ``bins``).

    Returns
    -------
    dict
        ``n_masks``; for each name in :data:`SCALAR_STATS` a dict ``{"mean", "std"}`` over masks; ``areas``
        (pooled areas, int array); ``area_hist`` ``{"counts", "edges"}`` of the pooled areas.
    """
    if not stats:
        raise ValueError("summarise_morphology needs at least one statistics dictionary.")
    out: dict = {"n_masks": len(stats)}
    for name in SCALAR_STATS:
        values = np.array([s[name] for s in stats], dtype=np.float64)
        out[name] = {"mean": float(values.mean()), "std": float(values.std())}
    areas = np.concatenate([np.asarray(s["mito_areas"], dtype=np.int64) for s in stats])
    counts, edges = np.histogram(areas, bins=area_bins)
    out["areas"] = areas
    out["area_hist"] = {"counts": counts, "edges": edges}
    return out


def compare_morphology(real: Sequence[dict], fake: Sequence[dict], area_bins: int = 20) -> dict:
    """Compare morphology of real and generated masks.

    Parameters
    ----------
    real, fake
        Per-mask dictionaries from :func:`mask_morphology` for real and for generated masks.
    area_bins
        Number of bins of the shared area histogram (edges span both sets).

    Returns
    -------
    dict
        For each name in :data:`SCALAR_STATS`: ``{"real": mean, "fake": mean, "real_std", "fake_std",
        "wasserstein"}`` (1D Wasserstein distance between the per-mask values); ``mito_area``:
        ``{"real_mean", "fake_mean", "wasserstein"}`` between the pooled area distributions (NaN if a side has
        no mitochondria); ``area_hist``: ``{"edges", "real", "fake"}`` with shared edges.
    """
    if not real or not fake:
        raise ValueError("compare_morphology needs at least one real and one fake statistics dictionary.")
    out: dict = {}
    for name in SCALAR_STATS:
        r = np.array([s[name] for s in real], dtype=np.float64)
        f = np.array([s[name] for s in fake], dtype=np.float64)
        out[name] = {
            "real": float(r.mean()),
            "fake": float(f.mean()),
            "real_std": float(r.std()),
            "fake_std": float(f.std()),
            "wasserstein": float(wasserstein_distance(r, f)),
        }
    areas_r = np.concatenate([np.asarray(s["mito_areas"], dtype=np.float64) for s in real])
    areas_f = np.concatenate([np.asarray(s["mito_areas"], dtype=np.float64) for s in fake])
    both = areas_r.size and areas_f.size
    out["mito_area"] = {
        "real_mean": float(areas_r.mean()) if areas_r.size else float("nan"),
        "fake_mean": float(areas_f.mean()) if areas_f.size else float("nan"),
        "wasserstein": float(wasserstein_distance(areas_r, areas_f)) if both else float("nan"),
    }
    pooled = np.concatenate([areas_r, areas_f])
    edges = np.histogram_bin_edges(pooled if pooled.size else np.zeros(1), bins=area_bins)
    out["area_hist"] = {
        "edges": edges,
        "real": np.histogram(areas_r, bins=edges)[0],
        "fake": np.histogram(areas_f, bins=edges)[0],
    }
    return out
