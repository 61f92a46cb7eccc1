"""Tests of the Drosophila two-stage GAN networks: discriminators, noise->mask generator, pix2pix U-Net.

Receptive fields are MEASURED: with norm disabled (instance norm couples all pixels) and every convolution
weight set positive, the gradient of one output pixel w.r.t. the input is non-zero exactly on the input
patch that pixel sees (no cancellations are possible), so the extent of the non-zero gradient is the
receptive field.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from emgan_monai.networks.discriminators import (
    DISCRIMINATOR_KINDS,
    PatchDiscriminator,
    SkipPatchDiscriminator,
    build_discriminator,
)
from emgan_monai.networks.mask_generator import NoiseToMaskGenerator
from emgan_monai.networks.pix2pix_unet import Pix2PixUNet

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _make_positive(model: nn.Module) -> nn.Module:
    """Set every conv weight to a positive value ~ 1/fan_in (keeps activations O(1)) and biases to 0."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _CONVS):
                fan_in = m.weight[0].numel()
                m.weight.copy_((0.5 + torch.rand(m.weight.shape, generator=gen)) / fan_in)
                if m.bias is not None:
                    m.bias.zero_()
    return model.double()


def _patch_box(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, pixel: tuple[int, ...]):
    """Input box ``[(lo, hi), ...]`` (inclusive, per spatial axis) that output ``pixel`` depends on.

    Also asserts that the dependency region IS that full box (no holes), i.e. it is a patch.
    """
    x = x.clone().double().requires_grad_(True)
    y = fn(x)
    y[(0, slice(None)) + pixel].sum().backward()
    nz = x.grad[0].abs().sum(0) > 0
    box = []
    for ax in range(nz.ndim):
        others = tuple(a for a in range(nz.ndim) if a != ax)
        idx = torch.nonzero(nz.any(dim=others) if others else nz).flatten()
        box.append((int(idx.min()), int(idx.max())))
    sl = tuple(slice(lo, hi + 1) for lo, hi in box)
    assert bool(nz[sl].all()), "dependency region is not a solid box"
    assert int(nz.sum()) == nz[sl].numel()
    return box


def _sizes(box) -> list[int]:
    return [hi - lo + 1 for lo, hi in box]


# ----------------------------------------------------------------------------------------------------------
# skip-patch discriminator
# ----------------------------------------------------------------------------------------------------------


def test_skip_patch_branch_receptive_fields_measured_by_gradients():
    d = _make_positive(SkipPatchDiscriminator(2, in_channels=2, channels=4, norm=None))
    x = torch.rand(1, 2, 128, 128) + 0.1  # output grid 16x16; the 70 px patch of pixel (8, 8) is inside
    i = 8
    boxes = {}
    for rf in d.receptive_fields:
        box = _patch_box(lambda t, rf=rf: d.forward_branches(t)[rf], x, (i, i))
        assert _sizes(box) == [rf, rf], f"branch {rf}: measured {_sizes(box)}"
        boxes[rf] = box
    # the documented windows: [8i-7, 8i+8], [8i-9, 8i+10], [8i-15, 8i+16], [8i-33, 8i+36]
    s = 8 * i
    assert boxes[16][0] == (s - 7, s + 8)
    assert boxes[20][0] == (s - 9, s + 10)
    assert boxes[32][0] == (s - 15, s + 16)
    assert boxes[70][0] == (s - 33, s + 36)
    # nested, centres within one input pixel
    for small, big in [(16, 20), (20, 32), (32, 70)]:
        for (lo_s, hi_s), (lo_b, hi_b) in zip(boxes[small], boxes[big]):
            assert lo_b <= lo_s and hi_s <= hi_b
            assert abs((lo_s + hi_s) / 2 - (lo_b + hi_b) / 2) <= 1.0
    # the whole network: union of the four patches = the 70 px patch
    whole = _patch_box(d, x, (i, i))
    assert _sizes(whole) == [70, 70] and whole == boxes[70]
    # a neighbouring output pixel sees the same patches shifted by exactly the output stride (aligned grid)
    box_next = _patch_box(lambda t: d.forward_branches(t)[16], x, (i + 1, i))
    assert box_next[0] == (boxes[16][0][0] + 8, boxes[16][0][1] + 8) and box_next[1] == boxes[16][1]


def test_skip_patch_receptive_fields_3d():
    d = _make_positive(SkipPatchDiscriminator(3, in_channels=1, channels=1, branch_channels=1, norm=None))
    x = torch.rand(1, 1, 80, 80, 80) + 0.1  # output 10^3; the 70 px patch of voxel (5, 5, 5) is inside
    for rf in d.receptive_fields:
        box = _patch_box(lambda t, rf=rf: d.forward_branches(t)[rf], x, (5, 5, 5))
        assert _sizes(box) == [rf, rf, rf]
    assert _sizes(_patch_box(d, x, (5, 5, 5))) == [70, 70, 70]


