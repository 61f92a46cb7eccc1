import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Real data folder: ``$EMGAN_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("EMGAN_DATA", REPO.parent / "shared" / "data"))


def require_data(*parts: str) -> Path:
    """``data_root() / parts``, or skip the calling test, saying what is missing, when it is absent or empty.

    Tests that read the real datasets use it (or the ``real_data`` fixture) and carry the ``needs_data`` marker, so
    ``.ci/run`` can run exactly them once more with ``EMGAN_DATA`` pointing at an empty folder: they must skip (or fall
    back to synthetic data), never fail.
    """
    path = data_root().joinpath(*parts)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        pytest.skip(f"real data not found at {path} (set EMGAN_DATA; see ../shared/data/README.md)")
    return path


@pytest.fixture
def real_data() -> Path:
    """The real data folder (it may be absent: use :func:`require_data` for what a test cannot do without)."""
    return data_root()


def pytest_collection_modifyitems(config, items):
    """Every test that takes the ``real_data`` fixture needs data (``-m needs_data`` selects them all)."""
    for item in items:
        if "real_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_data)


def load_trained_network(config: Path, bundle_root: Path, weights: Path, **overrides):
    """``network_def`` of a standalone bundle ``config`` (with ``overrides``) holding the state dict saved at
    ``weights``.

    Asserts that the state dict loads strictly and that every floating-point tensor in it is finite.
    """
    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser.update({"bundle_root": str(bundle_root), **overrides})
    net = parser.get_parsed_content("network_def", instantiate=True)
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(saved)
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point()), weights
    return net


def cube_particle_maps(n: int = 4, box: int = 16, seed: int = 0):
    """``(n, 1, box, box, box)`` float32 maps in [-1, 1] (a torch tensor): one cube-shaped particle each, of random
    size and place (the cryo-ET generator tests' density maps)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    m = np.full((n, 1, box, box, box), -1.0, np.float32)
    for i in range(n):
        c = rng.integers(5, box - 5, size=3)
        r = int(rng.integers(2, 4))
        m[i, 0, c[0] - r : c[0] + r, c[1] - r : c[1] + r, c[2] - r : c[2] + r] = 1.0
    return torch.from_numpy(m)
