"""Relief shading metric: zero for a membrane darker on neither side, signed for an embossed one."""

from __future__ import annotations

import math

import pytest
import torch

from emgan_monai.metrics.relief import distance_profile, membrane_profile, membrane_relief


def _section(shadow: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 64 x 64 section with vertical and horizontal 2-px membranes every 16 px (dark, 0.2 on 0.6), a shadow of
    ``shadow`` on the 2 px left of every vertical membrane; the one-hot mask (mito, membrane, background)."""
    em = torch.full((1, 1, 64, 64), 0.6)
    memb = torch.zeros(64, 64, dtype=torch.bool)
    for c in range(8, 64, 16):
        memb[:, c : c + 2] = True
        memb[c : c + 2, :] = True
        em[0, 0, :, c - 2 : c] -= shadow
    em[0, 0][memb] = 0.2
    mask = torch.stack([torch.zeros(64, 64), memb.float(), (~memb).float()])[None]
    return em + 0.01 * torch.randn(em.shape, generator=torch.Generator().manual_seed(0)), mask


def test_symmetric_membranes_have_no_relief():
    em, mask = _section()
    r = membrane_relief(em, mask)
    assert abs(r["x"]) < 0.05 and abs(r["y"]) < 0.05
    prof = membrane_profile(em, mask)
    assert prof[0] == pytest.approx(prof[-1], abs=0.02) and prof[4] < prof[0]


def test_a_shadow_on_the_left_is_a_positive_x_relief_and_no_y_relief():
    em, mask = _section(shadow=0.2)
    r = membrane_relief(em, mask)
    assert r["x"] > 0.2 and abs(r["y"]) < 0.1
    prof = membrane_profile(em, mask, axis="x")
    assert prof[2] < prof[6] - 0.02  # darker 2 px left of the membrane than 2 px right of it
    flipped = membrane_relief(em.flip(-1), mask.flip(-1))
    assert flipped["x"] == pytest.approx(-r["x"], abs=1e-5)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="expected EM"):
        membrane_relief(torch.zeros(1, 64, 64), torch.zeros(1, 3, 64, 64))


def _cell(ripple: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A 64 x 64 section: one membrane ring at the border (2 px), cytoplasm 0.6 inside, plus ``ripple`` times a
    sinusoid of period 6 px in the (chessboard) distance from the membrane; a mitochondrion-labelled corner square
    that the profile must leave out (grey 0.0)."""
    idx = torch.arange(64)
    dist = torch.minimum(torch.minimum(idx[:, None], idx[None, :]), torch.minimum(63 - idx[:, None], 63 - idx[None, :]))
    memb = dist < 2
    mito = torch.zeros(64, 64, dtype=torch.bool)
    mito[40:50, 40:50] = True
    em = 0.6 + ripple * torch.sin(2 * torch.pi * (dist - 1).float() / 6)
    em[memb], em[mito] = 0.2, 0.0
    mask = torch.stack([mito.float(), memb.float(), (~memb & ~mito).float()])[None]
    return em[None, None], mask


def test_distance_profile_is_flat_for_plain_cytoplasm_and_swings_for_ripples():
    flat = distance_profile(*_cell(0.0), max_distance=12)
    assert len(flat["profile"]) == 12
    assert flat["profile"][5] == pytest.approx(0.6) and flat["ripple"] == pytest.approx(0.0, abs=1e-6)
    rippled = distance_profile(*_cell(0.05), max_distance=12)
    assert rippled["ripple"] > 0.1  # an sd of 0.05 / sqrt(2) on an image sd below 0.3
    # profile[1] is band 2: 2 px beyond the membrane, where the sinusoid is at phase 2 / 6
    assert rippled["profile"][1] == pytest.approx(0.6 + 0.05 * math.sin(2 * math.pi * 2 / 6), abs=1e-4)
    # a cell of 64 px has no pixel 40 px from its membrane: that band is None, the ripple is taken over the others
    far = distance_profile(*_cell(0.05), max_distance=40)
    assert far["profile"][39] is None and far["ripple"] > 0.1
    with pytest.raises(ValueError, match="start <= max_distance"):
        distance_profile(*_cell(0.0), max_distance=4, start=5)
    with pytest.raises(ValueError, match="same size"):
        distance_profile(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 9, 9))