def _conv_params(kernel: int, dims: int, c_in: int, c_out: int, bias: bool = True) -> int:
    return kernel**dims * c_in * c_out + (c_out if bias else 0)


def _skip_patch_params(dims: int, c_in: int, c: int, b: int | None = None) -> int:
    """Parameter count of the skip-patch trunk, taps and head as tabulated in the class docstring.

    Written out from the table (not from the class), instance norm without affine parameters.
    """
    b = c if b is None else b
    trunk = [(4, c_in, c)] + [(3, c, c)] * 7 + [(4, c, 2 * c), (3, 2 * c, 2 * c), (3, 2 * c, 4 * c), (3, 4 * c, 4 * c)]
    n = sum(_conv_params(k, dims, i, o) for k, i, o in trunk)
    n += sum(_conv_params(1, dims, w, b) for w in (c, c, c, 4 * c))  # taps 16/20/32 (width c), 70 (width 4c)
    return n + _conv_params(1, dims, 4 * b, 1)  # head


def _patch_params(dims: int, c_in: int, c: int, rf: int) -> int:
    widths = {70: [c_in, c, 2 * c, 4 * c, 8 * c, 1], 16: [c_in, c, 2 * c, 1]}[rf]
    return sum(_conv_params(4, dims, i, o) for i, o in zip(widths[:-1], widths[1:]))


def test_skip_patch_512_gives_64_and_param_count():
    d = SkipPatchDiscriminator(2, in_channels=3, channels=8)
    with torch.no_grad():
        out = d(torch.rand(1, 3, 512, 512))
        feats = d.forward_branches(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 1, 64, 64)
    assert all(f.shape == (1, 8, 8, 8) for f in feats.values()) and sorted(feats) == [16, 20, 32, 70]
    # the layer table of the docstring, parameter for parameter (a wrong kernel, width or tap breaks it)
    assert sum(p.numel() for p in d.parameters()) == _skip_patch_params(2, 3, 8) == 23265
    d3 = SkipPatchDiscriminator(3, in_channels=1, channels=4, branch_channels=2)
    assert sum(p.numel() for p in d3.parameters()) == _skip_patch_params(3, 1, 4, 2)


@pytest.mark.parametrize("bad", [torch.rand(1, 3, 60, 64), torch.rand(1, 1, 64, 64), torch.rand(3, 64, 64)])
def test_skip_patch_rejects_bad_input(bad):
    d = SkipPatchDiscriminator(2, in_channels=3, channels=2)
    with pytest.raises(ValueError, match="SkipPatchDiscriminator"):
        d(bad)


