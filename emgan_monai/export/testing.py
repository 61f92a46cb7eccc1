"""Bundle copies for smoke tests and CI: shipped weights when present, random initialisations otherwise.

The export, metadata and MONAI Label tests must run on a fresh clone before a bundle's weights are trained, and
must never write into ``bundles/``. :func:`bundle_copy_with_weights` copies what a packaged bundle holds and saves a
seeded random state dict for every missing weight file, so the code paths (config parsing, ``load_state_dict``,
TorchScript export, inference) are the real ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

__all__ = ["bundle_copy_with_weights", "weight_files"]


def weight_files(bundle_dir: str | Path, config_file: str | Path) -> dict[str, Path]:
    """Map network ids of ``config_file`` to their weight files.

    ``network_def`` -> ``models/model.pt`` (the MONAI zoo convention); ``<x>_network_def`` -> the file named by the
    config's ``<x>_weights`` when it defines one.
    """
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(Path(bundle_dir).resolve())
    config: dict[str, Any] = parser.get()  # the whole config (MONAI annotates ``parser.config`` as a ConfigItem)
    out: dict[str, Path] = {}
    for key in config:
        if not key.endswith("network_def"):
            continue
        prefix = key[: -len("network_def")].rstrip("_")
        if prefix:
            wkey = f"{prefix}_weights"
            if wkey in config:
                out[key] = Path(parser.get_parsed_content(wkey))
        else:
            out[key] = Path(bundle_dir) / "models" / "model.pt"
    return out


def bundle_copy_with_weights(bundle_dir: str | Path, dest: str | Path, seed: int = 0) -> tuple[Path, list[str]]:
    """Copy ``bundle_dir`` (configs, models, docs, sample, LICENSE) to ``dest`` and fill in missing weights.

    Returns
    -------
    tuple
        ``(dest, random)``: the copy and the relative paths of the weight files that were randomly initialised
        (empty when every weight file was shipped).
    """
    src, dest = Path(bundle_dir).resolve(), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("configs", "models", "docs", "sample"):
        if (src / d).is_dir():
            shutil.copytree(src / d, dest / d, dirs_exist_ok=True)
    if (src / "LICENSE").is_file():
        shutil.copy2(src / "LICENSE", dest / "LICENSE")
    (dest / "models").mkdir(exist_ok=True)
    created: list[str] = []
    for cfg in sorted((dest / "configs").glob("inference*.json")):
        for net_id, path in weight_files(dest, cfg).items():
            if path.is_file():
                continue
            parser = ConfigParser()
            parser.read_config(str(cfg))
            parser["bundle_root"] = str(dest)
            torch.manual_seed(seed)
            net = parser.get_parsed_content(net_id, instantiate=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), path)
            created.append(path.relative_to(dest).as_posix())
    return dest, created
