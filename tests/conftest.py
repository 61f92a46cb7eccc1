import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """Real data folder: ``$EMGAN_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("EMGAN_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def real_data() -> Path:
    return data_root()


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
