"""Patch discriminators for the two-stage Drosophila serial-section TEM GAN (and the confocal enhancement GAN).

The discriminators are unconditional by construction (they take one ``in_channels`` tensor) and are used
conditionally by concatenating the condition to the input on the channel axis: stage 2 of the Drosophila GAN
feeds ``cat(one-hot mask, EM)`` (``in_channels=4``), the paired trainers ``cat(image, fake|label)``
(:class:`~emgan_monai.engines.PairedGANTrainer` with ``conditional=True``). All are built from
:class:`monai.networks.blocks.Convolution` and work in 2D or 3D through ``spatial_dims``:

* :class:`SkipPatchDiscriminator` -- a PatchGAN whose every output pixel looks at nested patches of
  exactly 16, 20, 32 and 70 px at once (taps of one convolutional trunk, brought to the output grid by
  strided 1x1 convolutions and concatenated before a 1x1 logit layer);
* :class:`PatchDiscriminator` -- the plain pix2pix PatchGANs with 70 px (``n_layers=3``) and 16 px
  (``n_layers=1``) receptive fields;
* :func:`build_discriminator` -- the factory that bundle configs call.

All return raw logits (no sigmoid) as a single tensor ``(B, 1, *spatial_out)``.

Receptive-field arithmetic used throughout: a convolution with kernel ``k`` and stride ``s`` applied to
a feature map whose pixels are ``J`` input pixels apart ("jump") enlarges the receptive field by
``(k - 1) * J`` and multiplies the jump by ``s``; a 1x1 convolution (any stride) leaves the receptive
field unchanged.

One module, about 460 lines, for one concept: the PatchGAN family, whose members share the input checks, spectral
norm, minibatch-std layer and the receptive-field bookkeeping above; most of the length is that documentation.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = [
    "SkipPatchDiscriminator",
    "PatchDiscriminator",
    "build_discriminator",
    "DISCRIMINATOR_KINDS",
    "apply_spectral_norm",
    "minibatch_std",
]

DISCRIMINATOR_KINDS: tuple[str, ...] = ("skip_patch", "patch16", "patch70")

_LEAKY = ("LEAKYRELU", {"negative_slope": 0.2})


def _check_input(x: torch.Tensor, spatial_dims: int, in_channels: int, multiple: int, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, *spatial)`` with sizes divisible by ``multiple``."""
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{name}: expected a {spatial_dims + 2}D tensor (B, C, {'H, W' if spatial_dims == 2 else 'H, W, D'}), "
            f"got shape {tuple(x.shape)}."
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"{name}: expected {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)}).")
    bad = [s for s in x.shape[2:] if s % multiple != 0]
    if bad:
        raise ValueError(f"{name}: every spatial size must be a multiple of {multiple}, got {tuple(x.shape[2:])}.")


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Put spectral normalisation (``torch.nn.utils.parametrizations.spectral_norm``) on every convolution of ``module``.

    Returns ``module`` (changed in place). The parametrised weights keep their state-dict keys under
    ``parametrizations.weight.original`` (Miyato et al. 2018).
    """
    from torch.nn.utils.parametrizations import spectral_norm

    for m in list(module.modules()):
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            spectral_norm(m)
    return module


def minibatch_std(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append the minibatch standard-deviation channel (Karras et al. 2018) to features ``(B, C, *spatial)``.

    Samples are split into groups of ``min(group_size, B)`` (the largest divisor of ``B`` not above it); within a
    group the per-feature standard deviation across samples is averaged over channels and positions, giving one
    number per group that is broadcast as an extra channel: ``(B, C + 1, *spatial)``. A collapsed generator (all
    samples alike) gives a value near 0, which the discriminator can recognise.
    """
    b = x.shape[0]
    g = max(1, min(int(group_size), b))
    while b % g:
        g -= 1
    y = x.float().reshape(g, b // g, *x.shape[1:])
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (B/g, C, *spatial)
    y = y.mean(dim=tuple(range(1, y.ndim)))  # (B/g,)
    y = y.repeat(g).reshape(b, 1, *([1] * (x.ndim - 2))).expand(b, 1, *x.shape[2:]).to(x.dtype)
    return torch.cat([x, y], dim=1)


def _check_spatial_dims(spatial_dims: int, name: str) -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims}.")


