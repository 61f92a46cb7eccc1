"""Tests of emgan_monai.networks.cyclegan3d (generator, spectral-norm critic, classifier, MC dropout)."""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from emgan_monai.networks.cyclegan3d import CycleGANGenerator, SpectralNormCritic, SubtomogramClassifier, mc_dropout

SMALL = dict(channels=4, n_res_blocks=2)


def test_generator_shape_range_and_noise():
    torch.manual_seed(0)
    gen = CycleGANGenerator(spatial_dims=3, **SMALL).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.manual_seed(1)
        y1 = gen(x)
        torch.manual_seed(2)
        y2 = gen(x)
        torch.manual_seed(1)
        y1_again = gen(x)
    assert y1.shape == (1, 1, 32, 32, 32)
    assert y1.min() > -1 and y1.max() < 1
    assert not torch.allclose(y1, y2)  # different noise seeds -> different outputs
    torch.testing.assert_close(y1, y1_again)  # respects torch.manual_seed
    noise = torch.zeros(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(gen(x, noise=noise), gen(x, noise=noise))


def test_generator_default_layout_and_2d():
    gen = CycleGANGenerator()
    assert len(gen.res_blocks) == 6
    first_up = gen.decoder[0].conv
    assert first_up.in_channels == 129 and first_up.out_channels == 64
    assert gen.encoder[0].conv.kernel_size == (7, 7, 7) and gen.encoder[2].conv.out_channels == 128
    gen2d = CycleGANGenerator(spatial_dims=2, out_channels=2, noise_channels=0, **SMALL)
    assert gen2d(torch.randn(2, 1, 16, 24)).shape == (2, 2, 16, 24)
    with pytest.raises(ValueError, match="divisible by 4"):
        gen2d(torch.randn(1, 1, 18, 16))
    with pytest.raises(ValueError, match="spatial_dims"):
        CycleGANGenerator(spatial_dims=1)


def test_mc_dropout():
    x = torch.randn(1, 1, 16, 16, 16)
    fixed = torch.zeros(1, 1, 4, 4, 4)
    with_dropout = CycleGANGenerator(dropout=0.5, **SMALL)
    with_dropout.train()
    mean, std = mc_dropout(with_dropout, x, k=5, noise=fixed)
    assert mean.shape == std.shape == (1, 1, 16, 16, 16)
    assert std.max() > 0
    assert with_dropout.training and with_dropout.dropout.training  # modes restored
    without = CycleGANGenerator(dropout=0.0, **SMALL)
    _, std0 = mc_dropout(without, x, k=5, noise=fixed)
    assert torch.all(std0 == 0)
    # the noise injection alone also gives spread when noise is not fixed
    _, std_noise = mc_dropout(without, x, k=5)
    assert std_noise.max() > 0


def test_mc_dropout_keeps_norm_in_eval():
    net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    net.train()
    net(torch.randn(8, 4))  # update running stats
    seen = []
    net[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    mc_dropout(net, torch.randn(3, 4), k=3)
    assert seen == [False, False, False]
    assert net.training


def test_critic_spectral_norm_everywhere():
    critic = SpectralNormCritic(spatial_dims=3, channels=(4, 8, 16))
    convs = [m for m in critic.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    assert len(convs) == 4
    for conv in convs:
        assert parametrize.is_parametrized(conv, "weight")
        assert type(conv.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    out = critic(torch.randn(2, 1, 32, 32, 32))
    assert out.shape == (2, 1, 3, 3, 3)
    assert not any(isinstance(m, nn.Sigmoid) for m in critic.modules())
    # no normalisation layers by default (they would void the Lipschitz bound and hide the global amplitude)
    norms = (nn.InstanceNorm3d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)
    assert not any(isinstance(m, norms) for m in critic.modules())
    with_norm = SpectralNormCritic(spatial_dims=3, channels=(4, 8, 16), norm="INSTANCE")
    assert any(isinstance(m, nn.InstanceNorm3d) for m in with_norm.net[1].modules())
    plain = SpectralNormCritic(spatial_dims=3, channels=(4, 8, 16), spectral_norm=False)
    assert not any(parametrize.is_parametrized(m) for m in plain.modules())
    critic2d = SpectralNormCritic(spatial_dims=2, channels=(4, 8))
    assert critic2d(torch.randn(1, 1, 32, 32)).shape == (1, 1, 7, 7)


def test_classifier_features():
    clf = SubtomogramClassifier(spatial_dims=3, num_classes=9, channels=(4, 8, 16), strides=(2, 2, 2)).eval()
    x = torch.randn(2, 1, 32, 32, 32)
    assert clf(x).shape == (2, 9)
    assert clf.features(x).shape == (2, 16) == (2, clf.num_features)
    assert clf.features(torch.randn(1, 1, 24, 24, 24)).shape == (1, 16)


def test_critic_layers_have_unit_spectral_norm():
    """After the power iterations have run (training-mode forwards), each critic convolution's weight, reshaped to
    (out, in * k^3), has largest singular value about 1."""
    torch.manual_seed(0)
    critic = SpectralNormCritic(spatial_dims=3, channels=(4, 8, 16)).train()
    for _ in range(30):
        critic(torch.randn(1, 1, 32, 32, 32))
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv3d)]
    for conv in convs:
        w = conv.weight.detach().reshape(conv.weight.shape[0], -1)
        sigma = torch.linalg.matrix_norm(w, ord=2).item()
        assert abs(sigma - 1.0) < 0.05, sigma


def test_critic_output_scales_with_input_amplitude():
    """Without instance norm a critic can see the global amplitude (contrast) of its input."""
    torch.manual_seed(0)
    critic = SpectralNormCritic(spatial_dims=3, channels=(4, 8)).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    assert not torch.allclose(critic(x), critic(3 * x))


def test_generator_noise_at_every_decoder_scale_and_input_noise():
    torch.manual_seed(0)
    gen = CycleGANGenerator(spatial_dims=3, decoder_noise=True, input_noise_std=0.2, **SMALL).eval()
    x = torch.zeros(2, 1, 16, 16, 16)
    shapes = gen.noise_shapes(x)
    assert shapes == [(2, 1, 4, 4, 4), (2, 1, 8, 8, 8), (2, 1, 16, 16, 16), (2, 1, 16, 16, 16)]
    assert gen.decoder[1].conv.in_channels == 2 * SMALL["channels"] + 1
    noise = gen.sample_noise(x)
    with torch.no_grad():
        torch.testing.assert_close(gen(x, noise=noise), gen(x, noise=noise))
        # each noise tensor changes the output
        base = gen(x, noise=noise)
        for i in range(len(noise)):
            other = [n.clone() for n in noise]
            other[i] = torch.randn_like(other[i])
            assert not torch.allclose(gen(x, noise=other), base), i
    with pytest.raises(ValueError, match="noise must be"):
        gen(x, noise=noise[:2])
