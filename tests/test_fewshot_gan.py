"""Unit tests of the few-shot stage-1 pieces: latent-grid generator, spectral-norm / minibatch-std discriminator,
hinge and R1, DiffAugment, the few-shot trainer with EMA, the automatic mask thresholds, area + argmax downsampling
and the periodicity / diversity metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emgan_monai.losses.fewshot import discriminator_loss, generator_loss, r1_penalty
from emgan_monai.metrics.mask_structure import (
    autocorrelation_peak,
    compare_periodicity,
    mask_diversity,
    spectral_peak_ratio,
)
from emgan_monai.networks import build_discriminator
from emgan_monai.networks.discriminators import minibatch_std
from emgan_monai.networks.mask_generator import LatentGridMaskGenerator, NoiseInjection, straight_through_onehot
from emgan_monai.transforms import MaskToOneHot
from emgan_monai.transforms.diffaugment import DiffAugment

torch.set_num_threads(1)


def _noisy_generator(**kw) -> LatentGridMaskGenerator:
    g = LatentGridMaskGenerator(latent_channels=4, channels=(8, 8, 4), **kw)
    for m in g.modules():
        if isinstance(m, NoiseInjection):
            m.weight.data.fill_(0.5)
    return g


def test_latent_grid_generator_is_fully_convolutional_and_stochastic():
    g = _noisy_generator()
    assert g.upsampling_factor == 4
    out = g(torch.randn(2, 4, 3, 5))
    assert out.shape == (2, 3, 12, 20)
    torch.testing.assert_close(out.sum(1), torch.ones(2, 12, 20))
    assert g(torch.randn(1, 4, 8, 8)).shape == (1, 3, 32, 32)  # a larger grid is a larger mask
    z = torch.randn(1, 4, 4, 4)
    torch.manual_seed(0)
    a = g(z)
    torch.manual_seed(0)
    b = g(z)
    torch.manual_seed(1)
    c = g(z)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3  # injected noise changes the sample
    with pytest.raises(ValueError):
        g(torch.randn(1, 3, 4, 4))


def test_latent_grid_generator_tanh_output_draws_distance_maps_that_decode_to_masks():
    from emgan_monai.networks.two_stage_generator import hard_mask

    g = _noisy_generator(out_channels=2, output="tanh").eval()
    maps = g(torch.randn(2, 4, 4, 4))
    assert maps.shape == (2, 2, 16, 16) and maps.min() > -1 and maps.max() < 1
    assert (maps.sum(1) - 1).abs().max() > 1e-3  # not a softmax
    mask = hard_mask(maps, min_mito_size=0)
    assert mask.shape == (2, 3, 16, 16)
    torch.testing.assert_close(mask.sum(1), torch.ones(2, 16, 16))
    # a pixel is mitochondrion where that map is positive, whatever the membrane map says
    torch.testing.assert_close(mask[:, 0], (maps[:, 0] > 0).float())
    # by default, mitochondria under MIN_MITO_SIZE px go (and nothing else becomes mitochondrion)
    from skimage.measure import label

    dropped = hard_mask(maps)[:, 0]
    assert (dropped <= mask[:, 0]).all()
    for d in dropped.numpy():
        sizes = np.bincount(label(d > 0, connectivity=2).ravel())[1:]
        assert (sizes >= 20).all(), sizes
    with pytest.raises(ValueError, match="output"):
        LatentGridMaskGenerator(output="sigmoid")
    with pytest.raises(ValueError, match="hard_mask"):
        hard_mask(torch.rand(1, 4, 8, 8))


def test_random_symmetry_draws_the_eight_symmetries_of_the_square():
    from emgan_monai.data.drosophila_synthesis import draw_masks
    from emgan_monai.networks.two_stage_generator import random_symmetry

    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(400, 1, 1, 1)
    torch.manual_seed(0)
    y = random_symmetry(x)
    variants = {tuple(v.flatten().tolist()) for v in y}
    assert len(variants) == 8  # all of the dihedral group, nothing else:
    d8 = {tuple(torch.rot90(b, k, (-2, -1)).flatten().tolist()) for k in range(4) for b in (x[0], x[0].flip(-1))}
    assert variants == d8
    with pytest.raises(ValueError, match="square"):
        random_symmetry(torch.zeros(1, 1, 4, 6))
    g = _noisy_generator(out_channels=2, output="tanh").eval()
    z = torch.randn(4, 4, 4, 4)
    torch.manual_seed(3)
    a = draw_masks(g, z)
    torch.manual_seed(3)
    b = draw_masks(g, z)
    torch.testing.assert_close(a, b)  # seeded: reproducible
    assert a.shape == (4, 3, 16, 16) and torch.all(a.sum(1) == 1)


def test_straight_through_onehot_forward_hard_backward_soft():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    soft = torch.softmax(logits, 1)
    hard = straight_through_onehot(soft)
    torch.testing.assert_close(hard.detach(), hard.detach().round(), atol=1e-6, rtol=0)
    assert set(hard.detach().round().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(hard.detach().sum(1), torch.ones(2, 4, 4))
    w = torch.randn(1, 3, 1, 1)
    (g_st,) = torch.autograd.grad((hard * w).sum(), logits)
    (g_soft,) = torch.autograd.grad((torch.softmax(logits, 1) * w).sum(), logits)
    torch.testing.assert_close(g_st, g_soft)


def test_minibatch_std_detects_identical_samples():
    x = torch.randn(1, 5, 4, 4).repeat(8, 1, 1, 1)
    y = minibatch_std(x, 4)
    assert y.shape == (8, 6, 4, 4)
    assert y[:, -1].abs().max() < 1e-3
    y2 = minibatch_std(torch.randn(8, 5, 4, 4), 4)
    assert y2[:, -1].min() > 0.3
    assert minibatch_std(torch.randn(6, 2, 3, 3), 4).shape == (6, 3, 3, 3)  # group size falls back to a divisor


def test_spectral_norm_skip_patch_discriminator():
    torch.manual_seed(0)
    d = build_discriminator("skip_patch", 2, 3, channels=4, norm=None, spectral_norm=True, minibatch_std_group=2)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for _ in range(10):  # one power iteration per training-mode call, as in training
        assert d(torch.rand(4, 3, 32, 32)).shape == (4, 1, 4, 4)
    d.eval()
    for m in convs:  # every convolution has spectral norm <= 1 (up to the power iteration's accuracy)
        w = m.weight.flatten(1)
        assert torch.linalg.matrix_norm(w, ord=2) < 1.05
    plain = build_discriminator("patch70", 2, 3, channels=4, spectral_norm=True)
    assert all(hasattr(m, "parametrizations") for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    with pytest.raises(ValueError):
        build_discriminator("patch16", 2, 3, minibatch_std_group=2)


def test_hinge_and_nonsaturating_losses():
    real, fake = torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -3.0)
    lr, lf = discriminator_loss(real, fake, "hinge")
    assert float(lr) == 0.0 and float(lf) == 0.0  # margins met: a true hinge is exactly 0
    lr, lf = discriminator_loss(torch.zeros(1, 1), torch.zeros(1, 1), "hinge")
    assert float(lr) == pytest.approx(1.0) and float(lf) == pytest.approx(1.0)
    assert float(generator_loss(torch.full((1, 1), 0.5), "hinge")) == pytest.approx(-0.5)
    lr, lf = discriminator_loss(torch.zeros(1, 1), torch.zeros(1, 1), "nonsaturating")
    assert float(lr) == pytest.approx(np.log(2)) and float(lf) == pytest.approx(np.log(2))
    with pytest.raises(ValueError):
        generator_loss(torch.zeros(1), "tanh")


def test_r1_penalty_of_a_linear_critic():
    w = torch.randn(1, 3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = (x * w).sum((1, 2, 3), keepdim=True)  # per-image score s(x) = <w, x>: gradient w
    r1 = r1_penalty(logits, x)
    assert float(r1) == pytest.approx(float((w**2).sum()), rel=1e-5)
    with pytest.raises(ValueError):
        r1_penalty(logits, torch.randn(5, 3, 4, 4))


def test_diffaugment_is_reproducible_and_differentiable():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    a = DiffAugment(seed=3)(x)
    b = DiffAugment(seed=3)(x)
    torch.testing.assert_close(a, b)
    assert a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    cut = DiffAugment(policy="cutout", cutout_ratio=0.5)(torch.ones(8, 1, 16, 16))
    zeros = (cut == 0).float().mean((1, 2, 3))
    assert torch.all(zeros >= 0.0625 - 1e-6) and torch.all(zeros <= 0.25 + 1e-6)  # clipped at the borders
    rot = DiffAugment(policy="flip_rot")(x.detach())
    torch.testing.assert_close(rot.sum((2, 3)), x.detach().sum((2, 3)))  # a symmetry keeps every pixel
    with pytest.raises(ValueError):
        DiffAugment(policy="colour")


def test_fewshot_trainer_updates_d_g_and_ema():
    from torch.optim.swa_utils import AveragedModel

    from emgan_monai.engines import AdversarialSettings, GeneratorLoss
    from emgan_monai.engines.fewshot import FewShotGANTrainer
    from emgan_monai.handlers import AveragedModelUpdate, ema_multi_avg_fn

    torch.manual_seed(0)
    real = torch.nn.functional.one_hot(torch.randint(0, 3, (8, 16, 16)), 3).movedim(-1, 1).float()
    loader = torch.utils.data.DataLoader([{"label": r} for r in real], batch_size=4)
    g = LatentGridMaskGenerator(latent_channels=4, channels=(8, 4))
    d = build_discriminator("skip_patch", 2, 3, channels=4, norm=None, spectral_norm=True, minibatch_std_group=2)
    ema = AveragedModel(g, multi_avg_fn=ema_multi_avg_fn(0.5), use_buffers=True)
    g0 = [p.detach().clone() for p in g.parameters()]
    d0 = [p.detach().clone() for p in d.parameters()]
    from emgan_monai.losses import TextureStatisticsLoss

    for with_texture in (False, True):
        texture = {"texture_loss": TextureStatisticsLoss(), "lambda_texture": 0.5} if with_texture else {}
        trainer = FewShotGANTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=loader,
            g_network=g,
            g_optimizer=torch.optim.Adam(g.parameters(), 1e-3, betas=(0.0, 0.99)),
            d_network=d,
            d_optimizer=torch.optim.Adam(d.parameters(), 1e-3, betas=(0.0, 0.99)),
            latent_shape=(4, 8, 8),
            adversarial=AdversarialSettings(loss="hinge", r1_gamma=1.0, r1_interval=2, augment=DiffAugment()),
            generator_loss=GeneratorLoss(**texture),
            train_handlers=[AveragedModelUpdate(ema)],
        )
        trainer.run()
        out = trainer.state.output
        assert np.isfinite(out["d_loss"]) and np.isfinite(out["g_loss"]) and out["r1"] > 0
        assert ("g_texture" in out) == bool(texture)
        if texture:  # g_loss is the sum of the weighted terms
            assert out["g_loss"] == pytest.approx(out["g_adv"] + 0.5 * out["g_texture"], rel=1e-4)
    assert any((p - q).abs().max() > 0 for p, q in zip(g.parameters(), g0))
    assert any((p - q).abs().max() > 0 for p, q in zip(d.parameters(), d0))
    ema_params = list(ema.module.parameters())
    assert any((p - q).abs().max() > 0 for p, q in zip(ema_params, g0))  # the EMA moved ...
    assert any((p - q).abs().max() > 1e-7 for p, q in zip(ema_params, g.parameters()))  # ... but is not G
    assert int(ema.n_averaged) == 4  # the handler updated the EMA after each of the 2 x 2 iterations
    with pytest.raises(ValueError):
        FewShotGANTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=loader,
            g_network=g,
            g_optimizer=trainer.g_optimizer,
            d_network=d,
            d_optimizer=trainer.d_optimizer,
            latent_shape=(4, 8, 8),
            adversarial=AdversarialSettings(loss="tanh_hinge"),
        )


def test_mask_to_onehot_thresholds_0_1_and_0_255_masks_alike():
    mito01 = torch.zeros(1, 4, 4)
    mito01[0, 0, 0] = 1.0
    membrane = torch.zeros(1, 4, 4, dtype=torch.bool)
    membrane[0, 1, :] = True
    a = MaskToOneHot()(mito01, membrane)
    b = MaskToOneHot()(mito01 * 255, membrane)
    torch.testing.assert_close(a, b)
    assert a[0, 0, 0] == 1 and a[1, 1].sum() == 4 and a[2].sum() == 16 - 5
    from emgan_monai.data.drosophila import build_mask

    np.testing.assert_array_equal(a.numpy(), build_mask(mito01[0].numpy(), membrane[0].numpy()))


def test_area_argmax_downsampling_keeps_thin_membranes(tmp_path):
    """A 2 px membrane line not aligned with the 4 px blocks vanishes with nearest neighbour, not with area + argmax."""
    from PIL import Image

    from emgan_monai.data.drosophila import load_sections

    root = tmp_path / "stack1"
    for sub in ("raw", "mitochondria", "membranes"):
        (root / sub).mkdir(parents=True)
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(root / "raw" / "00.tif", rng.integers(0, 255, (64, 64), dtype=np.uint8))
    membrane = np.zeros((64, 64), bool)
    membrane[[9, 10, 29, 30], :] = True  # rows 9-10 and 29-30: never row 4k (what nearest keeps at 1/4)
    Image.fromarray(membrane).save(root / "membranes" / "00.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "mitochondria" / "00.png")
    datalist = [
        {
            "image": str(root / "raw" / "00.tif"),
            "mito": str(root / "mitochondria" / "00.png"),
            "membrane": str(root / "membranes" / "00.png"),
            "section": 0,
        }
    ]
    masks, em = load_sections(datalist, 16)
    assert masks.shape == (1, 3, 16, 16) and em.shape == (1, 1, 16, 16)
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    m = masks[0, 1]
    rows = m.sum(1) if m.sum(1).max() == 16 else m.sum(0)  # MONAI's PNG reader may swap the axes
    assert rows[2] == 16 and rows[7] == 16 and rows.sum() == 32
    assert membrane[::4, ::4].sum() == 0  # nearest neighbour would have lost both lines


def _tiling(size: int = 128, period: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 3, (period, period))
    return np.tile(tile, (size // period, size // period))


def _blobs(size: int = 128, seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    labels = np.full((size, size), 2)
    labels[field > 0.05] = 1
    labels[field > 0.12] = 0
    return labels


def test_periodicity_separates_tilings_from_aperiodic_masks():
    tiled, blobs = _tiling(), _blobs()
    assert autocorrelation_peak((tiled == 1).astype(float)) > 0.95
    assert autocorrelation_peak((blobs == 1).astype(float)) < 0.5
    assert spectral_peak_ratio((tiled == 1).astype(float)) > 5 * spectral_peak_ratio((blobs == 1).astype(float))
    table = compare_periodicity([_blobs(seed=s) for s in range(3)], [_tiling(seed=0)] * 3)
    assert table["autocorr_peak"]["fake"] > table["autocorr_peak"]["real"]
    assert table["diversity"]["pixel_disagreement"]["fake"] == 0.0
    assert table["diversity"]["pixel_disagreement"]["real"] > 0.2


def _streaks(size: int = 128, seed: int = 0) -> np.ndarray:
    """Blobs stretched 8x along x: membranes running mostly in one direction."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.normal(size=(size, size)), (2, 16))
    labels = np.full((size, size), 2)
    labels[np.abs(field) < 0.01] = 1
    return labels


