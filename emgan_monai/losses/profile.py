"""Grey-value profile across a mask boundary: how an image darkens and brightens with the distance to a membrane.

A mask -> EM generator can meet a patch discriminator and texture statistics with a membrane drawn as a dark line
and a bright rim a few pixels inside the cell (ringing: a "double" membrane), which no real section has: in the held-out
Drosophila ssTEM sections the mean grey value rises from the membrane to the cytoplasm level within 2 px and stays
flat. The rim is too thin and too faint for a low-passed pixel loss, and the grey-value histogram hides where the
values lie. With paired data the mask of the fake and of the real image is the same, so the mean grey value in each
band of distance from the membrane can be compared image by image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BoundaryProfileLoss", "distance_bands"]


def distance_bands(mask: torch.Tensor, channel: int, max_distance: int) -> torch.Tensor:
    """Bands of (chessboard) distance from the pixels of ``mask[:, channel]``: ``(B, max_distance + 1, H, W)`` of 0/1,
    band 0 the channel itself, band ``k`` the pixels ``k`` steps of a 3 x 3 dilation away.

    ``mask``: ``(B, C, H, W)`` one-hot (or any map where ``> 0.5`` marks the class).
    """
    if mask.ndim != 4 or not 0 <= int(channel) < mask.shape[1]:
        raise ValueError(
            f"distance_bands expects (B, C, H, W) and a channel below C, got {tuple(mask.shape)}, {channel}."
        )
    reached = (mask[:, int(channel) : int(channel) + 1] > 0.5).float()
    bands = [reached]
    for _ in range(int(max_distance)):
        grown = F.max_pool2d(reached, kernel_size=3, stride=1, padding=1)
        bands.append(grown - reached)
        reached = grown
    return torch.cat(bands, dim=1)


class BoundaryProfileLoss(nn.Module):
    """L1 between the mean grey values of prediction and target in bands of distance from a mask class.

    Parameters
    ----------
    channel
        The mask channel the distances are measured from (1: membranes of a mitochondria / membrane / background
        mask).
    max_distance
        Bands ``0 .. max_distance`` px (chessboard distance); beyond, the profile of real sections is flat.
    ignore_channels
        Mask channels whose pixels are left out of every band (0: mitochondria, which have their own grey level).

    Shapes: ``forward(pred, target, mask)`` with ``pred``, ``target`` ``(B, 1, H, W)`` (or ``(B, C, H, W)``, each
    channel profiled) and the one-hot ``mask`` ``(B, C_mask, H, W)`` of both -> scalar: the mean over images,
    channels and non-empty bands of ``|mean(pred in band) - mean(target in band)|``.
    """

    def __init__(self, channel: int = 1, max_distance: int = 8, ignore_channels: Sequence[int] = (0,)) -> None:
        super().__init__()
        if int(max_distance) < 0:
            raise ValueError(f"BoundaryProfileLoss: max_distance must be >= 0, got {max_distance}.")
        self.channel, self.max_distance = int(channel), int(max_distance)
        self.ignore_channels = [int(c) for c in ignore_channels]

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 4 or mask.ndim != 4 or mask.shape[0] != pred.shape[0]:
            raise ValueError(
                "BoundaryProfileLoss expects pred and target (B, C, H, W) of one shape and a mask (B, C_mask, H, W), "
                f"got {tuple(pred.shape)}, {tuple(target.shape)} and {tuple(mask.shape)}."
            )
        if mask.shape[2:] != pred.shape[2:]:
            raise ValueError(
                f"BoundaryProfileLoss: mask {tuple(mask.shape)} and images {tuple(pred.shape)} differ in size."
            )
        with torch.no_grad():
            bands = distance_bands(mask, self.channel, self.max_distance)
            if self.ignore_channels:
                bands = bands * (mask[:, self.ignore_channels] <= 0.5).all(dim=1, keepdim=True).float()
            count = bands.sum(dim=(-2, -1))  # (B, K)
        weights = (bands / count.clamp(min=1.0)[..., None, None]).unsqueeze(1)  # (B, 1, K, H, W)

        def band_means(x: torch.Tensor) -> torch.Tensor:
            return (x.float().unsqueeze(2) * weights).sum(dim=(-2, -1))  # (B, C, K)

        gap = (band_means(pred) - band_means(target)).abs()
        present = (count > 0).unsqueeze(1).expand_as(gap)
        return gap[present].mean() if bool(present.any()) else pred.sum() * 0.0
