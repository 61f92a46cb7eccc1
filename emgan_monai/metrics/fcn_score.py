"""FCN-score: judge generated EM by how well a segmenter trained on real EM segments it.

A small MONAI U-Net (:class:`SegmenterNet`) learns EM -> (mitochondria, membrane, background) on real pairs
(:func:`train_segmenter`). Applied to images generated from masks, its Dice against those masks
(:func:`segmentation_dice`) measures whether the generated structures are where the masks put them; its
pooled bottleneck activations (:func:`segmenter_features`) are an EM-specific feature space for the Frechet
and kernel distances of :mod:`emgan_monai.metrics.distances`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.layers import SkipConnection
from monai.networks.nets import UNet
from monai.transforms import Compose, RandFlipd, RandRotate90d, RandSpatialCropd
from torch import nn

__all__ = ["SegmenterNet", "train_segmenter", "predict_segmenter", "segmentation_dice", "segmenter_features"]


class SegmenterNet(UNet):
    """Small residual U-Net segmenting EM into mitochondria / membrane / background logits.

    ``(B, in_channels, H, W[, D]) -> (B, out_channels, H, W[, D])``; ``H, W[, D]`` must be divisible by
    :attr:`divisor` (``prod(strides)``). Thin defaults over ``monai.networks.nets.UNet``.

    Parameters
    ----------
    spatial_dims
        2 for sections, 3 for volumes.
    in_channels, out_channels
        1 EM channel in, 3 classes out (order of ``emgan_monai.data.drosophila.MASK_CHANNELS``).
    channels, strides, num_res_units, norm, dropout
        Passed to ``UNet``.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64),
        strides: Sequence[int] = (2, 2),
        num_res_units: int = 1,
        norm: str | tuple = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            strides=strides,
            num_res_units=num_res_units,
            norm=norm,
            dropout=dropout,
        )
        self.divisor = int(np.prod(strides))

    @property
    def bottleneck(self) -> nn.Module:
        """The innermost (lowest-resolution) block; its output is ``(B, channels[-1], H/divisor, W/divisor)``."""
        node: nn.Module = self.model
        while isinstance(node, nn.Sequential) and len(node) == 3 and isinstance(node[1], SkipConnection):
            node = node[1].submodule
        return node