def test_membrane_orientation_coherence_flags_streaks():
    from emgan_monai.metrics.mask_structure import membrane_orientation_coherence

    blobs = [membrane_orientation_coherence(_blobs(seed=s)) for s in range(3)]
    streaks = [membrane_orientation_coherence(_streaks(seed=s)) for s in range(3)]
    assert max(blobs) < 0.15 and min(streaks) > 0.4, (blobs, streaks)
    assert membrane_orientation_coherence(_streaks().T) == pytest.approx(streaks[0], abs=1e-5)  # any direction
    table = compare_periodicity([_blobs(seed=s) for s in range(3)], [_streaks(seed=s) for s in range(3)])
    assert table["orientation_coherence"]["fake"] == pytest.approx(np.mean(streaks), rel=1e-5)
    assert table["orientation_coherence"]["real_max"] == pytest.approx(max(blobs), rel=1e-5)
    assert table["orientation_coherence"]["fake_above_real_max"] == 1.0  # every streak image above every blob image
    assert table["orientation_coherence"]["expected_above_real_max"] == pytest.approx(0.25)  # 1 / (3 real + 1)


def test_mask_diversity_counts():
    div = mask_diversity([_blobs(seed=s) for s in range(4)])
    assert div["min_pixel_disagreement"] > 0.1 and div["n_mitochondria_std"] >= 0
    with pytest.raises(ValueError):
        mask_diversity([_blobs()])


