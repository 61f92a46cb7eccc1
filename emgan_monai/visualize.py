"""Turning tensors into images a person can look at: RGB masks, 8-bit EM, central slices of volumes, montages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["central_slices", "onehot_to_rgb", "to_uint8", "montage"]

# mitochondria red, membrane green, background blue (seed paper's convention)
MASK_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def onehot_to_rgb(mask: np.ndarray) -> np.ndarray:
    """Colour a soft or one-hot mask.

    Parameters
    ----------
    mask
        ``(3, H, W)`` channel probabilities (mitochondria, membrane, background).

    Returns
    -------
    np.ndarray
        ``(H, W, 3)`` uint8, each pixel the colour of its arg-max channel.
    """
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) mask, got shape {mask.shape}")
    return MASK_COLOURS[np.argmax(mask, axis=0)]


def to_uint8(image: np.ndarray, lo: float | None = 0.0, hi: float | None = 1.0) -> np.ndarray:
    """Scale ``image`` from ``[lo, hi]`` (min/max of the image when ``None``) to uint8, clipping."""
    image = np.asarray(image, dtype=np.float32)
    lo = float(np.nanmin(image)) if lo is None else lo
    hi = float(np.nanmax(image)) if hi is None else hi
    scaled = (image - lo) / max(hi - lo, 1e-12)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def central_slices(volume: np.ndarray, lo: float, hi: float) -> list[np.ndarray]:
    """Central ``(H, W)`` slice across axis 0 and ``(D, W)`` slice across axis 1 of a ``(D, H, W)`` volume, as uint8
    tiles scaled from ``[lo, hi]`` (:func:`to_uint8`)."""
    c0, c1 = volume.shape[0] // 2, volume.shape[1] // 2
    return [to_uint8(volume[c0], lo, hi), to_uint8(volume[:, c1], lo, hi)]


def montage(tiles: Sequence[np.ndarray], ncols: int, pad: int = 4, fill: int = 255) -> np.ndarray:
    """Arrange equally sized ``(H, W)`` or ``(H, W, 3)`` uint8 tiles in a grid.

    Grey tiles are promoted to RGB so masks and images can share a montage. Returns ``(rows*(H+pad)+pad,
    ncols*(W+pad)+pad, 3)`` uint8.
    """
    if not tiles:
        raise ValueError("montage needs at least one tile")
    rgb = [np.repeat(t[..., None], 3, axis=-1) if t.ndim == 2 else t for t in tiles]
    h, w = rgb[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in rgb):
        raise ValueError("all montage tiles must have the same size")
    nrows = int(np.ceil(len(rgb) / ncols))
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), fill, dtype=np.uint8)
    for i, t in enumerate(rgb):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[y : y + h, x : x + w] = t
    return out