# ----------------------------------------------------------------------------------------------------------
# plain patch discriminators and the factory
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rf, size, stride", [(70, 128, 8), (16, 48, 2)])
def test_patch_discriminator_receptive_field_measured(rf, size, stride):
    d = _make_positive(PatchDiscriminator(2, in_channels=1, receptive_field=rf, channels=4, norm=None))
    x = torch.rand(1, 1, size, size) + 0.1
    out = d(x.double())
    assert out.shape == (1, 1, size // stride, size // stride)
    c = size // stride // 2
    box = _patch_box(d, x, (c, c))
    assert _sizes(box) == [rf, rf]


def test_patch_discriminator_output_sizes():
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert PatchDiscriminator(2, 3, 70, channels=4)(x).shape == (1, 1, 8, 8)  # 512 -> 64
        assert PatchDiscriminator(2, 3, 16, channels=4)(x).shape == (1, 1, 32, 32)  # 512 -> 256
    with pytest.raises(ValueError, match="receptive_field"):
        PatchDiscriminator(2, 3, receptive_field=34)


@pytest.mark.parametrize("kind, expected", [("skip_patch", 4), ("patch70", 4), ("patch16", 16)])
def test_discriminators_3d(kind, expected):
    d = build_discriminator(kind, spatial_dims=3, in_channels=1, channels=2)
    with torch.no_grad():
        out = d(torch.rand(2, 1, 32, 32, 32))
    assert out.shape == (2, 1, expected, expected, expected)


def test_build_discriminator_kinds_and_error():
    types = {"skip_patch": SkipPatchDiscriminator, "patch16": PatchDiscriminator, "patch70": PatchDiscriminator}
    for kind in DISCRIMINATOR_KINDS:
        assert isinstance(build_discriminator(kind, 2, 3, channels=2), types[kind])
    assert build_discriminator("patch16", 2, 3, channels=2).receptive_field == 16
    with pytest.raises(ValueError, match="unknown kind 'patch32'"):
        build_discriminator("patch32", 2, 3)


# ----------------------------------------------------------------------------------------------------------
# generators
# ----------------------------------------------------------------------------------------------------------


def test_mask_generator_8x8x8_to_3x512x512_softmax():
    torch.manual_seed(0)
    g = NoiseToMaskGenerator().eval()
    with torch.no_grad():
        m = g(torch.randn(1, 8, 8, 8))
    assert m.shape == (1, 3, 512, 512)
    assert torch.allclose(m.sum(1), torch.ones(1, 512, 512), atol=1e-5)
    assert float(m.min()) > 0 and float(m.max()) < 1
    assert float(m.std()) > 0  # not a constant mask


def test_mask_generator_small_latent_and_3d():
    g = NoiseToMaskGenerator(latent_channels=4, channels=(8, 4))
    assert g(torch.randn(2, 4, 2, 3)).shape == (2, 3, 16, 24)  # factor 2 ** (2 + 1)
    g3 = NoiseToMaskGenerator(spatial_dims=3, latent_channels=4, out_channels=2, channels=(4,))
    m3 = g3(torch.randn(1, 4, 2, 2, 2))
    assert m3.shape == (1, 2, 8, 8, 8) and torch.allclose(m3.sum(1), torch.ones(1, 8, 8, 8), atol=1e-5)
    with pytest.raises(ValueError, match="noise of shape"):
        g(torch.randn(2, 8, 2, 2))


def test_pix2pix_unet_256_sigmoid_output():
    torch.manual_seed(0)
    net = Pix2PixUNet()  # 3 -> 1, 16 filters, num_downs = 8, sigmoid
    with torch.no_grad():
        y = net(torch.rand(1, 3, 256, 256))
    assert y.shape == (1, 1, 256, 256)
    assert float(y.min()) > 0 and float(y.max()) < 1
    # encoder widths C16-C32-C64-C128-C128..., dropout only in the three decoder blocks outside the innermost
    widths = [enc.conv.out_channels for enc in net.encoder]
    assert widths == [16, 32, 64, 128, 128, 128, 128, 128]
    with_dropout = [i for i, dec in enumerate(net.decoder) if any(isinstance(m, nn.Dropout) for m in dec.modules())]
    assert with_dropout == [4, 5, 6]


def test_pix2pix_unet_size_check_tanh_and_3d():
    net = Pix2PixUNet(channels=2, num_downs=4, out_act="tanh")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*num_downs = 16"):
        net(torch.rand(1, 3, 24, 32))
    with torch.no_grad():
        y = net(torch.rand(1, 3, 32, 16))
    assert y.shape == (1, 1, 32, 16) and float(y.abs().max()) < 1
    net3 = Pix2PixUNet(spatial_dims=3, in_channels=1, out_channels=2, channels=2, num_downs=3)
    assert net3(torch.rand(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)


# weight file sizes of the default 2D configurations
# ----------------------------------------------------------------------------------------------------------


def test_default_parameter_counts_below_25_mb(tmp_path):
    """Default 2D networks: the discriminators have exactly the documented layers, every weight file is < 25 MiB."""
    models = {
        "skip_patch(3ch)": build_discriminator("skip_patch", 2, 3),
        "patch70(3ch)": build_discriminator("patch70", 2, 3),
        "patch16(3ch)": build_discriminator("patch16", 2, 3),
        "noise_to_mask": NoiseToMaskGenerator(),
        "pix2pix_unet": Pix2PixUNet(),
    }
    expected = {
        "skip_patch(3ch)": _skip_patch_params(2, 3, 64),
        "patch70(3ch)": _patch_params(2, 3, 64, 70),
        "patch16(3ch)": _patch_params(2, 3, 64, 16),
    }
    assert expected["patch70(3ch)"] == 2_764_737  # pix2pix n_layers=3 with bias on every conv, no affine norm
    for name, m in models.items():
        n = sum(p.numel() for p in m.parameters())
        if name in expected:
            assert n == expected[name], f"{name}: {n} parameters, the documented layers give {expected[name]}"
        path = tmp_path / f"{name}.pt"
        torch.save(m.state_dict(), path)
        size_mib = path.stat().st_size / 2**20
        print(f"{name}: {n} parameters, {size_mib:.1f} MiB on disk")
        assert n * 4 / 2**20 <= size_mib < 25, name  # fp32 weights, and the file stays below the 25 MiB budget
