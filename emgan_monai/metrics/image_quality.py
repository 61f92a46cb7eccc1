"""Full-reference image quality (SSIM / PSNR / MSE / NRMSE) and the Richardson-Lucy deconvolution baseline.

The metrics wrap :mod:`monai.metrics` (``SSIMMetric``, ``PSNRMetric``, ``MSEMetric``) so that offline evaluation
and the ignite handlers used during training compute identical numbers. SSIM follows Wang et al. (2004): an
11-pixel Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over the valid (un-padded) region; this
equals ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)`` with the same ``data_range`` (checked in the tests).

Comparing a restored image with a target in different intensity units needs a normalisation first
(``normalize=``): ``"percentile"`` maps each image's 1st / 99.8th percentiles to 0 / 1 (CARE convention);
``"minmse"`` percentile-normalises the target and fits the prediction to it with the affine map of least squared
error (CSBDeep ``normalize_minmse``, Weigert et al. 2018), which is fair to methods whose output scale is
arbitrary, such as deconvolution.

:func:`clipped_ssim` is the 3D SSIM of stacks of volumes clipped to a fixed range (the cryo-ET evaluation's
voxel-wise score of generated against real subtomograms, window 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal, overload

import numpy as np
import torch
from monai.metrics import MSEMetric, PSNRMetric, SSIMMetric
from skimage.restoration import richardson_lucy

__all__ = ["clipped_ssim", "image_quality", "normalize_pair", "richardson_lucy_baseline", "tune_rl_iterations"]

Normalization = Literal["percentile", "minmse"]


def _as_metric_tensor(value: torch.Tensor | Sequence[Any]) -> torch.Tensor:
    """The tensor a MONAI metric returns for batched tensors (its ``__call__`` is also typed for list input)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected the metric of batched tensors to be a tensor, got {type(value).__name__}")
    return value