def test_ema_multi_avg_fn_warms_up_and_copies_counters():
    from emgan_monai.handlers import ema_multi_avg_fn

    fn = ema_multi_avg_fn(0.99)
    ema, cur = [torch.zeros(3), torch.tensor(0)], [torch.ones(3), torch.tensor(7)]
    fn(ema, cur, 0)  # first update: decay min(0.99, 1 / 10) = 0.1
    torch.testing.assert_close(ema[0], torch.full((3,), 0.9))
    assert int(ema[1]) == 7
    ema2 = [torch.zeros(3)]
    ema_multi_avg_fn(0.99, warmup=False)(ema2, [torch.ones(3)], 0)
    torch.testing.assert_close(ema2[0], torch.full((3,), 0.01))
    with pytest.raises(ValueError):
        ema_multi_avg_fn(1.0)


def test_latent_grid_generator_has_no_border_cue():
    """With circular padding, shifting the latent grid by one cell shifts the mask by one cell (no border position)."""
    g = LatentGridMaskGenerator(latent_channels=4, channels=(8, 8, 4)).eval()
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        a, b = g(z), g(torch.roll(z, 1, dims=3))
    err = (torch.roll(a, 4, dims=3) - b).abs().max()
    g0 = LatentGridMaskGenerator(latent_channels=4, channels=(8, 8, 4), padding_mode="zeros").eval()
    g0.load_state_dict(g.state_dict())
    with torch.no_grad():
        a0, b0 = g0(z), g0(torch.roll(z, 1, dims=3))
    err0 = (torch.roll(a0, 4, dims=3) - b0).abs().max()
    assert err < 5e-3 and err0 > 3 * err  # zero padding tells the border apart


