"""CycleGAN networks for unpaired density-map <-> subtomogram translation (CryoETGAN).

* :class:`CycleGANGenerator`: ResNet generator (c7s1-32, d64, d128, n x R128, u64, u32, c7s1-1)
  with Gaussian noise volumes concatenated at the bottleneck and at every decoder scale, optional Gaussian
  noise on the input, and dropout for MC sampling.
* :class:`SpectralNormCritic`: PatchGAN-style critic (C64-C128-C256) with spectral norm on every
  convolution, no normalisation layers and no output sigmoid.
* :class:`SubtomogramClassifier`: a small residual classifier whose penultimate features serve the
  PRDC / Frechet metrics.
* :func:`mc_dropout`: Monte-Carlo dropout mean and standard deviation of a model's output.

All networks take ``spatial_dims`` (2 or 3) and tensors shaped ``(B, C, H, W[, D])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.layers.factories import Dropout, Pool
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = ["CycleGANGenerator", "SpectralNormCritic", "SubtomogramClassifier", "mc_dropout"]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class CycleGANGenerator(nn.Module):
    """ResNet CycleGAN generator with noise injection at every decoder scale and MC dropout.

    Layout in CycleGAN notation (``channels=32``): ``c7s1-32, d64, d128, n_res_blocks x R128``,
    dropout, concatenation of ``noise_channels`` standard-normal volumes (128 + 1 = 129 channels),
    ``u64``, again ``noise_channels`` noise volumes at that scale (with ``decoder_noise``), ``u32``, noise at full
    scale, ``c7s1-out`` and ``tanh``. With ``input_noise_std > 0`` Gaussian noise of that standard deviation is
    added to the input (CryoETGAN's input noise on the density maps, sigma 0.2). ``c7s1-k`` is a 7^d convolution with stride 1, norm and ReLU;
    ``dk`` a 3^d stride-2 convolution; ``Rk`` a MONAI :class:`~monai.networks.blocks.ResidualUnit`
    of two 3^d conv-norm-ReLU subunits; ``uk`` a 3^d stride-2 transposed convolution. Padding is
    zero padding (MONAI ``Convolution``), not the reflection padding of the original CycleGAN.

    The noise is drawn with :func:`torch.randn` from the global generator on every call (respects
    :func:`torch.manual_seed`), so two calls on the same input differ: the generator maps one
    density map to a distribution of subtomograms. Pass ``noise`` to ``forward`` to fix it: one bottleneck tensor
    (the other scales are then drawn) or the full list returned by :meth:`sample_noise`.

    Parameters
    ----------
    spatial_dims
        2 or 3.
    in_channels, out_channels
        Image channels of input and output.
    channels
        Filters of the first layer; the encoder doubles them twice (32 -> 64 -> 128).
    n_res_blocks
        Number of residual blocks at the bottleneck.
    noise_channels
        Gaussian noise channels concatenated to the bottleneck (0 = deterministic generator).
    dropout
        Channel-dropout probability after the residual blocks (used for MC dropout; 0 = none).
    norm
        MONAI norm name, e.g. ``"INSTANCE"`` or ``"BATCH"``.
    decoder_noise
        Also concatenate ``noise_channels`` noise volumes after each upsampling (scales ``S / 2`` and ``S``).
    input_noise_std
        Standard deviation of Gaussian noise added to the input (0 = none).

    Shapes
    ------
    ``(B, in_channels, *S) -> (B, out_channels, *S)`` with every spatial size divisible by 4;
    output in ``(-1, 1)``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: int = 32,
        n_res_blocks: int = 6,
        noise_channels: int = 1,
        dropout: float = 0.0,
        norm: str | tuple = "INSTANCE",
        decoder_noise: bool = False,
        input_noise_std: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if input_noise_std < 0:
            raise ValueError(f"input_noise_std must be >= 0, got {input_noise_std}")
        if channels < 1 or n_res_blocks < 0 or noise_channels < 0 or not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"invalid generator settings: channels={channels}, n_res_blocks={n_res_blocks}, "
                f"noise_channels={noise_channels}, dropout={dropout}"
            )
        self.spatial_dims = spatial_dims
        self.noise_channels = noise_channels
        self.decoder_noise = bool(decoder_noise) and noise_channels > 0
        self.input_noise_std = float(input_noise_std)
        dn = noise_channels if self.decoder_noise else 0
        c1, c2, c3 = channels, 2 * channels, 4 * channels
        conv: dict[str, Any] = {"spatial_dims": spatial_dims, "act": "RELU", "norm": norm}
        self.encoder = nn.Sequential(
            Convolution(in_channels=in_channels, out_channels=c1, kernel_size=7, **conv),  # c7s1-32
            Convolution(in_channels=c1, out_channels=c2, kernel_size=3, strides=2, **conv),  # d64
            Convolution(in_channels=c2, out_channels=c3, kernel_size=3, strides=2, **conv),  # d128
        )
        self.res_blocks = nn.Sequential(
            *[
                ResidualUnit(spatial_dims, c3, c3, kernel_size=3, subunits=2, act="RELU", norm=norm)
                for _ in range(n_res_blocks)
            ]
        )
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](p=dropout) if dropout > 0 else nn.Identity()
        up: dict[str, Any] = dict(conv, kernel_size=3, strides=2, is_transposed=True, padding=1, output_padding=1)
        self.decoder = nn.Sequential(
            Convolution(in_channels=c3 + noise_channels, out_channels=c2, **up),  # u64
            Convolution(in_channels=c2 + dn, out_channels=c1, **up),  # u32
            Convolution(spatial_dims, c1 + dn, out_channels, kernel_size=7, conv_only=True),  # c7s1-1
            nn.Tanh(),
        )

    def noise_shapes(self, x: torch.Tensor) -> list[tuple[int, ...]]:
        """Shapes of the noise tensors of one call on ``x``: bottleneck, then (``decoder_noise``) ``S / 2`` and ``S``,
        then (``input_noise_std > 0``) the input noise ``x.shape``."""
        b, spatial = x.shape[0], tuple(x.shape[2:])
        shapes: list[tuple[int, ...]] = []
        if self.noise_channels:
            shapes.append((b, self.noise_channels, *[s // 4 for s in spatial]))
        if self.decoder_noise:
            shapes += [(b, self.noise_channels, *[s // 2 for s in spatial]), (b, self.noise_channels, *spatial)]
        if self.input_noise_std > 0:
            shapes.append(tuple(x.shape))
        return shapes

    def sample_noise(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every noise tensor of one call on ``x`` (see :meth:`noise_shapes`), drawn from N(0, 1)."""
        return [torch.randn(s, device=x.device, dtype=x.dtype) for s in self.noise_shapes(x)]

    def forward(self, x: torch.Tensor, noise: torch.Tensor | Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Translate ``x``.

        Parameters
        ----------
        x
            ``(B, in_channels, *S)``, spatial sizes divisible by 4.
        noise
            Optional ``(B, noise_channels, *S / 4)`` bottleneck noise (the other noise tensors are drawn), or the full
            list of :meth:`sample_noise`; drawn from N(0, 1) if ``None``.

        Returns
        -------
        torch.Tensor
            ``(B, out_channels, *S)`` in ``(-1, 1)``.
        """
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected a (B, C, {'H, W, D' if self.spatial_dims == 3 else 'H, W'}) tensor, got {tuple(x.shape)}"
            )
        if any(s % 4 for s in x.shape[2:]):
            raise ValueError(f"spatial sizes must be divisible by 4, got {tuple(x.shape[2:])}")
        shapes = self.noise_shapes(x)
        if noise is None:
            noises = self.sample_noise(x)
        elif isinstance(noise, torch.Tensor):
            if not shapes or not self.noise_channels or tuple(noise.shape) != shapes[0]:
                raise ValueError(f"noise must have shape {shapes[:1]}, got {tuple(noise.shape)}")
            noises = [noise] + self.sample_noise(x)[1:]
        else:
            noises = list(noise)
            if [tuple(n.shape) for n in noises] != shapes:
                raise ValueError(f"noise must be tensors of shapes {shapes}, got {[tuple(n.shape) for n in noises]}")
        noises = [n.to(x) for n in noises]
        if self.input_noise_std > 0:
            x = x + self.input_noise_std * noises.pop()
        h = self.dropout(self.res_blocks(self.encoder(x)))
        if self.noise_channels:
            h = torch.cat([h, noises[0]], dim=1)
        h = self.decoder[0](h)
        if self.decoder_noise:
            h = torch.cat([h, noises[1]], dim=1)
        h = self.decoder[1](h)
        if self.decoder_noise:
            h = torch.cat([h, noises[2]], dim=1)
        return self.decoder[3](self.decoder[2](h))


class SpectralNormCritic(nn.Module):
    """Spectrally normalised PatchGAN critic (raw scores, no sigmoid) for LSGAN / hinge / Wasserstein losses.

    ``C64-C128-C256`` (4^d convolutions with stride 2, LeakyReLU 0.2), then a 4^d stride-1 convolution to one
    channel. Every convolution carries :func:`torch.nn.utils.parametrizations.spectral_norm`, which bounds the
    critic's Lipschitz constant by 1 (LeakyReLU is 1-Lipschitz). By default there are **no normalisation layers**:
    instance norm would remove each sample's global amplitude (a wrong output contrast would go unpunished), void
    the Lipschitz bound, and at box 16 normalise maps of 2^3 voxels. ``norm`` adds one to blocks 2.. for
    experiments. ``spectral_norm=False`` gives a plain critic for WGAN weight clipping
    (:func:`~emgan_monai.losses.clip_weights` refuses spectrally normalised weights).

    Parameters
    ----------
    spatial_dims
        2 or 3.
    in_channels
        Image channels.
    channels
        Filters of the stride-2 blocks.
    norm
        MONAI norm name for blocks 2.. (``None``, the default: none).
    spectral_norm
        Spectral normalisation of every convolution.

    Shapes
    ------
    ``(B, in_channels, *S) -> (B, 1, *S / 2**len(channels) - 1)``, e.g. ``(1, 1, 32, 32, 32) ->
    (1, 1, 3, 3, 3)``: unbounded patch scores.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256),
        norm: str | tuple | None = None,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(channels) < 1:
            raise ValueError("channels must hold at least one entry")
        act = ("LEAKYRELU", {"negative_slope": 0.2})
        layers: list[nn.Module] = []
        prev = in_channels
        for i, ch in enumerate(channels):
            layers.append(
                Convolution(
                    spatial_dims, prev, ch, strides=2, kernel_size=4, padding=1, act=act, norm=None if i == 0 else norm
                )
            )
            prev = ch
        layers.append(Convolution(spatial_dims, prev, 1, kernel_size=4, padding=1, conv_only=True))
        self.net = nn.Sequential(*layers)
        if spectral_norm:
            for module in list(self.net.modules()):
                if isinstance(module, _CONV_TYPES):
                    _spectral_norm(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, 1, *S')`` critic scores (higher = more real)."""
        return self.net(x)


class SubtomogramClassifier(nn.Module):
    """Small residual 2D/3D classifier with a ``features`` head for distribution metrics.

    Strided MONAI :class:`~monai.networks.blocks.ResidualUnit` stages, global average pooling and a
    linear layer. ``features`` returns the pooled penultimate activations, a fixed-length
    ``(B, channels[-1])`` vector whatever the input size, used by PRDC and Frechet distances.

    Parameters
    ----------
    spatial_dims
        2 or 3.
    in_channels
        Image channels.
    num_classes
        Output logits.
    channels, strides
        Filters and strides of the residual stages.
    dropout
        Dropout before the linear layer.
    norm
        MONAI norm name.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (16, 32, 64),
        strides: Sequence[int] = (2, 2, 2),
        dropout: float = 0.0,
        norm: str | tuple = "BATCH",
    ) -> None:
        super().__init__()
        if len(channels) != len(strides) or not channels:
            raise ValueError(f"channels and strides must be non-empty and equally long, got {channels}, {strides}")
        stages: list[nn.Module] = []
        prev = in_channels
        for ch, st in zip(channels, strides):
            stages.append(ResidualUnit(spatial_dims, prev, ch, strides=st, subunits=2, act="PRELU", norm=norm))
            prev = ch
        self.body = nn.Sequential(*stages)
        self.pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(prev, num_classes)
        self.num_features = prev

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, F)`` penultimate (pooled) features, ``F = channels[-1]``."""
        return torch.flatten(self.pool(self.body(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S) -> (B, num_classes)`` logits."""
        return self.head(self.dropout(self.features(x)))


_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@torch.no_grad()
def mc_dropout(
    model: nn.Module, x: torch.Tensor, k: int = 20, **forward_kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo dropout: mean and standard deviation of ``k`` stochastic forward passes.

    The model is put in eval mode (normalisation layers use running statistics / are deterministic)
    with only its dropout layers switched to training mode; all modes are restored afterwards. For
    :class:`CycleGANGenerator` the bottleneck noise also varies between passes unless a fixed
    ``noise=`` is passed through ``forward_kwargs``.

    Parameters
    ----------
    model
        Any module, called as ``model(x, **forward_kwargs)``.
    x
        Input batch ``(B, C, *S)``.
    k
        Number of passes (>= 2).

    Returns
    -------
    mean, std : torch.Tensor
        Same shape as one output; ``std`` is the population standard deviation over the passes.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        for m in model.modules():
            if isinstance(m, _DROPOUT_TYPES):
                m.train()
        samples = torch.stack([model(x, **forward_kwargs) for _ in range(k)])
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return samples.mean(0), samples.std(0, unbiased=False)
