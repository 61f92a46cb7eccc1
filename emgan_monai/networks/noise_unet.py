"""Stochastic U-Net for mask -> image translation: noise injection at every decoder scale, no transposed convs.

Stage 2 of the two-stage Drosophila TEM GAN. A mask fixes where membranes and mitochondria are, not the granular
cytoplasm, vesicles and cristae around them; a deterministic translator can only paint their average (smooth
cells). Here every decoder block adds per-pixel Gaussian noise scaled by learned per-channel weights
(:class:`~emgan_monai.networks.mask_generator.NoiseInjection`, StyleGAN-style), so two calls on one mask give two
plausible sections. Upsampling is nearest-neighbour (or, with ``antialias``, bilinear after low-passed down-sampling)
followed by a 3x3 convolution (no transposed convolutions and their checkerboard).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch import nn

from .mask_generator import NoiseInjection

__all__ = ["NoiseUNet"]


class _NoisyConvBlock(nn.Module):
    """``(conv3 -> [noise] -> norm -> LeakyReLU(0.2)) x 2``: ``(B, c_in, *S)`` -> ``(B, c_out, *S)``."""

    def __init__(
        self, spatial_dims: int, c_in: int, c_out: int, norm: tuple | str | None, noise: bool, noise_init: float = 0.0
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(Convolution(spatial_dims, c_in if i == 0 else c_out, c_out, kernel_size=3, conv_only=True))
            if noise:
                layers.append(NoiseInjection(c_out, spatial_dims, init=noise_init))
            if norm is not None:
                layers.append(get_norm_layer(norm, spatial_dims=spatial_dims, channels=c_out))
            layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class NoiseUNet(nn.Module):
    r"""U-Net ``(B, in_channels, *S) -> (B, out_channels, *S)`` with noise injection in its decoder.

    With widths ``c_0 .. c_{L}`` (``channels``): an input block ``in -> c_0``; ``L`` down levels (stride-2 3x3
    convolution ``c_{i-1} -> c_i``, then a block); ``L`` up levels (nearest x2, 3x3 convolution
    ``c_{i+1} -> c_i``, concatenation with the skip ``s_i``, then a block ``2 c_i -> c_i`` with noise injection);
    a 1x1 convolution to ``out_channels`` and ``out_act``. Blocks are ``(conv3 -> [noise] -> norm ->
    LeakyReLU) x 2``. The bottleneck block is noisy too.

    With ``antialias=True`` the resampling follows Zhang (2019, "Making convolutional networks shift-invariant
    again") and Karras et al. (2020, StyleGAN2): a fixed binomial low-pass ``[1, 2, 1] / 4`` per axis (replicate
    padding) before every stride-2 convolution, and linear (bilinear / trilinear) instead of nearest upsampling. A plain
    stride-2 convolution aliases fine texture onto the coarse grid and nearest upsampling repeats it in 2x2 blocks;
    together they can lock a pattern to the pixel grid (as in the grid hatch of the 0.9.0 Drosophila EM). The option adds no
    parameters, so the weights of a network trained without it load unchanged (to be fine-tuned).

    With ``border_pad=p`` the input is mirrored outwards by ``p`` px on every side (reflection; more where needed to
    keep the padded size a multiple of ``size_multiple``) and the output cropped back: the pixels near the image's
    edge are then drawn as interior pixels, with context. A generator trained on crops learns whatever its losses let
    pass within a few pixels of its own edge (a Hann-windowed spectrum term does not look there; the 0.12.0 Drosophila
    generator put part of its requested draw-to-draw difference into the outer 8 px); the pad keeps that out of the
    output. No parameters; costs ``((S + 2p) / S) ** d`` of the compute.

    Noise comes from ``torch.randn`` (the global generator): seed it (``torch.manual_seed`` inside
    ``torch.random.fork_rng``) for reproducible samples; every call draws new noise, also in ``eval()`` mode.

    Parameters
    ----------
    spatial_dims
        2 or 3.
    in_channels
        Input channels (3 for a one-hot mitochondria / membrane / background mask).
    out_channels
        Output channels (1 for EM).
    channels
        Widths ``c_0 .. c_L``; ``L = len(channels) - 1`` down-sampling levels, so spatial sizes must be multiples of
        ``2 ** L`` (``size_multiple``).
    norm
        MONAI norm name / tuple (per-sample norms such as instance or group norm keep training and inference
        alike); ``None`` for none.
    noise
        Inject noise in the decoder and bottleneck blocks (``False``: a deterministic U-Net of the same shape).
    noise_init
        Initial per-channel noise scale. Not 0: a loss on texture statistics (power at each scale) has zero
        gradient with respect to a noise scale of exactly 0 (power grows with its square).
    out_act
        ``"sigmoid"`` (output in ``(0, 1)``), ``"tanh"`` or ``None``.
    antialias
        Binomial low-pass before each stride-2 convolution and linear upsampling (above); ``False`` = plain stride-2
        convolutions and nearest upsampling (the networks of versions up to 0.11.0).
    border_pad
        Reflection pad (px per side, >= 0) around the input, cropped from the output (above); 0 = none. Inputs
        smaller than ``border_pad + 1`` px are padded by their size - 1 (as far as a reflection reaches).

    Examples
    --------
    >>> net = NoiseUNet(channels=(8, 16, 16))
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 96, 128),
        norm: tuple | str | None = ("INSTANCE", {"affine": True}),
        noise: bool = True,
        noise_init: float = 0.1,
        out_act: str | None = "sigmoid",
        antialias: bool = False,
        border_pad: int = 0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"NoiseUNet: spatial_dims must be 2 or 3, got {spatial_dims}.")
        channels = [int(c) for c in channels]
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"NoiseUNet: channels needs at least two positive widths, got {channels}.")
        if out_act is not None and out_act.lower() not in ("sigmoid", "tanh"):
            raise ValueError(f"NoiseUNet: out_act must be 'sigmoid', 'tanh' or None, got {out_act!r}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.levels = len(channels) - 1
        self.size_multiple = 2**self.levels
        self.antialias = bool(antialias)
        if int(border_pad) < 0:
            raise ValueError(f"NoiseUNet: border_pad must be >= 0, got {border_pad}.")
        self.border_pad = int(border_pad)
        self.mode = ("bilinear" if spatial_dims == 2 else "trilinear") if self.antialias else "nearest"
        self.align_corners: bool | None = False if self.antialias else None
        taps = torch.tensor([0.25, 0.5, 0.25])
        kernel = (
            taps[:, None] * taps[None, :] if spatial_dims == 2 else taps[:, None, None] * taps[None, :, None] * taps
        )
        # (1, 1, 3, 3[, 3]); a plain attribute, not in the weights, brought to the input's device and dtype per call
        self.blur_kernel = kernel[None, None]

        self.inc = _NoisyConvBlock(spatial_dims, in_channels, channels[0], norm, noise=False)
        self.down = nn.ModuleList()
        for i in range(1, len(channels)):
            is_bottom = i == len(channels) - 1
            self.down.append(nn.Sequential(
                Convolution(spatial_dims, channels[i - 1], channels[i], strides=2, kernel_size=3, conv_only=True),
                _NoisyConvBlock(spatial_dims, channels[i], channels[i], norm, noise=noise and is_bottom,
                                noise_init=noise_init),
            ))  # fmt: skip
        self.up_conv = nn.ModuleList()
        self.up_block = nn.ModuleList()
        for i in range(len(channels) - 2, -1, -1):
            self.up_conv.append(Convolution(spatial_dims, channels[i + 1], channels[i], kernel_size=3, conv_only=True))
            self.up_block.append(
                _NoisyConvBlock(spatial_dims, 2 * channels[i], channels[i], norm, noise=noise, noise_init=noise_init)
            )
        self.head = Convolution(spatial_dims, channels[0], out_channels, kernel_size=1, conv_only=True)
        self.out_act = get_act_layer(out_act) if out_act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``(B, in_channels, *S)`` into ``(B, out_channels, *S)``.

        Raises
        ------
        ValueError
            If the rank or channel count is wrong or a spatial size is not a multiple of ``size_multiple``.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"NoiseUNet: expected (B, {self.in_channels}) and {self.spatial_dims} spatial sizes, "
                f"got {list(x.shape)}."
            )
        for s in x.shape[2:]:
            if s % self.size_multiple != 0:
                raise ValueError(
                    f"NoiseUNet: spatial size {list(x.shape[2:])} must be a multiple of {self.size_multiple} "
                    f"(2 ** {self.levels} levels)."
                )
        if self.border_pad:
            return self._padded(x)
        return self._forward(x)

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """Reflection-pad ``x`` by ``border_pad`` (to a multiple of ``size_multiple``), translate, crop back."""
        sizes = x.shape[2:]
        pad = min(self.border_pad, min(sizes) - 1)  # a reflection reaches at most size - 1 px
        pads: list[int] = []
        for d in range(len(sizes) - 1, -1, -1):  # F.pad takes the last dimension first
            extra = (-(sizes[d] + 2 * pad)) % self.size_multiple
            pads += [pad + extra // 2, pad + extra - extra // 2]
        y = self._forward(nn.functional.pad(x, pads, mode="reflect"))
        for d in range(len(sizes)):
            y = y.narrow(2 + d, pads[2 * (len(sizes) - 1 - d)], sizes[d])
        return y

    def _blur(self, h: torch.Tensor) -> torch.Tensor:
        """Binomial ``[1, 2, 1] / 4`` low-pass per axis, channel by channel, replicate padding: same shape."""
        c = h.shape[1]
        k = self.blur_kernel.to(h)
        if self.spatial_dims == 2:
            return nn.functional.conv2d(
                nn.functional.pad(h, [1, 1, 1, 1], mode="replicate"), k.expand(c, 1, 3, 3), groups=c
            )
        h = nn.functional.pad(h, [1, 1, 1, 1, 1, 1], mode="replicate")
        return nn.functional.conv3d(h, k.expand(c, 1, 3, 3, 3), groups=c)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inc(x)
        skips = [h]
        for down in self.down:
            h = down(self._blur(h) if self.antialias else h)
            skips.append(h)
        skips.pop()  # the bottleneck output is h itself
        for conv, block in zip(self.up_conv, self.up_block):
            h = conv(nn.functional.interpolate(h, scale_factor=2.0, mode=self.mode, align_corners=self.align_corners))
            h = block(torch.cat([skips.pop(), h], dim=1))
        return self.out_act(self.head(h))