def test_recalibrate_batchnorm_matches_the_batch_statistics():
    from emgan_monai.networks.mask_generator import recalibrate_batchnorm

    g = LatentGridMaskGenerator(latent_channels=4, channels=(8, 4))
    bn = next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(5.0)  # stale statistics, as an EMA of another network's would be
    state = torch.random.get_rng_state()
    recalibrate_batchnorm(g, (4, 4, 4), batches=8, batch_size=4)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's random state is untouched
    assert not g.training and bn.momentum == 0.1
    assert bn.running_mean.abs().max() < 2.0
    feats = []
    hook = bn.register_forward_hook(lambda m, i, o: feats.append(i[0]))
    g.train()
    with torch.no_grad():
        g(torch.randn(64, 4, 4, 4))
    hook.remove()
    torch.testing.assert_close(bn.running_mean, feats[0].mean((0, 2, 3)), atol=0.15, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# stage 2: stochastic mask -> EM generator and the paired few-shot trainer
# ---------------------------------------------------------------------------------------------------------------------
def _noise_unet(noise: bool = True):
    from emgan_monai.networks import NoiseUNet

    net = NoiseUNet(channels=(4, 8, 8), noise=noise)
    for m in net.modules():
        if isinstance(m, NoiseInjection):
            m.weight.data.fill_(0.5)
    return net


def test_noise_unet_shapes_stochasticity_and_errors():
    net = _noise_unet().eval()
    assert net.size_multiple == 4
    mask = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 16, 24)), 3).movedim(-1, 1).float()
    with torch.no_grad():
        torch.manual_seed(0)
        a = net(mask)
        torch.manual_seed(0)
        b = net(mask)
        c = net(mask)
    assert a.shape == (2, 1, 16, 24) and 0 < a.min() and a.max() < 1
    torch.testing.assert_close(a, b)  # same seed, same sample ...
    assert (a - c).abs().mean() > 1e-3  # ... a new draw in eval mode too: texture the mask does not fix
    det = _noise_unet(noise=False).eval()
    assert not any(isinstance(m, NoiseInjection) for m in det.modules())
    torch.testing.assert_close(det(mask), det(mask))
    # no transposed convolutions (their uneven overlap paints a checkerboard)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.rand(1, 3, 18, 16))
    with pytest.raises(ValueError, match="expected"):
        net(torch.rand(1, 2, 16, 16))