def _only_tensor(value: object, what: str) -> torch.Tensor:
    """``value`` if a tensor (MONAI also types tuples and dicts as results, which these calls never give)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{what} returned a {type(value).__name__}, expected a tensor")
    return value


def _as_tensor(x, name: str, channels: int | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(t.shape)}.")
    if channels is not None and t.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(t.shape)}.")
    return t


def train_segmenter(
    images,
    masks,
    steps: int = 500,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    patch_size: int = 64,
    batch_size: int = 4,
    network: nn.Module | None = None,
) -> nn.Module:
    """Train a segmenter on random crops of real EM / mask pairs.

    Parameters
    ----------
    images
        ``(N, 1, H, W)`` EM in ``[0, 1]`` (array or tensor).
    masks
        ``(N, 3, H, W)`` one-hot masks (mitochondria / membrane / background).
    steps
        Optimiser steps (Adam), each on ``batch_size`` random ``patch_size`` crops with random flips and
        90-degree rotations.
    lr
        Adam learning rate.
    seed
        Seeds the initial weights and the crop / augmentation sampler; the global RNG state is left untouched.
    device
        Training device; the trained network stays there, in eval mode.
    patch_size
        Crop side; at most ``min(H, W)`` and divisible by the network's downsampling factor.
    batch_size
        Crops per step.
    network
        Network to train; default a fresh :class:`SegmenterNet` (initialised from ``seed``).

    Returns
    -------
    nn.Module
        The trained network in eval mode.
    """
    x, y = _as_tensor(images, "images", 1), _as_tensor(masks, "masks", 3)
    if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
        raise ValueError(f"images {tuple(x.shape)} and masks {tuple(y.shape)} must match in N, H and W.")
    if patch_size > min(x.shape[2:]):
        raise ValueError(f"patch_size {patch_size} exceeds the image size {tuple(x.shape[2:])}.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SegmenterNet() if network is None else network
    divisor = getattr(net, "divisor", 1)
    if patch_size % divisor:
        raise ValueError(f"patch_size {patch_size} must be divisible by the network's downsampling {divisor}.")
    net = net.to(device).train()
    augment = Compose(
        [
            RandSpatialCropd(keys=("image", "label"), roi_size=(patch_size, patch_size), random_size=False),
            RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=0),
            RandFlipd(keys=("image", "label"), prob=0.5, spatial_axis=1),
            RandRotate90d(keys=("image", "label"), prob=0.5, max_k=3),
        ]
    ).set_random_state(seed=seed)
    rng = np.random.default_rng(seed)
    loss_fn = DiceCELoss(softmax=True)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        crops = [augment({"image": x[i], "label": y[i]}) for i in rng.integers(0, len(x), batch_size)]
        xb = torch.stack([torch.as_tensor(c["image"]) for c in crops]).to(device)
        yb = torch.stack([torch.as_tensor(c["label"]) for c in crops]).to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xb), yb)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def predict_segmenter(segmenter: nn.Module, images, roi_size: int = 128, batch_size: int = 4) -> torch.Tensor:
    """Sliding-window class probabilities of ``images (N, 1, H, W)``: ``(N, 3, H, W)`` float tensor (CPU).

    Windows of ``roi_size`` (images smaller than that are padded) overlap by 25 % and are blended with
    Gaussian weights, so any image size works.
    """
    x = _as_tensor(images, "images", 1)
    device = next(segmenter.parameters()).device
    was_training = segmenter.training
    segmenter.eval()
    inferer = SlidingWindowInferer(roi_size=(roi_size,) * 2, sw_batch_size=batch_size, overlap=0.25, mode="gaussian")
    try:
        out = [
            _only_tensor(inferer(x[i : i + batch_size].to(device), segmenter), "SlidingWindowInferer").softmax(1).cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        segmenter.train(was_training)
    return torch.cat(out)


def segmentation_dice(
    segmenter: nn.Module, images, masks, roi_size: int = 128, batch_size: int = 4
) -> dict[str, float]:
    """Dice of the segmenter's argmax prediction against the masks (the FCN-score of paired generation).

    Parameters
    ----------
    segmenter
        Network ``(B, 1, H, W) -> (B, 3, H, W)`` logits.
    images
        ``(N, 1, H, W)`` EM in ``[0, 1]`` (e.g. generated from ``masks``).
    masks
        ``(N, 3, H, W)`` one-hot masks.
    roi_size, batch_size
        Sliding-window size and batch size of the inference.

    Returns
    -------
    dict
        ``mito`` and ``membrane``: Dice averaged over images (``monai.metrics.DiceMetric``; images whose mask
        lacks a class are skipped for that class, NaN when all lack it); ``mean``: their average.
    """
    y = _as_tensor(masks, "masks", 3)
    probs = predict_segmenter(segmenter, images, roi_size=roi_size, batch_size=batch_size)
    if probs.shape != y.shape:
        raise ValueError(f"images give predictions {tuple(probs.shape)} but masks have shape {tuple(y.shape)}.")
    pred = torch.nn.functional.one_hot(probs.argmax(1), num_classes=3).movedim(-1, 1).float()
    metric = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True)
    metric(y_pred=pred, y=(y > 0.5).float())
    per_class = _only_tensor(metric.aggregate(), "DiceMetric.aggregate").tolist()
    mito, membrane = float(per_class[0]), float(per_class[1])
    return {"mito": mito, "membrane": membrane, "mean": float(np.nanmean([mito, membrane]))}


@torch.no_grad()
def segmenter_features(segmenter: nn.Module, images, batch_size: int = 8, layer: nn.Module | None = None) -> np.ndarray:
    """Global-average-pooled activations of the segmenter's bottleneck (or ``layer``) for each image.

    Parameters
    ----------
    segmenter
        Network; :class:`SegmenterNet` exposes ``bottleneck``, other networks need ``layer``.
    images
        ``(N, 1, H, W)`` EM in ``[0, 1]``; ``H, W`` are reflect-padded to the network's ``divisor``.
    batch_size
        Images per forward pass.
    layer
        Sub-module whose output ``(B, F, h, w)`` is pooled; default ``segmenter.bottleneck``.

    Returns
    -------
    np.ndarray
        ``(N, F)`` float64 features, for :func:`~emgan_monai.metrics.distances.frechet_distance` and
        :func:`~emgan_monai.metrics.distances.kernel_distance`.
    """
    x = _as_tensor(images, "images", 1)
    if layer is None:
        bottleneck = getattr(segmenter, "bottleneck", None)
        if not isinstance(bottleneck, nn.Module):
            raise ValueError("segmenter has no 'bottleneck' attribute: pass the layer to hook.")
        layer = bottleneck
    divisor = getattr(segmenter, "divisor", 1)
    pad_h, pad_w = (-x.shape[2]) % divisor, (-x.shape[3]) % divisor
    if pad_h or pad_w:
        x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    device = next(segmenter.parameters()).device
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.flatten(2).mean(-1).cpu()))
    was_training = segmenter.training
    segmenter.eval()
    try:
        for i in range(0, len(x), batch_size):
            segmenter(x[i : i + batch_size].to(device))
    finally:
        handle.remove()
        segmenter.train(was_training)
    return torch.cat(captured).double().numpy()