def _percentile_normalize(x: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    lo, hi = np.percentile(x, (low, high))
    return (x - lo) / max(float(hi - lo), 1e-12)


def normalize_pair(
    pred: np.ndarray, target: np.ndarray, normalize: Normalization = "minmse"
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a prediction and its target to comparable intensities (see the module docstring).

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``(pred, target)`` as float64 arrays of the input shape.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = _percentile_normalize(np.asarray(target, dtype=np.float64))
    if normalize == "percentile":
        return _percentile_normalize(pred), target
    if normalize == "minmse":
        p_c = pred - pred.mean()
        var = float((p_c**2).mean())
        alpha = float((p_c * (target - target.mean())).mean()) / var if var > 0 else 0.0
        return alpha * p_c + target.mean(), target
    raise ValueError(f"normalize must be 'percentile', 'minmse' or None, got {normalize!r}.")


def image_quality(
    pred: np.ndarray,
    target: np.ndarray,
    data_range: float | None = None,
    normalize: Normalization | None = None,
) -> dict[str, float]:
    """SSIM, PSNR, MSE and NRMSE of a 2D ``(H, W)`` or 3D ``(D, H, W)`` prediction against its target.

    Parameters
    ----------
    pred, target : np.ndarray
        Same shape, 2D or 3D, real.
    data_range : float | None
        Dynamic range used by SSIM (its stabilising constants) and PSNR (the peak). Default: ``target.max() -
        target.min()`` after normalisation. Pass a fixed value (e.g. 1.0 for [0, 1] data, 65535 for uint16) to
        compare scores across images.
    normalize : {"percentile", "minmse"} | None
        Optional intensity normalisation before scoring (see :func:`normalize_pair`).

    Returns
    -------
    dict[str, float]
        ``{"ssim", "psnr" (dB), "mse", "nrmse"}`` with ``nrmse = ||pred - target||_2 / ||target||_2``.
        The SSIM window shrinks to the largest odd size <= the smallest image side when that is below 11.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}.")
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected 2D (H, W) or 3D (D, H, W) arrays, got shape {pred.shape}.")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(target))):
        raise ValueError("pred and target must be finite.")
    if normalize is not None:
        pred, target = normalize_pair(pred, target, normalize)
    if data_range is None:
        data_range = float(target.max() - target.min())
    if not data_range > 0:
        raise ValueError(
            f"data_range must be positive (constant target? pass data_range explicitly), got {data_range}."
        )
    win = min(11, min(pred.shape))
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"images need every side >= 3 pixels for SSIM, got shape {pred.shape}.")
    spatial_dims = pred.ndim
    p = torch.from_numpy(pred)[None, None]
    t = torch.from_numpy(target)[None, None]
    ssim = _as_metric_tensor(SSIMMetric(spatial_dims=spatial_dims, data_range=data_range, win_size=win)(p, t))
    psnr = _as_metric_tensor(PSNRMetric(max_val=data_range)(p, t))
    mse = _as_metric_tensor(MSEMetric()(p, t))
    t_norm = float(np.sqrt((target**2).sum()))
    nrmse = float(np.sqrt(((pred - target) ** 2).sum())) / t_norm if t_norm > 0 else float("inf")
    return {"ssim": float(ssim.item()), "psnr": float(psnr.item()), "mse": float(mse.item()), "nrmse": nrmse}


def _psf_2d(psf: np.ndarray, psf_projection: Literal["slice", "sum"]) -> np.ndarray:
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim == 3:
        if psf_projection == "slice":
            psf = psf[psf.shape[0] // 2]
        elif psf_projection == "sum":
            psf = psf.sum(axis=0)
        else:
            raise ValueError(f"psf_projection must be 'slice' or 'sum', got {psf_projection!r}.")
    if psf.ndim != 2:
        raise ValueError(f"psf must be 2D (Y, X) or 3D (Z, Y, X), got shape {psf.shape}.")
    if np.any(psf < 0) or not psf.sum() > 0:
        raise ValueError("psf must be non-negative with a positive sum.")
    return psf / psf.sum()


def richardson_lucy_baseline(
    widefield_2d: np.ndarray,
    psf: np.ndarray,
    iterations: int = 20,
    background: float | None = None,
    psf_projection: Literal["slice", "sum"] = "sum",
) -> np.ndarray:
    """Richardson-Lucy deconvolution of one wide-field image: the classical (non-learned) baseline.

    Steps: subtract the camera offset + background (``background``, default the image's 1st percentile) and clip
    at 0; reflect-pad by half the PSF so borders do not ring; run
    ``skimage.restoration.richardson_lucy(..., clip=False)`` for ``iterations``; crop and restore the input scale.

    A 2D image cannot be deconvolved with a 3D PSF, so a 2D PSF is derived: ``"sum"`` (default) projects the PSF
    along z, the exact response to a z-invariant object, so that out-of-focus haze is modelled as (heavy-tailed)
    blur and partly reassigned; ``"slice"`` takes the in-focus plane ``psf[Z // 2]``, which leaves the haze in the
    object and, when the pixel undersamples the PSF (0.26 um at NA 1.2), barely sharpens but amplifies noise.
    On a synthetic pair from the cells3d nuclei stack (NA 1.2, 200 photons) the SSIM against the confocal
    target went from 0.47 (raw) to 0.59 with ``"sum"`` (5 iterations) but down to 0.41 with ``"slice"``.

    Parameters
    ----------
    widefield_2d : np.ndarray
        Wide-field image ``(H, W)``, e.g. camera ADU.
    psf : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` PSF at the image's pixel size (normalised internally).
    iterations : int
        Richardson-Lucy iterations (the regulariser: more iterations sharpen more and amplify noise).
    background : float | None
        Level subtracted before deconvolution; default the 1st percentile of the image.
    psf_projection : {"slice", "sum"}
        How a 3D PSF becomes 2D.

    Returns
    -------
    np.ndarray
        ``(H, W)`` float32 estimate in the background-subtracted input units.
    """
    image = np.asarray(widefield_2d, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"widefield_2d must be a 2D image (H, W), got shape {image.shape}.")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    psf2 = _psf_2d(psf, psf_projection)
    bg = float(np.percentile(image, 1.0)) if background is None else float(background)
    image = np.clip(image - bg, 0.0, None)
    scale = float(image.max())
    if scale <= 0:
        return np.zeros(image.shape, dtype=np.float32)
    pad = [(min(s // 2, n - 1), min(s // 2, n - 1)) for s, n in zip(psf2.shape, image.shape)]
    padded = np.pad(image / scale, pad, mode="reflect")
    estimate = richardson_lucy(padded, psf2, num_iter=int(iterations), clip=False)
    estimate = estimate[pad[0][0] : pad[0][0] + image.shape[0], pad[1][0] : pad[1][0] + image.shape[1]]
    return (estimate * scale).astype(np.float32)


@overload
def tune_rl_iterations(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    psf: np.ndarray,
    candidates: Sequence[int] = (5, 10, 20, 40),
    normalize: Normalization = "minmse",
    background: float | None = None,
    psf_projection: Literal["slice", "sum"] = "sum",
    return_scores: Literal[False] = False,
) -> int: ...


@overload
def tune_rl_iterations(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    psf: np.ndarray,
    candidates: Sequence[int] = (5, 10, 20, 40),
    normalize: Normalization = "minmse",
    background: float | None = None,
    psf_projection: Literal["slice", "sum"] = "sum",
    *,
    return_scores: Literal[True],
) -> tuple[int, dict[int, float]]: ...


@overload
def tune_rl_iterations(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    psf: np.ndarray,
    candidates: Sequence[int] = (5, 10, 20, 40),
    normalize: Normalization = "minmse",
    background: float | None = None,
    psf_projection: Literal["slice", "sum"] = "sum",
    return_scores: bool = False,
) -> int | tuple[int, dict[int, float]]: ...


def tune_rl_iterations(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    psf: np.ndarray,
    candidates: Sequence[int] = (5, 10, 20, 40),
    normalize: Normalization = "minmse",
    background: float | None = None,
    psf_projection: Literal["slice", "sum"] = "sum",
    return_scores: bool = False,
) -> int | tuple[int, dict[int, float]]:
    """Pick the Richardson-Lucy iteration count with the best mean SSIM on validation pairs.

    Parameters
    ----------
    pairs : Iterable[tuple[np.ndarray, np.ndarray]]
        ``(widefield_2d, target_2d)`` validation pairs, each ``(H, W)``.
    psf : np.ndarray
        PSF as in :func:`richardson_lucy_baseline`.
    candidates : Sequence[int]
        Iteration counts to try.
    normalize : {"percentile", "minmse"}
        Intensity normalisation before SSIM (deconvolution output has arbitrary scale).
    background, psf_projection
        Passed to :func:`richardson_lucy_baseline`.
    return_scores : bool
        Also return ``{iterations: mean SSIM}``.

    Returns
    -------
    int | tuple[int, dict[int, float]]
        The best count (the smallest one on ties), and optionally all scores.
    """
    pairs = list(pairs)
    candidates = sorted({int(c) for c in candidates})
    if not pairs:
        raise ValueError("tune_rl_iterations needs at least one (widefield, target) pair.")
    if not candidates or candidates[0] < 1:
        raise ValueError(f"candidates must be positive iteration counts, got {candidates}.")
    scores = {}
    for n_iter in candidates:
        ssims = [
            image_quality(
                richardson_lucy_baseline(wf, psf, n_iter, background=background, psf_projection=psf_projection),
                target,
                normalize=normalize,
            )["ssim"]
            for wf, target in pairs
        ]
        scores[n_iter] = float(np.mean(ssims))
    best = max(candidates, key=lambda c: (scores[c], -c))
    return (best, scores) if return_scores else best


def clipped_ssim(a: np.ndarray, b: np.ndarray, clip: float) -> float:
    """Mean 3D SSIM (window 7, data range ``2 * clip``) of two stacks clipped to ``[-clip, clip]``.

    ``a`` and ``b`` are ``(N, D, H, W)`` stacks of volumes (e.g. subtomograms in z units, ``clip = 3``), compared
    volume by volume; sides of at least 7 voxels.
    """
    metric = SSIMMetric(spatial_dims=3, data_range=2 * clip, win_size=7)
    ta = torch.from_numpy(np.clip(a, -clip, clip).astype(np.float32))[:, None]
    tb = torch.from_numpy(np.clip(b, -clip, clip).astype(np.float32))[:, None]
    return float(_as_metric_tensor(metric(ta, tb)).mean())