def test_noise_unet_antialias_same_weights_closer_to_shift_equivariant():
    from emgan_monai.networks import NoiseUNet

    torch.manual_seed(0)
    plain = NoiseUNet(channels=(8, 16, 16, 16), noise=False, norm=None)
    smooth = NoiseUNet(channels=(8, 16, 16, 16), noise=False, norm=None, antialias=True)
    assert smooth.state_dict().keys() == plain.state_dict().keys()  # no new parameters or buffers in the weights
    smooth.load_state_dict(plain.state_dict())
    x = torch.rand(4, 3, 64, 64)

    def shift_error(net, s):
        """Mean |G(shift x) - shift G(x)| away from the borders, in units of the output's sd."""
        with torch.no_grad():
            y, ys = net(x), net(torch.roll(x, s, dims=-1))
        inner = (..., slice(16, -16), slice(16, -16))
        return float((torch.roll(y, s, dims=-1) - ys)[inner].abs().mean() / y[inner].std())

    # a 1 px shift moves the input off the 8 px grid of 3 stride-2 levels: plain resampling aliases, the low-pass
    # before each stride-2 convolution and the bilinear upsampling almost do not (measured: ~10x less)
    for s in (1, 3):
        assert shift_error(smooth, s) < 0.25 * shift_error(plain, s)
    with torch.no_grad():
        assert not torch.allclose(smooth(x), plain(x))  # the option changes the function, not just a flag
    vol = NoiseUNet(spatial_dims=3, channels=(4, 8), antialias=True)
    assert vol.mode == "trilinear" and vol(torch.rand(1, 3, 8, 8, 8)).shape == (1, 1, 8, 8, 8)
    scripted = torch.jit.script(smooth)  # TorchScript export (ckpt_export, the zoo verifier) still works
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), smooth(x))


