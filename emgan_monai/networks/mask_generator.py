"""Stage-1 generator of the two-stage Drosophila TEM GAN: latent noise -> 3-class soft segmentation mask."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["NoiseToMaskGenerator"]


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
