"""Tests for emgan_monai.networks.residual_unet.ResidualUNetGenerator."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import ResidualUnit

from emgan_monai.networks.residual_unet import ResidualUNetGenerator


def test_2d_shape_and_residual_units() -> None:
    net = ResidualUNetGenerator(spatial_dims=2, channels=(8, 16, 32, 64), strides=(2, 2, 2))
    x = torch.randn(2, 1, 64, 48)
    y = net(x)
    assert y.shape == x.shape
    assert any(isinstance(m, ResidualUnit) for m in net.modules())
    y.mean().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_3d_multichannel_without_global_residual() -> None:
    net = ResidualUNetGenerator(
        spatial_dims=3,
        in_channels=2,
        out_channels=3,
        channels=(4, 8),
        strides=(2,),
        num_res_units=1,
        global_residual=False,
    )
    assert net(torch.randn(1, 2, 8, 16, 16)).shape == (1, 3, 8, 16, 16)


def _constant_body(net: ResidualUNetGenerator, value: float) -> ResidualUNetGenerator:
    """Zero the weights of the body's last (transposed) convolution and set its bias: the body outputs ``value``."""
    last = [m for m in net.body.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)
    return net.eval()


def test_global_residual_adds_input() -> None:
    """With a body that outputs a known constant, the network returns ``input + constant`` (or the constant)."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    kw = dict(channels=(4, 8, 16), strides=(2, 2), num_res_units=0)
    with torch.no_grad():
        identity = _constant_body(ResidualUNetGenerator(**kw), 0.0)
        torch.testing.assert_close(identity(x), x, rtol=0, atol=0)  # zero correction: exactly the input
        shifted = _constant_body(ResidualUNetGenerator(**kw), 0.25)
        torch.testing.assert_close(shifted(x), x + 0.25)
        plain = _constant_body(ResidualUNetGenerator(**kw, global_residual=False), 0.25)
        torch.testing.assert_close(plain(x), torch.full_like(x, 0.25))
        # same trained weights with and without the global skip differ by exactly the input
        torch.manual_seed(1)
        net = ResidualUNetGenerator(channels=(4, 8, 16), strides=(2, 2)).eval()
        other = ResidualUNetGenerator(channels=(4, 8, 16), strides=(2, 2), global_residual=False).eval()
        other.load_state_dict(net.state_dict())
        torch.testing.assert_close(net(x) - other(x), x)


@pytest.mark.parametrize("value", [-7.0, 5.0])
def test_output_is_unbounded(value: float) -> None:
    """No final sigmoid/tanh/clamp: a body whose last layer emits ``value`` gives exactly ``value``."""
    net = _constant_body(
        ResidualUNetGenerator(channels=(4, 8), strides=(2,), num_res_units=0, global_residual=False), value
    )
    with torch.no_grad():
        y = net(torch.rand(1, 1, 8, 8))
    torch.testing.assert_close(y, torch.full_like(y, value))


def test_divisibility_error() -> None:
    net = ResidualUNetGenerator(channels=(4, 8, 16, 32), strides=(2, 2, 2))
    with pytest.raises(ValueError, match="divisible by prod\\(strides\\) = 8"):
        net(torch.randn(1, 1, 60, 64))
    with pytest.raises(ValueError, match="4D tensor"):
        net(torch.randn(1, 64, 64))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_channels=1, out_channels=2), "global_residual"),
        (dict(channels=(4, 8, 16), strides=(2,)), "strides"),
        (dict(spatial_dims=1), "spatial_dims"),
        (dict(channels=(4,), strides=()), "two levels"),
    ],
)
def test_constructor_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ResidualUNetGenerator(**kwargs)