def test_noise_unet_border_pad_draws_the_edge_as_interior():
    from emgan_monai.networks import NoiseUNet

    torch.manual_seed(0)
    net = NoiseUNet(channels=(4, 8, 8), noise=False, norm=None, antialias=True).eval()
    padded = NoiseUNet(channels=(4, 8, 8), noise=False, norm=None, antialias=True, border_pad=8).eval()
    padded.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        y = padded(x)
        # the same as translating the reflection-padded input and cropping: the edge pixels get context
        ref = net(torch.nn.functional.pad(x, [8, 8, 8, 8], mode="reflect"))[..., 8:-8, 8:-8]
        torch.testing.assert_close(y, ref)
        assert not torch.allclose(y[..., :4, :], net(x)[..., :4, :])  # the edge changes ...
        # ... the middle, more than the receptive field's reach from the edge in both, barely
        assert (y - net(x))[..., 14:18, 18:22].abs().max() < 0.05 * (y.max() - y.min())
        torch.testing.assert_close(torch.jit.script(padded)(x), y)
        # sizes whose padded size is not a multiple of 4 are padded a little more, and cropped back exactly
        assert NoiseUNet(channels=(4, 8, 8), border_pad=3)(torch.rand(1, 3, 16, 20)).shape == (1, 1, 16, 20)
    with pytest.raises(ValueError, match="border_pad must be >= 0"):
        NoiseUNet(border_pad=-1)
    # an input smaller than the pad is padded as far as a reflection reaches
    assert NoiseUNet(channels=(4, 8), border_pad=16)(torch.rand(1, 3, 8, 8)).shape == (1, 1, 8, 8)


