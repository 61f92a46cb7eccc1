"""Stage-2 generator of the two-stage Drosophila TEM GAN: the pix2pix U-Net (mask -> EM)."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_act_layer
from torch import nn

__all__ = ["Pix2PixUNet"]

_LEAKY = ("LEAKYRELU", {"negative_slope": 0.2})


class Pix2PixUNet(nn.Module):
    r"""pix2pix U-Net generator with the semantics of junyanz's ``UnetGenerator``, built from MONAI blocks.

    All convolutions have kernel 4, stride 2, padding 1, so each level halves (encoder) or doubles
    (decoder) the size. With ``c = channels`` and ``n = num_downs`` the encoder widths are
    ``c * min(2**i, 8)`` for ``i = 0 .. n-1`` (``C16-C32-C64-C128-C128-C128-C128-C128`` for the defaults).

    Encoder (``E_i``, output ``s_i``):

    * ``E_0``: conv -> LeakyReLU(0.2) (no norm);
    * ``E_i``, ``0 < i < n-1``: conv -> norm -> LeakyReLU(0.2);
    * ``E_{n-1}`` (innermost, ``1x1`` for 256 px and ``n=8``): conv -> ReLU (no norm).

    Decoder (``D_i`` maps level ``i`` back to the size of ``s_{i-1}``):

    * ``D_{n-1}``: transposed conv -> norm;
    * ``D_i``, ``0 < i < n-1``: ReLU(concat(``s_i``, previous)) -> transposed conv -> norm [-> dropout];
    * ``D_0``: ReLU(concat(``s_0``, previous)) -> transposed conv -> ``out_act``.

    As in the reference, dropout sits in the ``n - 5`` decoder blocks just outside the innermost one whose
    input and output widths are both ``8c`` (three blocks for ``n = 8``: ``D_6, D_5, D_4``). The skip
    carries the LeakyReLU-activated encoder features, which is what the reference computes (its in-place
    ``LeakyReLU`` overwrites the skip tensor).

    The input spatial size must be divisible by ``2 ** num_downs`` (256 for the defaults).

    Parameters
    ----------
    spatial_dims
        2 for ``(B, C, H, W)``, 3 for ``(B, C, H, W, D)``.
    in_channels
        Input channels (3 for a one-hot / softmax mask).
    out_channels
        Output channels (1 for EM).
    channels
        Width of the outermost encoder level (``ngf``; 16 in the seed paper, 64 in pix2pix).
    num_downs
        Number of down-sampling levels (>= 2).
    norm
        MONAI norm name/tuple (``None`` to disable).
    dropout
        Dropout probability in the decoder blocks described above (0 or ``None`` to disable).
    out_act
        ``"sigmoid"`` (output in ``(0, 1)``), ``"tanh"`` (``(-1, 1)``) or ``None`` (raw).

    Examples
    --------
    >>> net = Pix2PixUNet(channels=4, num_downs=5)
    >>> net(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: int = 16,
        num_downs: int = 8,
        norm: tuple | str | None = "INSTANCE",
        dropout: float | None = 0.5,
        out_act: str | None = "sigmoid",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"Pix2PixUNet: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_downs < 2:
            raise ValueError(f"Pix2PixUNet: num_downs must be >= 2, got {num_downs}.")
        if out_act is not None and out_act.lower() not in ("sigmoid", "tanh"):
            raise ValueError(f"Pix2PixUNet: out_act must be 'sigmoid', 'tanh' or None, got {out_act!r}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_downs = num_downs
        self.size_multiple = 2**num_downs

        n = num_downs
        widths = [channels * min(2**i, 8) for i in range(n)]
        p_drop = dropout if dropout else None

        def down(c_in: int, c_out: int, norm_: tuple | str | None, act: tuple | str) -> Convolution:
            return Convolution(
                spatial_dims, c_in, c_out, strides=2, kernel_size=4, padding=1, adn_ordering="NA", norm=norm_, act=act
            )

        def up(c_in: int, c_out: int, drop: float | None, conv_only: bool = False) -> Convolution:
            return Convolution(
                spatial_dims,
                c_in,
                c_out,
                strides=2,
                kernel_size=4,
                padding=1,
                output_padding=0,
                is_transposed=True,
                adn_ordering="ND",
                norm=norm,
                act=None,
                dropout=drop,
                conv_only=conv_only,
            )

        self.encoder = nn.ModuleList()
        for i in range(n):
            c_in = in_channels if i == 0 else widths[i - 1]
            if i == 0:
                self.encoder.append(down(c_in, widths[0], None, _LEAKY))
            elif i == n - 1:
                self.encoder.append(down(c_in, widths[i], None, "RELU"))
            else:
                self.encoder.append(down(c_in, widths[i], norm, _LEAKY))

        # decoder[i] is D_i (index-aligned with the encoder)
        decoder: list[nn.Module] = []
        for i in range(n):
            if i == 0:
                decoder.append(up(2 * widths[0], out_channels, None, conv_only=True))
            elif i == n - 1:
                decoder.append(up(widths[i], widths[i - 1], None))
            else:
                use_drop = widths[i - 1] == widths[i] == 8 * channels and i >= 4
                decoder.append(up(2 * widths[i], widths[i - 1], p_drop if use_drop else None))
        self.decoder = nn.ModuleList(decoder)
        self.skip_act = nn.ReLU()
        self.out_act = get_act_layer(out_act) if out_act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``(B, in_channels, H, W[, D])`` into ``(B, out_channels, H, W[, D])``.

        Raises
        ------
        ValueError
            If the tensor rank or channel count is wrong, or a spatial size is not a multiple of
            ``2 ** num_downs``.
        """
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Pix2PixUNet: expected (B, {self.in_channels}, {', '.join(['s'] * self.spatial_dims)}), "
                f"got {tuple(x.shape)}."
            )
        if any(s % self.size_multiple for s in x.shape[2:]):
            raise ValueError(
                f"Pix2PixUNet: spatial size {tuple(x.shape[2:])} must be divisible by 2**num_downs = "
                f"{self.size_multiple} (num_downs={self.num_downs})."
            )
        skips: list[torch.Tensor] = []
        h = x
        for enc in self.encoder:
            h = enc(h)
            skips.append(h)
        h = self.decoder[-1](skips[-1])
        for i in range(self.num_downs - 2, -1, -1):
            h = self.decoder[i](self.skip_act(torch.cat([skips[i], h], dim=1)))
        return self.out_act(h)
