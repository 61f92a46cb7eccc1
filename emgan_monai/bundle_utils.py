"""Small helpers that bundle configs and their callers use: finding their folders, the paths of config files, saving
a JSON record.

A bundle config is run either from the repository root (``bundles/<name>/configs/...``), from inside the bundle
folder (``configs/...``) or from an unpacked zip anywhere. MONAI does not expose the config's own path to config
expressions, so ``"bundle_root": "$emgan_monai.bundle_utils.bundle_root('<name>')"`` resolves it; ``--bundle_root``
on the command line always wins.

As in the MONAI model zoo, ``configs/inference*.json`` and ``configs/train*.json`` stand alone; overlays
(``evaluate.json``, ``multi_gpu_train.json``, the GPU paper recipes) are merged after their base config:
``python -m monai.bundle run --config_file "['configs/train.json','configs/multi_gpu_train.json']"``.
:func:`config_files` gives the paths of such a list for Python callers (export, MONAI Label, scripts, tests).

:func:`save_json` writes a record (e.g. the generator calibration of the cryo-ET ``train.json``) from a config
expression.

:func:`flag` reads a true/false key as a bool. ``python -m monai.bundle run --key false`` hands the config the
*string* ``'false'`` (``fire`` parses only ``False`` as a bool), which Python calls true; configs read their on/off
keys through ``flag`` so that ``true``/``false`` in any case work, and anything else is refused by name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["bundle_root", "config_files", "data_dir", "flag", "require_files", "save_json"]

_REPO = Path(__file__).resolve().parents[1]


def _is_bundle(folder: Path, name: str) -> bool:
    meta = folder / "configs" / "metadata.json"
    if not meta.is_file():
        return False
    try:
        with open(meta, encoding="utf-8") as f:
            return json.load(f).get("name") == name or folder.name == name
    except (OSError, ValueError):
        return folder.name == name


def bundle_root(name: str) -> str:
    """Return the folder of bundle ``name``.

    Looks, in order, at the current directory, ``./bundles/<name>``, ``./<name>`` and the repository this package was
    installed from (editable install).

    Raises
    ------
    FileNotFoundError
        if no folder with ``configs/metadata.json`` for ``name`` is found.
    """
    cwd = Path.cwd()
    for cand in (cwd, cwd / "bundles" / name, cwd / name, _REPO / "bundles" / name):
        if _is_bundle(cand, name):
            return str(cand)
    raise FileNotFoundError(
        f"cannot find bundle '{name}' (looked in {cwd}, {cwd / 'bundles' / name}, {_REPO / 'bundles' / name}); "
        "pass --bundle_root <folder of the bundle>"
    )


def config_files(bundle_dir: str | Path, *configs: str | Path) -> list[str]:
    """The paths of ``configs`` (names inside ``<bundle_dir>/configs/`` or paths) of the bundle at ``bundle_dir``.

    One standalone config (``inference.json``, ``train.json``) or a base config followed by its overlays (later files
    override earlier ones); pass the list to ``ConfigParser.read_config`` or ``--config_file``.
    """
    folder = Path(bundle_dir) / "configs"
    return [str(Path(c) if Path(c).is_absolute() or Path(c).parent != Path(".") else folder / c) for c in configs]


def data_dir(sub: str = "") -> str:
    """Default data folder: ``$EMGAN_DATA/<sub>`` or ``<repo>/../shared/data/<sub>``.

    Bundles use it as the default of their ``dataset_dir``; override with ``--dataset_dir``.
    """
    root = os.environ.get("EMGAN_DATA")
    base = Path(root) if root else _REPO.parent / "shared" / "data"
    return str(base / sub) if sub else str(base)


def require_files(datalist: list, folder: str, pattern: str) -> list:
    """Fail early, naming the folder and the pattern, when an inference datalist is empty."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"input folder {folder} does not exist (set --input_dir)")
    if not datalist:
        raise FileNotFoundError(f"no input files matching '{pattern}' in {folder} (set --input_dir / --input_pattern)")
    return datalist


def save_json(obj: Any, path: str | Path, overwrite: bool = True) -> str:
    """Write ``obj`` as indented JSON (folders created); returns the path.

    With ``overwrite=False`` an existing file raises ``FileExistsError`` (the inference outputs' rule).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite true) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))
    return str(path)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def flag(value: Any, key: str = "flag") -> bool:
    """``value`` of the on/off config key ``key`` as a bool.

    Accepts a bool, 0 / 1, and the strings ``true`` / ``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``;
    any case) that a command line passes as text. Anything else raises ``ValueError`` naming ``--key``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"--{key} must be true or false, got {value!r}")
