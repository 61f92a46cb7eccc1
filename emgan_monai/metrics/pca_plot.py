"""PCA scatter of real vs generated masks (the paper's Fig. 1B), with numpy SVD and matplotlib's Agg backend."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["mask_vectors", "pca_project", "pca_scatter"]


def mask_vectors(masks, size: int = 64) -> np.ndarray:
    """Downsample masks to ``size x size`` (area averaging) and flatten them.

    Parameters
    ----------
    masks
        ``(N, C, H, W)`` or ``(N, H, W)`` array / tensor, or a sequence of ``(C, H, W)`` / ``(H, W)`` arrays of
        one shape.
    size
        Side of the downsampled masks.

    Returns
    -------
    np.ndarray
        ``(N, C * size * size)`` float64.
    """
    if isinstance(masks, (list, tuple)):
        masks = np.stack([np.asarray(m.detach().cpu() if hasattr(m, "detach") else m) for m in masks])
    x = torch.as_tensor(np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks), dtype=torch.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"Masks must have shape (N, C, H, W) or (N, H, W) with N > 0, got {tuple(x.shape)}.")
    x = F.interpolate(x, size=(size, size), mode="area")
    return x.flatten(1).double().numpy()


def pca_project(data: np.ndarray, fit: np.ndarray | None = None, n_components: int = 2) -> np.ndarray:
    """Project ``data (N, D)`` on the first principal axes of ``fit (M, D)`` (default: ``data``) via SVD.

    Returns
    -------
    np.ndarray
        ``(N, n_components)`` coordinates (centred on the mean of ``fit``). Signs follow a fixed convention
        (largest loading of each axis positive) so plots are reproducible.
    """
    fit = data if fit is None else fit
    mean = fit.mean(axis=0)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    axes = vt[:n_components]
    if axes.shape[0] < n_components:  # fewer samples than components: pad with zero axes
        axes = np.vstack([axes, np.zeros((n_components - axes.shape[0], axes.shape[1]))])
    signs = np.sign(axes[np.arange(n_components), np.argmax(np.abs(axes), axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    return (data - mean) @ axes.T


def pca_scatter(
    real_masks,
    fake_masks,
    path: str | os.PathLike,
    title: str = "Real vs generated masks",
    size: int = 64,
    fit_on: str = "all",
    labels: Sequence[str] = ("real", "generated"),
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter plot of real and generated masks on their first two principal components; saved as PNG.

    Parameters
    ----------
    real_masks, fake_masks
        ``(N, C, H, W)`` / ``(N, H, W)`` masks or sequences of ``(C, H, W)`` / ``(H, W)`` masks (same ``C``).
    path
        Output PNG path (parent folders are created).
    title
        Figure title.
    size
        Masks are area-downsampled to ``size x size`` before PCA.
    fit_on
        ``"all"``: principal axes of real and generated masks together; ``"real"``: of the real masks only.
    labels
        Legend names of the two sets.

    Returns
    -------
    (real_xy, fake_xy)
        ``(N_real, 2)`` and ``(N_fake, 2)`` coordinates as plotted.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if fit_on not in ("all", "real"):
        raise ValueError(f"fit_on must be 'all' or 'real', got {fit_on!r}.")
    real, fake = mask_vectors(real_masks, size), mask_vectors(fake_masks, size)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Real and generated masks differ in channels: {real.shape[1]} vs {fake.shape[1]} values.")
    both = np.concatenate([real, fake])
    coords = pca_project(both, fit=both if fit_on == "all" else real)
    real_xy, fake_xy = coords[: len(real)], coords[len(real) :]

    fig = Figure(figsize=(5, 5), dpi=100)  # Agg canvas, no pyplot: no global backend or figure state
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(real_xy[:, 0], real_xy[:, 1], s=18, alpha=0.8, label=f"{labels[0]} (n={len(real)})")
    ax.scatter(fake_xy[:, 0], fake_xy[:, 1], s=18, alpha=0.8, marker="^", label=f"{labels[1]} (n={len(fake)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return real_xy, fake_xy