def test_paired_fewshot_trainer_updates_d_g_ema_and_keeps_condition_aligned():
    from torch.optim.swa_utils import AveragedModel

    from emgan_monai.engines import AdversarialSettings, GeneratorLoss
    from emgan_monai.engines.fewshot import PairedFewShotGANTrainer
    from emgan_monai.handlers import AveragedModelUpdate, ema_multi_avg_fn
    from emgan_monai.losses import LowPassCycleLoss, RadialSpectrumLoss

    torch.manual_seed(0)
    mask = torch.nn.functional.one_hot(torch.randint(0, 3, (8, 16, 16)), 3).movedim(-1, 1).float()
    em = torch.rand(8, 1, 16, 16)
    loader = torch.utils.data.DataLoader([{"image": m, "label": e} for m, e in zip(mask, em)], batch_size=4)
    g = _noise_unet()
    d = build_discriminator("skip_patch", 2, 4, channels=4, norm=None, spectral_norm=True)
    seen: list[torch.Tensor] = []

    class Recording(DiffAugment):
        def forward(self, x):
            seen.append(x.detach().clone())
            return super().forward(x)

    ema = AveragedModel(g, multi_avg_fn=ema_multi_avg_fn(0.5), use_buffers=True)
    g0 = [p.detach().clone() for p in g.parameters()]
    d0 = [p.detach().clone() for p in d.parameters()]
    trainer = PairedFewShotGANTrainer(
        device="cpu", max_epochs=1, train_data_loader=loader, g_network=g,
        g_optimizer=torch.optim.Adam(g.parameters(), 1e-3, betas=(0.0, 0.99)), d_network=d,
        d_optimizer=torch.optim.Adam(d.parameters(), 1e-3, betas=(0.0, 0.99)),
        adversarial=AdversarialSettings(loss="hinge", r1_gamma=1.0, r1_interval=1, augment=Recording()),
        generator_loss=GeneratorLoss(lambda_pixel=5.0, pixel_loss=LowPassCycleLoss(sigma=1.0, spatial_dims=2),
                                     texture_loss=RadialSpectrumLoss(n_bins=4), lambda_texture=0.5),
        train_handlers=[AveragedModelUpdate(ema)],
    )  # fmt: skip
    trainer.run()
    out = trainer.state.output
    assert {"g_adv", "g_pixel", "g_texture", "d_real", "d_fake", "r1"} <= set(out) and out["r1"] > 0
    total = out["g_adv"] + 5.0 * out["g_pixel"] + 0.5 * out["g_texture"]
    assert np.isfinite(out["g_loss"]) and abs(out["g_loss"] - total) < 1e-4 and out["g_texture"] > 0
    # the discriminator judges cat(mask, EM): 4 channels, the condition first, the real EM of the same pair
    assert all(x.shape[1] == 4 for x in seen)
    torch.testing.assert_close(seen[0][:, :3], mask[:4])
    torch.testing.assert_close(seen[0][:, 3:], em[:4])
    assert any((p - q).abs().max() > 0 for p, q in zip(g.parameters(), g0))
    assert any((p - q).abs().max() > 0 for p, q in zip(d.parameters(), d0))
    assert int(ema.n_averaged) == 2
    assert any((p - q).abs().max() > 1e-7 for p, q in zip(ema.module.parameters(), g.parameters()))
    # DiffAugment's own generator is checkpointed with the trainer's random state (bit-exact resume)
    saved = trainer.rng.state_dict()
    first = trainer.augment(torch.rand(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)))
    trainer.augment(first)  # advance it
    trainer.rng.load_state_dict(saved)
    again = trainer.augment(torch.rand(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(first, again)
    with pytest.raises(ValueError, match="loss must be one of"):
        PairedFewShotGANTrainer(
            device="cpu",
            max_epochs=1,
            train_data_loader=loader,
            g_network=g,
            g_optimizer=trainer.g_optimizer,
            d_network=d,
            d_optimizer=trainer.d_optimizer,
            adversarial=AdversarialSettings(loss="bce"),
        )
    with pytest.raises(ValueError, match="texture_loss"):
        GeneratorLoss(lambda_texture=1.0)


def _paired_fewshot_parts():
    """Four one-hot 16-px masks with random EM, a tiny NoiseUNet and skip-patch discriminator, their optimisers."""
    torch.manual_seed(0)
    mask = torch.nn.functional.one_hot(torch.randint(0, 3, (4, 16, 16)), 3).movedim(-1, 1).float()
    loader = torch.utils.data.DataLoader([{"image": m, "label": torch.rand(1, 16, 16)} for m in mask], batch_size=4)
    g = _noise_unet()
    d = build_discriminator("skip_patch", 2, 4, channels=4, norm=None, spectral_norm=True)
    opts = {
        "g_optimizer": torch.optim.Adam(g.parameters(), 1e-3),
        "d_optimizer": torch.optim.Adam(d.parameters(), 1e-3),
    }
    return mask, loader, g, d, opts


def test_paired_fewshot_trainer_equivariance_term_and_its_refusal_elsewhere():
    from emgan_monai.engines import GeneratorLoss
    from emgan_monai.engines.fewshot import FewShotGANTrainer, PairedFewShotGANTrainer
    from emgan_monai.engines.paired import PairedGANTrainer
    from emgan_monai.losses import EquivarianceLoss

    mask, loader, g, d, opts = _paired_fewshot_parts()
    ks: list[int] = []
    offsets: list[tuple[int, int]] = []

    class Recording(EquivarianceLoss):
        def forward(self, generator, x, y, k, offset=(0, 0)):
            ks.append(k)
            offsets.append(offset)
            return super().forward(generator, x, y, k, offset)

    weights = GeneratorLoss(lambda_pixel=1.0, equivariance_loss=Recording(sigma=1.0), lambda_equivariance=3.0)
    trainer = PairedFewShotGANTrainer(
        device="cpu", max_epochs=3, train_data_loader=loader, g_network=g, d_network=d, generator_loss=weights, **opts
    )
    trainer.run()
    out = trainer.state.output
    assert out["g_equivariance"] > 0
    total = out["g_adv"] + out["g_pixel"] + 3.0 * out["g_equivariance"]
    assert abs(out["g_loss"] - total) < 1e-4
    assert len(ks) == 3 and all(1 <= k <= 7 for k in ks)  # one symmetry per iteration, never the identity
    assert len(set(offsets)) == 3 and all(0 <= o < 256 for off in offsets for o in off)  # a new offset each time
    with pytest.raises(ValueError, match="equivariance_loss"):
        GeneratorLoss(lambda_equivariance=1.0)
    for cls, extra in ((PairedGANTrainer, {}), (FewShotGANTrainer, {"latent_shape": (4, 4, 4)})):
        with pytest.raises(ValueError, match="does not implement .*equivariance"):
            cls(device="cpu", max_epochs=1, train_data_loader=loader, g_network=g, d_network=d,
                generator_loss=weights, **opts, **extra)  # fmt: skip


def test_paired_fewshot_trainer_profile_term_and_its_refusal_elsewhere():
    from emgan_monai.engines import GeneratorLoss
    from emgan_monai.engines.fewshot import PairedFewShotGANTrainer
    from emgan_monai.engines.paired import PairedGANTrainer
    from emgan_monai.losses import BoundaryProfileLoss

    mask, loader, g, d, opts = _paired_fewshot_parts()
    masks_seen: list[torch.Tensor] = []

    class Recording(BoundaryProfileLoss):
        def forward(self, pred, target, m):
            masks_seen.append(m)
            return super().forward(pred, target, m)

    weights = GeneratorLoss(lambda_pixel=1.0, profile_loss=Recording(max_distance=2), lambda_profile=2.0)
    trainer = PairedFewShotGANTrainer(
        device="cpu", max_epochs=2, train_data_loader=loader, g_network=g, d_network=d, generator_loss=weights, **opts
    )
    trainer.run()
    out = trainer.state.output
    assert out["g_profile"] > 0 and abs(out["g_loss"] - (out["g_adv"] + out["g_pixel"] + 2.0 * out["g_profile"])) < 1e-4
    assert len(masks_seen) == 2 and torch.equal(masks_seen[0], mask)  # the profile is taken around the input mask
    with pytest.raises(ValueError, match="profile_loss"):
        GeneratorLoss(lambda_profile=1.0)
    with pytest.raises(ValueError, match="does not implement .*profile"):
        PairedGANTrainer(device="cpu", max_epochs=1, train_data_loader=loader, g_network=g, d_network=d,
                         generator_loss=weights, **opts)  # fmt: skip


def test_paired_fewshot_trainer_diversity_term_and_its_refusal_elsewhere():
    from emgan_monai.engines import GeneratorLoss
    from emgan_monai.engines.fewshot import PairedFewShotGANTrainer
    from emgan_monai.engines.paired import PairedGANTrainer
    from emgan_monai.losses import DiversityLoss

    mask, loader, g, d, opts = _paired_fewshot_parts()
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    class Recording(DiversityLoss):
        def forward(self, generator, x, y):
            seen.append((x, y, generator(x)))
            return super().forward(generator, x, y)

    weights = GeneratorLoss(lambda_pixel=1.0, diversity_loss=Recording(sigma=1.0, target=10.0), lambda_diversity=2.0)
    trainer = PairedFewShotGANTrainer(
        device="cpu", max_epochs=2, train_data_loader=loader, g_network=g, d_network=d, generator_loss=weights, **opts
    )
    trainer.run()
    out = trainer.state.output
    # a target no generator reaches: the term is on and in the sum with its weight
    assert 0 < out["g_diversity"] <= 1
    assert abs(out["g_loss"] - (out["g_adv"] + out["g_pixel"] + 2.0 * out["g_diversity"])) < 1e-4
    x, y, second = seen[0]
    assert len(seen) == 2 and torch.equal(x, mask)  # the second draw sees the same, untransformed mask
    assert y.requires_grad and not torch.equal(y, second)  # the trained output and a new noise draw
    with pytest.raises(ValueError, match="diversity_loss"):
        GeneratorLoss(lambda_diversity=1.0)
    with pytest.raises(ValueError, match="does not implement .*diversity"):
        PairedGANTrainer(device="cpu", max_epochs=1, train_data_loader=loader, g_network=g, d_network=d,
                         generator_loss=weights, **opts)  # fmt: skip


def test_averaged_model_state_is_the_networks_state_dict():
    from torch.optim.swa_utils import AveragedModel

    from emgan_monai.handlers import averaged_model_state, ema_multi_avg_fn

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    ema = AveragedModel(net, multi_avg_fn=ema_multi_avg_fn(0.9), use_buffers=True)
    state = averaged_model_state(ema.state_dict())
    assert state.keys() == net.state_dict().keys()  # n_averaged dropped, prefix gone
    fresh = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh[0].weight, net[0].weight)
    with pytest.raises(ValueError, match="AveragedModel"):
        averaged_model_state(net.state_dict())
