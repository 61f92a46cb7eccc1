"""On/off keys from the command line: ``python -m monai.bundle run --key false`` passes the *string* ``'false'``
(``fire`` parses only ``False``), which Python calls true. Every config reads its on/off keys through
:func:`emgan_monai.bundle_utils.flag`; found when ``--spectral_norm false`` silently trained with spectral norm."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from emgan_monai.bundle_utils import flag

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
CONFIGS = sorted(BUNDLES.glob("*/configs/*.json"))
#: on/off keys whose defaults are expressions (not JSON booleans)
EXPRESSION_FLAGS = {"spectral_norm"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("false", False),
        ("False", False),
        ("TRUE", True),
        (" on ", True),
        ("0", False),
        (1, True),
        (0, False),
        ("no", False),
    ],
)
def test_flag_reads_command_line_spellings(value, expected):
    assert flag(value, "k") is expected


@pytest.mark.parametrize("value", ["flase", "", None, 2, 0.5, "maybe"])
def test_flag_refuses_anything_else_by_name(value):
    with pytest.raises(ValueError, match="--overwrite must be true or false"):
        flag(value, "overwrite")


def _bool_keys(config: dict) -> set[str]:
    return {k for k, v in config.items() if isinstance(v, bool) and "#" not in k}


def test_every_on_off_key_is_read_through_flag():
    """A reference ``@key`` to an on/off key outside ``flag(@key, ...)`` would read the string 'false' as true."""
    keys: set[str] = set(EXPRESSION_FLAGS)
    texts = {p: p.read_text() for p in CONFIGS}
    for text in texts.values():
        keys |= _bool_keys(json.loads(text))
    assert {"overwrite", "resume", "amp", "em_noise", "tile_large_maps"} <= keys
    bare = [
        f"{p.relative_to(BUNDLES)}: @{k}"
        for p, text in texts.items()
        for k in keys
        for m in re.finditer(rf"@{k}\b(?![#\w])", text)
        if not text[: m.start()].endswith("flag(")
    ]
    assert bare == []


def test_spectral_norm_false_from_the_command_line_switches_it_off():
    for value, expected in (("false", False), ("true", True), (False, False)):
        parser = ConfigParser()
        parser.read_config(str(BUNDLES / "cryoet_gan" / "configs" / "train.json"))
        parser.update({"gan_mode": "wgan_gp", "spectral_norm": value})
        critic = parser.get_parsed_content("critic_s")
        assert any("parametrizations" in k for k in critic.state_dict()) is expected, value
    parser["spectral_norm"] = "flase"
    with pytest.raises(RuntimeError) as err:  # MONAI wraps the error of a config expression
        parser.get_parsed_content("critic_s", lazy=False)
    assert "--spectral_norm must be true or false, got 'flase'" in str(err.value.__cause__)
