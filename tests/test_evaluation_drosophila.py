"""Tests of :mod:`emgan_monai.evaluation.drosophila` pieces that need no trained bundle: stage-2 draws, the texture
table, the sets of the classifier two-sample table and the downstream segmenters (the end-to-end ``evaluate.json``
run is in ``test_bundle_drosophila.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

from emgan_monai.evaluation.drosophila import (
    C2ST_SETS,
    TEXTURE_SETS,
    downstream_segmentation,
    evaluate_texture,
    heldout_draws_set,
    metrics_markdown,
    stage2_draws,
    two_sample_sets,
)
from emgan_monai.metrics.two_sample import two_sample_table

GREY = torch.tensor([0.3, 0.2, 0.6])  # mito, membrane, background


def _grain(noise: np.ndarray) -> np.ndarray:
    """The EM grain of these tests: white noise ``(N, 1, H, W)`` smoothed by a Gaussian of sigma 0.7 px."""
    return gaussian_filter(noise, sigma=(0, 0, 0.7, 0.7))


class _Painter(nn.Module):
    """``(B, 3, H, W)`` masks -> class grey levels ``(B, 1, H, W)``, plus grain of global-RNG noise of sd ``noise``."""

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__()
        self.noise = noise

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        x = (m * GREY[None, :, None, None]).sum(1, keepdim=True)
        return x + torch.from_numpy(_grain(self.noise * torch.randn_like(x).numpy())) if self.noise else x


def _masks(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 3, 3))
    labels = np.digitize(field, np.quantile(field, [0.1, 0.3]))  # 10 % mito, 20 % membrane, background
    return torch.nn.functional.one_hot(torch.from_numpy(labels), 3).movedim(-1, 1).float()


def _em(masks: torch.Tensor, seed: int) -> torch.Tensor:
    """Grey levels of the classes with a fine grain (:func:`_grain` of noise of sd 0.12), in [0, 1]."""
    grain = _grain(np.random.default_rng(seed).normal(0, 0.12, (len(masks), 1, *masks.shape[2:])))
    return (_Painter()(masks) + torch.from_numpy(grain).float()).clamp(0, 1)


def test_stage2_draws_are_seeded_and_differ_only_for_a_stochastic_generator():
    masks = _masks(3)
    state = torch.random.get_rng_state()
    noisy = stage2_draws(_Painter(0.1), masks, n_draws=3, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is left alone
    assert noisy.shape == (3, 3, 1, 64, 64) and 0 <= noisy.min() and noisy.max() <= 1
    assert not torch.equal(noisy[0], noisy[1])
    torch.testing.assert_close(stage2_draws(_Painter(0.1), masks, n_draws=3, seed=5), noisy, rtol=0, atol=0)
    plain = stage2_draws(_Painter(), masks, n_draws=2)
    assert torch.equal(plain[0], plain[1])


def test_texture_table_orders_the_baselines():
    tr_masks, va_masks = _masks(6, seed=1), _masks(3, seed=2)
    tr_em, va_em = _em(tr_masks, 3), _em(va_masks, 4)
    deterministic = stage2_draws(_Painter(), va_masks, n_draws=2)
    table = evaluate_texture(
        tr_masks, tr_em, va_masks, va_em, deterministic, _em(_masks(4, seed=5), 6), tile=32, stride=8
    )
    rows = table["sets"]
    assert tuple(rows) == TEXTURE_SETS
    for row in rows.values():
        assert math.isfinite(row["texture_frechet"]) and math.isfinite(row["hf_power_ratio"])
    assert rows["real_train"]["n_tiles"] == 6 * 25 and table["n_heldout_tiles"] == 3 * 25
    assert rows["generated_from_heldout_masks"]["n_tiles"] == 2 * 3 * 25  # every draw counts
    # class means measured on the training sections (the grain averages out)
    np.testing.assert_allclose(list(table["class_means"].values()), GREY.numpy(), atol=0.02)
    # real vs real is the closest; blur and noise move the high-frequency power the right way
    others = [
        rows[k]["texture_frechet"] for k in TEXTURE_SETS if k not in ("real_train", "generated_from_generated_masks")
    ]
    assert rows["real_train"]["texture_frechet"] < min(others)
    assert rows["blurred_real"]["hf_power_ratio"] < 0.5 < 1.5 < rows["noisy_real"]["hf_power_ratio"]
    assert table["draw_diversity"] == 0.0
    assert (
        table["ratios"]["generated_over_real_train"]
        == rows["generated_from_heldout_masks"]["texture_frechet"] / rows["real_train"]["texture_frechet"]
    )
    # a generator that adds the right grain comes closer to the real texture than the painter
    grainy = stage2_draws(_Painter(0.12), va_masks, n_draws=2)
    table2 = evaluate_texture(tr_masks, tr_em, va_masks, va_em, grainy, _em(_masks(4, seed=5), 6), tile=32, stride=8)
    assert table2["draw_diversity"] > 0.01
    assert table2["ratios"]["generated_over_painted_masks"] < table["ratios"]["generated_over_painted_masks"]
    markdown = metrics_markdown_section(table)
    assert "| painted_masks |" in markdown and "32-px tiles" in markdown


def metrics_markdown_section(table: dict, **headline) -> str:
    """The texture part of :func:`metrics_markdown` of a texture table (the other sections need a full evaluation),
    or its headline part when ``headline`` gives ``c2st`` or ``downstream_segmentation``."""
    text = metrics_markdown(
        {
            "stage1_morphology": {},
            "stage2_quality_heldout": {k: 0.0 for k in ("ssim", "psnr", "mse", "nrmse")},
            "stage2_fcn_score": {},
            "stage2_feature_distances": {
                k: 0.0 for k in ("frechet", "kernel_mean", "kernel_std", "kernel_real_train_vs_heldout")
            },
            "stage2_texture": table,
            **headline,
        }
    )
    return text[: text.index("## Stage 1")] if headline else text[text.index("## Stage 2: texture") :]


def _sections(n_train: int = 4, n_val: int = 2, size: int = 64) -> tuple[tuple, tuple]:
    tr_masks, va_masks = _masks(n_train, size, seed=1), _masks(n_val, size, seed=2)
    return (tr_masks, _em(tr_masks, 3)), (va_masks, _em(va_masks, 4))


def test_two_sample_sets_keep_the_held_out_sections_out_of_training():
    train, val = _sections()
    draws = stage2_draws(_Painter(0.1), val[0], n_draws=4)
    generated = _em(_masks(6, seed=5), 6)
    sets = two_sample_sets(train, val, draws, generated, seed=0)
    assert tuple(sets) == C2ST_SETS
    tr_em, va_em = train[1], val[1]
    floor = sets["real_vs_real"]  # first half of the sections against the second half
    for got, want in zip(floor, (tr_em[:2], tr_em[2:], va_em[:1], va_em[1:])):
        assert torch.equal(got, want)
    for name, row in sets.items():
        assert all(x.ndim == 4 and x.shape[1:] == (1, 64, 64) and x.dtype == torch.float32 for x in row)
        for image in torch.cat(row[:2]):  # no held-out section trains the judge
            assert not any(torch.equal(image, v) for v in va_em), name
    # the mask-conditioned rows: half of the draws of the held-out masks train the judge, the other half test it
    assert torch.equal(sets["generated_from_heldout_masks"][1], draws[:2].flatten(0, 1))
    assert torch.equal(sets["generated_from_heldout_masks"][3], draws[2:].flatten(0, 1))
    assert len(sets["naive_painting"][1]) == len(sets["patch_synthesis"][3]) == 4
    assert np.isin(sets["patch_synthesis"][1].numpy(), tr_em.numpy()).all()  # copied training texture
    assert torch.equal(sets["generated_noise_mask_em"][1], generated[:3])
    assert torch.equal(sets["generated_noise_mask_em"][3], generated[3:])
    with pytest.raises(ValueError, match="2 draws"):
        two_sample_sets(train, val, draws[:1], generated)


def test_heldout_draws_set_splits_the_draws_in_halves():
    tr, va = torch.zeros(3, 1, 8, 8), torch.ones(2, 1, 8, 8)
    draws = [torch.full((2, 1, 8, 8), float(d)) for d in range(5)]  # an odd count: the test half gets the extra draw
    row = heldout_draws_set(tr, va, draws)
    assert row[0] is tr and row[2] is va
    assert row[1].unique().tolist() == [0.0, 1.0] and row[3].unique().tolist() == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError, match="at least 2 draws"):
        heldout_draws_set(tr, va, draws[:1])


def test_two_sample_table_floor_at_chance_and_blur_caught():
    """The judge on the reference rows of the table, where the answer is known: real vs real at chance, real against
    the same sections blurred by 0.7 px (the EM of these tests has a fine grain) told apart."""
    train, val = _sections(n_train=8, n_val=4)
    sets = two_sample_sets(train, val, stage2_draws(_Painter(0.1), val[0], n_draws=2), _em(_masks(2), 6))
    table = two_sample_table(
        {k: sets[k] for k in ("real_vs_real", "real_blurred")}, patch=16, steps=120, seeds=2, n_train=160, n_test=80
    )
    rows = table["rows"]
    assert list(rows) == ["real_vs_real", "real_blurred"] and table["seeds"] == [0, 1] and table["patch"] == 16
    assert abs(rows["real_vs_real"]["accuracy"] - 0.5) < 0.15, rows["real_vs_real"]
    assert rows["real_blurred"]["accuracy"] > 0.9 > rows["real_vs_real"]["accuracy"] + 0.2, rows
    assert len(rows["real_blurred"]["per_seed"]) == 2 and rows["real_blurred"]["n_test"] == 80


def test_downstream_segmentation_trains_four_ways():
    train, val = _sections(size=32)
    generated = (_masks(8, 32, seed=7), _em(_masks(8, 32, seed=7), 8))
    result = downstream_segmentation(train, val, generated, steps=3, seed=5, n_seeds=2)
    ways = ["synthetic_only", "real_only", "real_and_synthetic", "real_only_same_compute"]
    assert list(result["dice"]) == ways
    # 4 real sections repeated twice beside 8 generated pairs: half of the crops real, so the mixed set trains twice
    # as long (as many real crops as real_only) and so does its control
    assert result["real_share"] == pytest.approx(0.5)
    assert result["steps_per_way"] == dict(zip(ways, [3, 3, 6, 6]))
    for way, dice in result["dice"].items():
        assert set(dice) == {"mito", "membrane", "mean"}
        assert all(0 <= v <= 1 for v in dice.values()), way
        # the Dice of a way is the mean over its seeds, its sd their spread
        assert len(result["per_seed"][way]) == 2 and dice["mean"] == pytest.approx(np.mean(result["per_seed"][way]))
        assert result["mean_sd"][way] == pytest.approx(np.std(result["per_seed"][way], ddof=1))
    assert result["seeds"] == [5, 6]
    gain = np.subtract(result["per_seed"]["real_and_synthetic"], result["per_seed"]["real_only"])
    assert result["both_minus_real"]["per_seed"] == pytest.approx(list(gain))
    assert result["both_minus_real"]["mean"] == pytest.approx(gain.mean())
    control = np.subtract(result["per_seed"]["real_and_synthetic"], result["per_seed"]["real_only_same_compute"])
    assert result["both_minus_real_same_compute"]["per_seed"] == pytest.approx(list(control))
    real = result["dice"]["real_only"]["mean"]
    assert result["synthetic_over_real"] == pytest.approx(result["dice"]["synthetic_only"]["mean"] / real)
    assert result["both_over_real"] == pytest.approx(result["dice"]["real_and_synthetic"]["mean"] / real)
    assert result["steps"] == 3 and result["n_real"] == 4 and result["n_generated"] == 8
    markdown = metrics_markdown_section({}, downstream_segmentation=result)
    assert (
        markdown.startswith("## Downstream")
        and "| synthetic only | 3 |" in markdown
        and "| real only same compute | 6 |" in markdown
    )
    assert "(the same real crops), paired by seed" in markdown and "for as many steps, paired by seed" in markdown
    with pytest.raises(ValueError, match="n_seeds"):
        downstream_segmentation(train, val, generated, steps=1, n_seeds=0)


def test_scripts_heldout_split_is_evaluate_jsons_split_at_any_resolution(monkeypatch, real_data):
    """The stage-2 scripts' shared loader: sections 0-15 for training, 16-19 held out, train_mask.json's masks."""
    import sys

    from conftest import REPO, require_data

    require_data("drosophila_vnc", "stack1")
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    sys.modules.pop("_drosophila_sections", None)
    from _drosophila_sections import heldout_split

    parser, (tr_masks, tr_em), (va_masks, va_em) = heldout_split(resolution=64)
    assert parser["resolution"] == 64
    assert tr_masks.shape == (16, 3, 64, 64) and tr_em.shape == (16, 1, 64, 64)
    assert va_masks.shape == (4, 3, 64, 64) and va_em.shape == (4, 1, 64, 64)
    assert torch.equal(va_masks.sum(1), torch.ones(4, 64, 64))  # one-hot after area resize + argmax
    assert not any(torch.equal(v, t) for v in va_em for t in tr_em)  # no held-out section among the training ones
