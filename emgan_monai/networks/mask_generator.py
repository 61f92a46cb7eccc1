"""Stage-1 generator of the two-stage Drosophila TEM GAN: latent noise -> 3-class soft segmentation mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from monai.networks.blocks import Convolution
from torch import nn

#: the padding modes of torch's convolutions
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]

__all__ = [
    "LatentGridMaskGenerator",
    "NoiseInjection",
    "NoiseToMaskGenerator",
    "PixelNorm",
    "recalibrate_batchnorm",
    "straight_through_onehot",
]


class NoiseToMaskGenerator(nn.Module):
    r"""DCGAN-style decoder from a spatial noise tensor to a softmax mask (e.g. mitochondria/membrane/background).

    Every layer is a transposed convolution with kernel 4, stride 2 and padding 1 (exact doubling of the
    size). With the defaults: ``C256NA -> C256NA -> C128NA -> C64NA -> C32NA -> C3`` followed by a softmax over
    channels (``N`` = instance norm, ``A`` = ReLU; the last layer has neither).

    ``(B, 8, 8, 8)`` noise gives a ``(B, 3, 512, 512)`` mask; in general the output size is
    ``latent_size * 2 ** (len(channels) + 1)`` per spatial axis. Because of the instance norm the latent must
    have at least 2 elements per sample and channel (e.g. a 2x2 latent for tests; 8x8 in the paper).

    Parameters
    ----------
    spatial_dims
        2 for ``(B, C, H, W)`` noise/masks, 3 for ``(B, C, H, W, D)``.
    latent_channels
        Channels of the noise tensor.
    out_channels
        Number of mask classes.
    channels
        Output channels of the hidden transposed convolutions.
    norm
        MONAI norm name/tuple of the hidden layers (``None`` to disable).
    act
        MONAI activation of the hidden layers.

    Examples
    --------
    >>> g = NoiseToMaskGenerator(channels=(16, 8))
    >>> g(torch.randn(2, 8, 4, 4)).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        latent_channels: int = 8,
        out_channels: int = 3,
        channels: Sequence[int] = (256, 256, 128, 64, 32),
        norm: tuple | str | None = "INSTANCE",
        act: tuple | str | None = "RELU",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"NoiseToMaskGenerator: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if len(channels) == 0 or any(c < 1 for c in channels):
            raise ValueError(
                f"NoiseToMaskGenerator: channels must be a non-empty sequence of positive ints, got {channels}."
            )
        if out_channels < 2:
            raise ValueError(f"NoiseToMaskGenerator: a softmax mask needs out_channels >= 2, got {out_channels}.")
        self.spatial_dims = spatial_dims
        self.latent_channels = latent_channels
        self.upsampling_factor = 2 ** (len(channels) + 1)

        layers: list[nn.Module] = []
        c_in = latent_channels
        widths = list(channels) + [out_channels]
        for i, c_out in enumerate(widths):
            last = i == len(widths) - 1
            layers.append(
                Convolution(
                    spatial_dims,
                    c_in,
                    c_out,
                    strides=2,
                    kernel_size=4,
                    padding=1,
                    output_padding=0,
                    is_transposed=True,
                    adn_ordering="NA",
                    norm=norm,
                    act=act,
                    conv_only=last,
                )
            )
            c_in = c_out
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Map noise ``(B, latent_channels, h, w[, d])`` to a mask ``(B, out_channels, h*f, w*f[, d*f])``.

        ``f = 2 ** (len(channels) + 1)``; the mask is in ``(0, 1)`` and sums to 1 over channels.
        """
        if z.ndim != self.spatial_dims + 2 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"NoiseToMaskGenerator: expected noise of shape (B, {self.latent_channels}, "
                f"{', '.join(['s'] * self.spatial_dims)}), got {tuple(z.shape)}."
            )
        return torch.softmax(self.model(z), dim=1)


class NoiseInjection(nn.Module):
    """Add per-pixel Gaussian noise ``(B, 1, *spatial)`` times a learned per-channel scale (StyleGAN-style).

    The scale starts at ``init`` (0 by default: the block starts as if there were no noise). Noise comes from
    ``torch.randn`` (the global generator), so seed it (``torch.manual_seed`` inside ``torch.random.fork_rng``)
    for reproducible samples.
    """

    def __init__(self, channels: int, spatial_dims: int = 2, init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, channels, *([1] * spatial_dims)), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = list(x.shape)
        shape[1] = 1  # (B, 1, *spatial): one noise map shared by the channels (a list, so that TorchScript compiles it)
        noise = torch.randn(shape, device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit root-mean-square over channels (no batch/spatial statistics)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


def _norm_layer(norm: str | None, channels: int, spatial_dims: int) -> nn.Module:
    if norm is None or norm == "none":
        return nn.Identity()
    if norm == "pixel":
        return PixelNorm()
    if norm == "batch":
        return (nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(channels)
    raise ValueError(f"norm must be 'batch', 'pixel' or None, got {norm!r}.")


class _GridBlock(nn.Module):
    """``[upsample x2] -> (conv3 -> noise -> norm -> LeakyReLU) x 2``."""

    def __init__(
        self,
        spatial_dims: int,
        c_in: int,
        c_out: int,
        upsample: bool,
        norm: str | None = "batch",
        padding_mode: PaddingMode = "circular",
        noise: bool = True,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        layers: list[nn.Module] = []
        for i in range(2):
            conv = Convolution(spatial_dims, c_in if i == 0 else c_out, c_out, kernel_size=3, padding=1, conv_only=True)
            layer = conv.conv
            if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                raise TypeError(f"expected MONAI's Convolution to wrap a torch convolution, got {type(layer).__name__}")
            layer.padding_mode = padding_mode  # torch pads by this mode in forward (its padding sizes are set)
            layers += [
                conv,
                NoiseInjection(c_out, spatial_dims) if noise else nn.Identity(),
                _norm_layer(norm, c_out, spatial_dims),
                nn.LeakyReLU(0.2),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = nn.functional.interpolate(x, scale_factor=2.0, mode=self.mode, align_corners=False)
        return self.body(x)


class LatentGridMaskGenerator(nn.Module):
    r"""Noise -> mask generator from a spatial latent grid, with noise injection at every scale.

    Unlike :class:`NoiseToMaskGenerator` (a stack of stride-2 transposed convolutions, which collapses into an exact
    tiling when the generator ignores its latent), every latent pixel here is an independent code for one
    ``f x f`` cell (``f = 2 ** (len(channels) - 1)``), neighbouring codes are mixed by 3x3 convolutions at every
    scale, and per-pixel noise is injected after every convolution, so two cells of one sample, and two samples,
    differ even when the latent codes are similar. Upsampling is bilinear (no transposed-convolution checkerboard).
    Normalisation is batch norm by default: it keeps every feature channel spatially varied (with per-pixel
    normalisation, :class:`PixelNorm`, the Drosophila generator drifted to spatially constant logits whose arg-max
    flipped between whole classes); in ``eval()`` mode it uses running statistics, so the network is fully
    convolutional and a larger latent grid gives a larger mask with the same statistics.

    Layout (``c = channels``): ``z (B, latent_channels, h, w) -> block(c[0]) at h x w -> [upsample x2 ->
    block(c[i])] for i >= 1 -> 1x1 conv -> softmax | tanh``; each block is two (3x3 conv, noise, norm, LeakyReLU 0.2).

    Parameters
    ----------
    spatial_dims
        2 (``(B, C, H, W)``) or 3.
    latent_channels
        Channels of the latent grid.
    out_channels
        Mask classes (``output="softmax"``) or signed-distance maps (``output="tanh"``).
    channels
        Widths from the coarsest to the finest scale; the output is ``2 ** (len(channels) - 1)`` times the latent
        grid per axis.
    output
        ``"softmax"`` (default): class probabilities summing to 1; ``"tanh"``: one map in (-1, 1) per channel, e.g.
        the signed-distance maps of :class:`~emgan_monai.transforms.OneHotToDistanceMap` (mitochondria, membrane),
        decoded to classes by :class:`~emgan_monai.transforms.DistanceMapToOneHot`. Thin membranes are smooth
        ridges in that representation, which the generator can draw and the discriminator compare without the
        value-saturation cue of one-hot reals against soft fakes.
    noise_blocks
        Inject noise in the first (coarsest) this many blocks only; ``None`` (default): in every block. Per-pixel
        noise at the finest scales lets a mask generator meet value statistics with speckle instead of lines
        (seen on the Drosophila distance maps); noise up to a 4-px grid still makes every sample and cell differ.
    norm
        ``"batch"`` (default), ``"pixel"`` or ``None``.
    padding_mode
        Padding of the 3x3 convolutions: ``"circular"`` (default) leaves the generator no cue of where the image
        border is (with zero padding the Drosophila generator put its membranes and mitochondria along the top and
        left borders, where the discriminator's stride-2 padding is asymmetric, and speckle elsewhere); ``"zeros"``,
        ``"reflect"`` or ``"replicate"`` are the other torch modes.

    Examples
    --------
    >>> g = LatentGridMaskGenerator(latent_channels=8, channels=(16, 8, 8))
    >>> g(torch.randn(2, 8, 4, 4)).shape
    torch.Size([2, 3, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        latent_channels: int = 16,
        out_channels: int = 3,
        channels: Sequence[int] = (128, 96, 64, 32, 16),
        norm: str | None = "batch",
        padding_mode: PaddingMode = "circular",
        output: str = "softmax",
        noise_blocks: int | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"LatentGridMaskGenerator: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if len(channels) == 0 or any(int(c) < 1 for c in channels):
            raise ValueError(f"LatentGridMaskGenerator: channels must be positive ints, got {channels}.")
        if output not in ("softmax", "tanh"):
            raise ValueError(f"LatentGridMaskGenerator: output must be 'softmax' or 'tanh', got {output!r}.")
        if out_channels < (2 if output == "softmax" else 1):
            raise ValueError(f"LatentGridMaskGenerator: a softmax mask needs out_channels >= 2, got {out_channels}.")
        self.output = output
        self.spatial_dims = spatial_dims
        self.latent_channels = int(latent_channels)
        self.upsampling_factor = 2 ** (len(channels) - 1)
        blocks = []
        c_in = self.latent_channels
        n_noise = len(channels) if noise_blocks is None else int(noise_blocks)
        for i, c in enumerate(channels):
            blocks.append(
                _GridBlock(
                    spatial_dims, c_in, int(c), upsample=i > 0, norm=norm, padding_mode=padding_mode, noise=i < n_noise
                )
            )
            c_in = int(c)
        self.blocks = nn.Sequential(*blocks)
        self.head = Convolution(spatial_dims, c_in, out_channels, kernel_size=1, padding=0, conv_only=True)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, out_channels, h*f, w*f[, d*f])`` of the latent grid ``z``."""
        if z.ndim != self.spatial_dims + 2 or z.shape[1] != self.latent_channels:
            raise ValueError(
                f"LatentGridMaskGenerator: expected noise of shape (B, {self.latent_channels}, "
                f"{self.spatial_dims} spatial sizes), got {list(z.shape)}."
            )
        return self.head(self.blocks(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Soft mask ``(B, out_channels, h*f, w*f[, d*f])`` in (0, 1), summing to 1 over channels (``"softmax"``), or
        maps in (-1, 1) (``"tanh"``)."""
        logits = self.logits(z)
        return torch.softmax(logits, dim=1) if self.output == "softmax" else torch.tanh(logits)


def straight_through_onehot(soft: torch.Tensor) -> torch.Tensor:
    """Hard one-hot arg-max of ``soft`` ``(B, C, ...)`` in the forward pass, the gradient of ``soft`` backwards.

    The discriminator then sees exact one-hot values for fakes, as for real masks (no win on value saturation),
    while the generator still receives gradients (straight-through estimator, Bengio et al. 2013).
    """
    hard = nn.functional.one_hot(soft.argmax(1), soft.shape[1]).movedim(-1, 1).to(soft.dtype)
    return hard + soft - soft.detach()


@torch.no_grad()
def recalibrate_batchnorm(
    net: nn.Module, latent_shape: Sequence[int], batches: int = 32, batch_size: int = 8, seed: int = 0
) -> nn.Module:
    """Recompute the running statistics of every batch-norm layer of a noise -> image generator.

    The running statistics that an EMA of the weights carries (an average of the raw generator's statistics, which
    belonged to other weights) do not match the averaged weights; as ``torch.optim.swa_utils.update_bn`` does for
    SWA, this resets them and averages the batch statistics of ``batches`` forward passes on ``N(0, 1)`` latents of
    shape ``(batch_size, *latent_shape)`` (cumulative average, ``momentum=None``). The global random state (injected
    noise) is restored afterwards. Returns ``net`` in ``eval()`` mode.
    """
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return net.eval()
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    net.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for _ in range(int(batches)):
            net(torch.randn((batch_size, *latent_shape), generator=gen).to(device))
    for m in norms:
        m.momentum = momenta[m]
    return net.eval()