class SkipPatchDiscriminator(nn.Module):
    r"""PatchGAN whose every output pixel judges nested 16, 20, 32 and 70 px patches at once.

    One convolutional trunk is tapped after the layers whose receptive fields (RF) are 16, 20, 32 and
    70 px. The three shallow taps live on a stride-2 grid and are brought to the stride-8 output grid by a
    1x1 convolution of stride 4; the deep tap already lives on the stride-8 grid and gets a 1x1 convolution
    of stride 1. A 1x1 convolution cannot enlarge a receptive field, so the four projected maps, each
    ``(B, branch_channels, H/8, W/8)``, carry exactly the 16/20/32/70 px evidence of the same output
    location; they are concatenated and a final 1x1 convolution turns them into one logit per pixel.

    Trunk (``c = channels``; ``J`` = jump in input pixels before the layer; sizes for a 512 px input):

    ====  =====================  ========  ====  ============  =========  =======
    layer conv (k, s, p)          channels  J     RF after      size out   tap
    ====  =====================  ========  ====  ============  =========  =======
    0     k4 s2 p1, no norm       in -> c   1     1 + 3 = 4     256
    1     k3 s1 p1                c -> c    2     4 + 4 = 8     256
    2     k3 s1 p1                c -> c    2     12            256
    3     k3 s1 p1                c -> c    2     16            256        **16**
    4     k3 s1 p1                c -> c    2     20            256        **20**
    5     k3 s1 p1                c -> c    2     24            256
    6     k3 s1 p1                c -> c    2     28            256
    7     k3 s1 p1                c -> c    2     32            256        **32**
    8     k4 s2 p1                c -> 2c   2     32 + 6 = 38   128
    9     k3 s1 p1                2c -> 2c  4     38 + 8 = 46   128
    10    k3 s2 p1                2c -> 4c  4     46 + 8 = 54   64
    11    k3 s1 p1                4c -> 4c  8     54 + 16 = 70  64         **70**
    ====  =====================  ========  ====  ============  =========  =======

    Taps 16/20/32: ``Convolution(k=1, s=4)``: 256 -> 64 (jump 2 -> 8, RF unchanged). Tap 70:
    ``Convolution(k=1, s=1)``: 64 -> 64. Head: concatenation (``4 * branch_channels``) -> 1x1 conv -> 1.
    Hence a ``(B, C, 512, 512)`` input gives ``(B, 1, 64, 64)`` logits; in general ``(B, 1, H/8, W/8)``
    (``H/8, W/8, D/8`` in 3D) and every spatial size must be a multiple of 8.

    Grid alignment: output pixel ``i`` (per axis) sees input pixels ``[8i - 7, 8i + 8]`` (16 px),
    ``[8i - 9, 8i + 10]`` (20 px), ``[8i - 15, 8i + 16]`` (32 px) and ``[8i - 33, 8i + 36]`` (70 px): the
    patches are nested and their centres (``8i + 0.5`` for the shallow taps, ``8i + 1.5`` for the deep
    one) agree within one input pixel. Exact centring is impossible with a shared stride-2 stem: the
    centre offset of a tap equals ``(RF - 1) / 2`` minus its accumulated padding in input pixels, and
    ``(70 - 16) / 2 = 27`` is odd while every padding after the stem counts in steps of at least 2 px.
    Likewise the 70 px path cannot continue from the 32 px tap on a coarser grid: it needs
    ``70 - 32 = 38`` more pixels, and ``38`` is not a multiple of 4, so the 32 px tap stays on the
    stride-2 grid.

    Parameters
    ----------
    spatial_dims
        2 for images ``(B, C, H, W)``, 3 for volumes ``(B, C, H, W, D)``.
    in_channels
        Channels of the judged image (3 for one-hot masks, 1 for EM).
    channels
        Width ``c`` of the stride-2 part of the trunk; deeper layers use ``2c`` and ``4c``.
    norm
        MONAI norm name/tuple for every layer except the stem and the logit layer; ``None`` gives a
        per-pixel-local (norm-free) network, used to measure receptive fields by gradients.
    act
        MONAI activation name/tuple (LeakyReLU 0.2 by default).
    branch_channels
        Channels of each projected tap (default: ``channels``).
    bias
        Whether the convolutions have a bias.

    Examples
    --------
    >>> d = SkipPatchDiscriminator(spatial_dims=2, in_channels=3, channels=8)
    >>> d(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 1, 8, 8])
    """

    #: receptive fields (px) of the four taps, in trunk order
    receptive_fields: tuple[int, ...] = (16, 20, 32, 70)
    #: distance (input px) between neighbouring output pixels
    output_stride: int = 8
    # (kernel, stride, padding, out-channel multiplier) of each trunk layer, see the class docstring
    _trunk_spec: tuple[tuple[int, int, int, int], ...] = (
        (4, 2, 1, 1),
        (3, 1, 1, 1),
        (3, 1, 1, 1),
        (3, 1, 1, 1),
        (3, 1, 1, 1),
        (3, 1, 1, 1),
        (3, 1, 1, 1),
        (3, 1, 1, 1),
        (4, 2, 1, 2),
        (3, 1, 1, 2),
        (3, 2, 1, 4),
        (3, 1, 1, 4),
    )
    # trunk layer index after which each tap is taken, and the stride of its 1x1 projection
    _taps: dict[int, tuple[int, int]] = {16: (3, 4), 20: (4, 4), 32: (7, 4), 70: (11, 1)}

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        channels: int = 64,
        norm: tuple | str | None = "INSTANCE",
        act: tuple | str | None = _LEAKY,
        branch_channels: int | None = None,
        bias: bool = True,
        spectral_norm: bool = False,
        minibatch_std_group: int = 0,
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims, type(self).__name__)
        if in_channels < 1 or channels < 1:
            raise ValueError(
                f"SkipPatchDiscriminator: in_channels and channels must be >= 1, got {in_channels}, {channels}."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        branch_channels = channels if branch_channels is None else branch_channels

        self.trunk = nn.ModuleList()
        widths: list[int] = []
        c_in = in_channels
        for i, (k, s, p, mult) in enumerate(self._trunk_spec):
            c_out = channels * mult
            self.trunk.append(
                Convolution(
                    spatial_dims,
                    c_in,
                    c_out,
                    strides=s,
                    kernel_size=k,
                    padding=p,
                    adn_ordering="NA",
                    norm=None if i == 0 else norm,  # pix2pix: no norm on the first layer
                    act=act,
                    bias=bias,
                )
            )
            widths.append(c_out)
            c_in = c_out

        self.branches = nn.ModuleDict()
        for rf, (layer, stride) in self._taps.items():
            self.branches[str(rf)] = Convolution(
                spatial_dims,
                widths[layer],
                branch_channels,
                strides=stride,
                kernel_size=1,
                padding=0,
                adn_ordering="NA",
                norm=norm,
                act=act,
                bias=bias,
            )
        self.minibatch_std_group = int(minibatch_std_group)
        self.head = Convolution(
            spatial_dims,
            len(self._taps) * branch_channels + (1 if self.minibatch_std_group > 0 else 0),
            1,
            kernel_size=1,
            padding=0,
            conv_only=True,
            bias=bias,
        )
        if spectral_norm:
            apply_spectral_norm(self)

    def forward_branches(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Per-receptive-field feature maps on the output grid.

        Parameters
        ----------
        x
            ``(B, in_channels, H, W[, D])``, every spatial size a multiple of 8.

        Returns
        -------
        dict
            ``{16: f16, 20: f20, 32: f32, 70: f70}``, each ``(B, branch_channels, H/8, W/8[, D/8])``; a pixel of
            ``fN`` depends on exactly an ``N``-px patch of ``x`` (per axis).
        """
        _check_input(x, self.spatial_dims, self.in_channels, self.output_stride, type(self).__name__)
        tap_at = {layer: rf for rf, (layer, _) in self._taps.items()}
        out: dict[int, torch.Tensor] = {}
        h = x
        for i, layer in enumerate(self.trunk):
            h = layer(h)
            if i in tap_at:
                rf = tap_at[i]
                out[rf] = self.branches[str(rf)](h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, H/8, W/8[, D/8])`` for an input ``(B, in_channels, H, W[, D])``."""
        feats = self.forward_branches(x)
        h = torch.cat([feats[rf] for rf in self.receptive_fields], dim=1)
        if self.minibatch_std_group > 0:
            h = minibatch_std(h, self.minibatch_std_group)
        return self.head(h)


class PatchDiscriminator(nn.Module):
    r"""Plain pix2pix PatchGAN (``NLayerDiscriminator``) with a 70 px or 16 px receptive field.

    All kernels are 4; the first layer has no norm, the last is a bare convolution to one logit channel;
    LeakyReLU 0.2 elsewhere. The stride-1 layers use paddings 2 then 1 (instead of pix2pix's 1 and 1), so
    they change the size by +1 then -1 and the output grid is exactly ``input / stride``:

    ``receptive_field=70`` (pix2pix ``n_layers=3``), output stride 8:

    =========  ========  =====  ===========  ==========
    layer      channels  J      RF after     size (512)
    =========  ========  =====  ===========  ==========
    k4 s2 p1   in -> c   1      4            256
    k4 s2 p1   c -> 2c   2      10           128
    k4 s2 p1   2c -> 4c  4      22           64
    k4 s1 p2   4c -> 8c  8      46           65
    k4 s1 p1   8c -> 1   8      70           64
    =========  ========  =====  ===========  ==========

    ``receptive_field=16`` (pix2pix ``n_layers=1``, "two layers" plus the logit layer), output stride 2:

    =========  ========  =====  ===========  ==========
    layer      channels  J      RF after     size (512)
    =========  ========  =====  ===========  ==========
    k4 s2 p1   in -> c   1      4            256
    k4 s1 p2   c -> 2c   2      10           257
    k4 s1 p1   2c -> 1   2      16           256
    =========  ========  =====  ===========  ==========

    So a 512 px input gives ``(B, 1, 64, 64)`` for ``receptive_field=70`` and ``(B, 1, 256, 256)`` for
    ``receptive_field=16`` (its natural stride-2 grid is kept: neighbouring 16 px patches overlap by 14 px,
    as in pix2pix). Spatial sizes must be multiples of the output stride (8 or 2).

    Parameters
    ----------
    spatial_dims
        2 for ``(B, C, H, W)``, 3 for ``(B, C, H, W, D)``.
    in_channels
        Channels of the judged image.
    receptive_field
        70 or 16.
    channels
        Width ``c`` of the first layer (64 in pix2pix).
    norm
        MONAI norm for the inner layers; ``None`` makes the network local (for receptive-field tests).
    act
        MONAI activation (LeakyReLU 0.2 by default).
    bias
        Whether the convolutions have a bias.
    """

    _specs: dict[int, tuple[tuple[int, int, int], ...]] = {
        # (stride, padding, out-channel multiplier; 0 means the 1-channel logit layer)
        70: ((2, 1, 1), (2, 1, 2), (2, 1, 4), (1, 2, 8), (1, 1, 0)),
        16: ((2, 1, 1), (1, 2, 2), (1, 1, 0)),
    }

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        receptive_field: int = 70,
        channels: int = 64,
        norm: tuple | str | None = "INSTANCE",
        act: tuple | str | None = _LEAKY,
        bias: bool = True,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_spatial_dims(spatial_dims, type(self).__name__)
        if receptive_field not in self._specs:
            raise ValueError(
                f"PatchDiscriminator: receptive_field must be one of {sorted(self._specs)}, got {receptive_field}."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.receptive_field = receptive_field
        spec = self._specs[receptive_field]
        self.output_stride = 1
        for s, _, _ in spec:
            self.output_stride *= s

        layers: list[nn.Module] = []
        c_in = in_channels
        for i, (s, p, mult) in enumerate(spec):
            last = mult == 0
            c_out = 1 if last else channels * mult
            layers.append(
                Convolution(
                    spatial_dims,
                    c_in,
                    c_out,
                    strides=s,
                    kernel_size=4,
                    padding=p,
                    adn_ordering="NA",
                    norm=None if i == 0 else norm,
                    act=act,
                    bias=bias,
                    conv_only=last,
                )
            )
            c_in = c_out
        self.model = nn.Sequential(*layers)
        if spectral_norm:
            apply_spectral_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 1, *(s // output_stride for s in spatial))`` for ``x`` of shape ``(B, C, H, W[, D])``."""
        _check_input(x, self.spatial_dims, self.in_channels, self.output_stride, type(self).__name__)
        return self.model(x)


def build_discriminator(
    kind: str,
    spatial_dims: int,
    in_channels: int,
    channels: int = 64,
    norm: tuple | str | None = "INSTANCE",
    spectral_norm: bool = False,
    minibatch_std_group: int = 0,
) -> nn.Module:
    """Build a discriminator by name (what the bundle configs call).

    Parameters
    ----------
    kind
        ``"skip_patch"`` (:class:`SkipPatchDiscriminator`, RF 16/20/32/70, stride 8),
        ``"patch70"`` (:class:`PatchDiscriminator`, RF 70, stride 8) or
        ``"patch16"`` (:class:`PatchDiscriminator`, RF 16, stride 2).
    spatial_dims
        2 or 3.
    in_channels
        Channels of the judged image.
    channels
        Width of the first layer.
    norm
        MONAI norm name/tuple or ``None``.
    spectral_norm
        Spectral normalisation on every convolution (:func:`apply_spectral_norm`).
    minibatch_std_group
        Group size of the minibatch standard-deviation channel before the logit layer (skip-patch only; 0 = none).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, in_channels, *spatial)`` to logits ``(B, 1, *spatial / stride)``.
    """
    if kind == "skip_patch":
        return SkipPatchDiscriminator(
            spatial_dims,
            in_channels,
            channels=channels,
            norm=norm,
            spectral_norm=spectral_norm,
            minibatch_std_group=minibatch_std_group,
        )
    if minibatch_std_group:
        raise ValueError(
            f"build_discriminator: minibatch_std_group is only implemented for 'skip_patch', not {kind!r}."
        )
    if kind == "patch70":
        return PatchDiscriminator(
            spatial_dims, in_channels, receptive_field=70, channels=channels, norm=norm, spectral_norm=spectral_norm
        )
    if kind == "patch16":
        return PatchDiscriminator(
            spatial_dims, in_channels, receptive_field=16, channels=channels, norm=norm, spectral_norm=spectral_norm
        )
    raise ValueError(f"build_discriminator: unknown kind {kind!r}; expected one of {DISCRIMINATOR_KINDS}.")
