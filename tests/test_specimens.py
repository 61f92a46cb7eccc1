"""Procedural fluorescent specimens (:mod:`emgan_monai.data.specimens`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from emgan_monai.data.specimens import SPECIMEN_KINDS, make_specimen, membranes, puncta, vesicles

SHAPE = (12, 64, 64)


@pytest.mark.parametrize("kind", sorted(SPECIMEN_KINDS))
def test_specimen_is_a_seeded_nonnegative_density(kind: str) -> None:
    a = make_specimen(kind, SHAPE, rng=1)
    assert a.shape == SHAPE and a.dtype == np.float32 and a.min() >= 0
    np.testing.assert_array_equal(a, make_specimen(kind, SHAPE, rng=1))
    assert not np.array_equal(a, make_specimen(kind, SHAPE, rng=2))
    # structures stand out of the diffuse background (peak about 1, background <= 5 %)
    assert a.max() > 0.8 and np.median(a) < 0.2


def test_vesicles_are_hollow() -> None:
    one = vesicles((40, 80, 80), (0.1, 0.1, 0.1), rng=0, n_vesicles=1, radius_um=(1.5, 1.5), diffuse=0.0)
    zc, yc, xc = (np.array(np.nonzero(one > 0.5 * one.max()))).mean(axis=1).round().astype(int)
    assert one[zc, yc, xc] < 0.05 * one.max()  # dark lumen at the centre of the bright shell


def test_membranes_are_thin_walls_between_cells() -> None:
    vol = membranes((16, 96, 96), rng=0, diffuse=0.0)
    walls = vol > 0.3
    assert 0.05 < walls.mean() < 0.5
    _, n_cells = ndimage.label(~walls[8])  # the walls cut a plane into several compartments
    assert n_cells >= 3


def test_puncta_count_follows_density() -> None:
    sparse = puncta((20, 100, 100), rng=0, density_per_um3=0.01, diffuse=0.0)
    dense = puncta((20, 100, 100), rng=0, density_per_um3=0.1, diffuse=0.0)
    count = lambda v: ndimage.label(v > 0.2)[1]  # noqa: E731
    assert count(dense) > 4 * count(sparse)


def test_unknown_kind_and_bad_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown specimen kind"):
        make_specimen("ribosomes", SHAPE)
    with pytest.raises(ValueError, match="spacing"):
        make_specimen("puncta", SHAPE, spacing_zyx_um=(0.0, 0.1, 0.1))
