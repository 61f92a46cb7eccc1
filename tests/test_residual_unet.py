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
        spatial_dims=3, in_channels=2, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=1,
        global_residual=False,
    )
    assert net(torch.randn(1, 2, 8, 16, 16)).shape == (1, 3, 8, 16, 16)


def test_global_residual_adds_input() -> None:
    torch.manual_seed(0)
    net = ResidualUNetGenerator(channels=(4, 8, 16), strides=(2, 2)).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        body = net.body(x)
        torch.testing.assert_close(net(x), x + body)
        plain = ResidualUNetGenerator(channels=(4, 8, 16), strides=(2, 2), global_residual=False).eval()
        plain.load_state_dict(net.state_dict())
        torch.testing.assert_close(plain(x), body)


def test_output_is_unbounded() -> None:
    net = ResidualUNetGenerator(channels=(4, 8), strides=(2,)).eval()
    with torch.no_grad():
        y = net(10.0 * torch.ones(1, 1, 8, 8))
    assert y.max() > 1.0


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
