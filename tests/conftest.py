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
