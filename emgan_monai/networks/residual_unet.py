"""Residual U-Net generator for image-to-image restoration (e.g. wide-field -> confocal).

The body is :class:`monai.networks.nets.UNet` with ``num_res_units`` residual units per level (Kerfoot et al.,
"Left-ventricle quantification using residual U-Net", STACOM 2018), i.e. the residual U-Net used as generator in
wide-field-to-confocal GANs. An optional *global* residual connection adds the input to the body's output, so
the network learns the correction (deblurring, haze removal) rather than re-synthesising the whole image; this is
the usual choice for restoration (CARE, RCAN) and speeds up early training. The output is unbounded (no final
activation) because the data are percentile normalised rather than scaled to a fixed range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.nets import UNet

__all__ = ["ResidualUNetGenerator"]


class ResidualUNetGenerator(nn.Module):
    """Residual U-Net generator with an optional global residual connection.

    Parameters
    ----------
    spatial_dims : int
        2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, H, W, D)``.
    in_channels, out_channels : int
        Channels of input and output; ``global_residual`` needs them equal.
    channels : Sequence[int]
        Feature channels per level (encoder), e.g. ``(32, 64, 128, 256)``.
    strides : Sequence[int]
        Down-sampling stride between consecutive levels, ``len(channels) - 1`` entries.
    num_res_units : int
        Residual units per convolution block (0 gives a plain U-Net).
    norm : str | tuple
        Normalisation (MONAI name), e.g. ``"INSTANCE"`` or ``("GROUP", {"num_groups": 8})``.
    act : str | tuple
        Activation (MONAI name).
    kernel_size, up_kernel_size : int
        Convolution kernel sizes in the encoder/decoder and in the up-sampling (transposed) convolutions.
    dropout : float
        Dropout probability inside the blocks.
    global_residual : bool
        If true, ``output = input + body(input)``.

    Notes
    -----
    Every spatial size of the input must be divisible by ``prod(strides)``; a clear ``ValueError`` is raised
    otherwise (pad or crop, e.g. with ``monai.transforms.DivisiblePad``).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256),
        strides: Sequence[int] = (2, 2, 2),
        num_res_units: int = 2,
        norm: str | tuple = "INSTANCE",
        act: str | tuple = "PRELU",
        kernel_size: int = 3,
        up_kernel_size: int = 3,
        dropout: float = 0.0,
        global_residual: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {tuple(channels)}.")
        if len(strides) != len(channels) - 1:
            raise ValueError(
                f"strides needs len(channels) - 1 = {len(channels) - 1} entries, got {len(strides)} ({tuple(strides)})."
            )
        if any(int(s) < 1 for s in strides):
            raise ValueError(f"strides must be positive integers, got {tuple(strides)}.")
        if global_residual and in_channels != out_channels:
            raise ValueError(
                f"global_residual needs in_channels == out_channels, got {in_channels} and {out_channels}."
            )
        self.spatial_dims = spatial_dims
        self.global_residual = global_residual
        self.divisor = int(math.prod(int(s) for s in strides))
        self.body = UNet(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=tuple(channels),
            strides=tuple(int(s) for s in strides),
            kernel_size=kernel_size,
            up_kernel_size=up_kernel_size,
            num_res_units=num_res_units,
            act=act,
            norm=norm,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C_in, *spatial)`` to ``(B, C_out, *spatial)``.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C_in, H, W)`` for 2D or ``(B, C_in, H, W, D)`` for 3D, each spatial size divisible by
            ``prod(strides)``.

        Returns
        -------
        torch.Tensor
            Same spatial shape as ``x``, unbounded values.
        """
        # written to compile with torch.jit.script (the model zoo's ckpt_export scripts network_def): plain loops and
        # string concatenation, no generator expressions, no tuple(...) of a runtime length
        if x.dim() != self.spatial_dims + 2:
            axes = "H, W" if self.spatial_dims == 2 else "H, W, D"
            raise ValueError(
                "expected a "
                + str(self.spatial_dims + 2)
                + "D tensor (B, C, "
                + axes
                + "), got shape ("
                + ", ".join([str(s) for s in x.shape])
                + ")."
            )
        for size in x.shape[2:]:
            if size % self.divisor != 0:
                raise ValueError(
                    "spatial size ("
                    + ", ".join([str(s) for s in x.shape[2:]])
                    + ") must be divisible by "
                    + "prod(strides) = "
                    + str(self.divisor)
                    + "; pad or crop the input (e.g. "
                    + "monai.transforms.DivisiblePad(k="
                    + str(self.divisor)
                    + "))."
                )
        out = self.body(x)
        return x + out if self.global_residual else out
