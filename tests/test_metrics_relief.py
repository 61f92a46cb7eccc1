"""Relief shading metric: zero for a membrane darker on neither side, signed for an embossed one."""

from __future__ import annotations

import pytest
import torch

from emgan_monai.metrics.relief import membrane_profile, membrane_relief


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
