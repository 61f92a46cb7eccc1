"""Turning tensors into images a person can look at: RGB masks, 8-bit EM, central slices of volumes, montages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["central_slices", "onehot_to_rgb", "to_uint8", "make_grid", "montage"]

# mitochondria red, membrane green, background blue (seed paper's convention; the transforms' DEFAULT_COLORS)
MASK_COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def onehot_to_rgb(mask: np.ndarray) -> np.ndarray:
    """Colour a soft or one-hot mask channel-last (what :class:`~emgan_monai.transforms.OneHotToRGB` gives channel-first;
    this module sits below the transforms and imports none of them).

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
    return np.ascontiguousarray(MASK_COLOURS[np.argmax(mask, axis=0)])


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


def make_grid(
    rows: Sequence[Sequence[np.ndarray]],
    padding: int = 2,
    pad_value: float = 1.0,
    ncols: int | None = None,
    dtype: np.typing.DTypeLike = np.float32,
) -> np.ndarray:
    """Assemble rows of ``(3, H, W)`` (or ``(1, H, W)``, repeated) tiles into one ``(3, H_total, W_total)`` image.

    Each tile sits at the top left of a cell of the largest tile's size (ragged rows and smaller tiles are padded with
    ``pad_value``); cells are ``padding`` apart and from the border. ``ncols`` (default: the longest row) sets the
    width in cells. The grid has ``dtype`` (tiles are cast to it).
    """
    if not rows or not any(rows):
        raise ValueError("no tiles to assemble.")
    tiles = [t for row in rows for t in row]
    tile_h = max(t.shape[1] for t in tiles)
    tile_w = max(t.shape[2] for t in tiles)
    ncols = max(len(row) for row in rows) if ncols is None else ncols
    h = len(rows) * (tile_h + padding) + padding
    w = ncols * (tile_w + padding) + padding
    grid = np.full((3, h, w), pad_value, dtype=dtype)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            y, x = padding + r * (tile_h + padding), padding + c * (tile_w + padding)
            grid[:, y : y + tile.shape[1], x : x + tile.shape[2]] = tile
    return grid


def montage(tiles: Sequence[np.ndarray], ncols: int, pad: int = 4, fill: int = 255) -> np.ndarray:
    """Arrange equally sized ``(H, W)`` or ``(H, W, 3)`` uint8 tiles in a grid (:func:`make_grid`, channel-last).

    Grey tiles are promoted to RGB so masks and images can share a montage. Returns ``(rows*(H+pad)+pad,
    ncols*(W+pad)+pad, 3)`` uint8.
    """
    if not tiles:
        raise ValueError("montage needs at least one tile")
    rgb = [np.repeat(t[..., None], 3, axis=-1) if t.ndim == 2 else t for t in tiles]
    h, w = rgb[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in rgb):
        raise ValueError("all montage tiles must have the same size")
    chw = [np.moveaxis(t, -1, 0) for t in rgb]
    rows = [chw[i : i + ncols] for i in range(0, len(chw), ncols)]
    grid = make_grid(rows, padding=pad, pad_value=fill, ncols=ncols, dtype=np.uint8)
    return np.ascontiguousarray(np.moveaxis(grid, 0, -1))
