"""The section split that the stage-2 scripts of ``drosophila_skip_patch`` share with its ``evaluate.json``.

The training config (``train.json`` by default) names the stack and the split (``n_train`` sections for training, the
next ``n_val`` held out); the masks go through ``train_mask.json``'s ``mask_preprocessing`` (area downsampling +
argmax), as ``evaluate.json`` does, so every script scores on the same masks. Imported by the scripts beside it
(``python scripts/<name>.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"


def heldout_split(
    config: str | Path = BUNDLE / "configs" / "train.json",
    mask_config: str | Path = BUNDLE / "configs" / "train_mask.json",
    resolution: int | None = None,
) -> tuple[Any, tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(parser, (train masks, train EM), (held-out masks, held-out EM))``.

    ``parser`` is the training config's ``ConfigParser`` (with ``resolution`` set when given); masks are
    ``(N, 3, R, R)`` one-hot and EM ``(N, 1, R, R)`` in [0, 1] at ``R = resolution`` (default: the config's).
    """
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from emgan_monai.bundle_utils import config_files
    from emgan_monai.data.drosophila import drosophila_datalist, load_sections, split_sections

    parser = ConfigParser()
    parser.read_config(config_files(BUNDLE, str(config)))
    masks = ConfigParser()
    masks.read_config(config_files(BUNDLE, str(mask_config)))
    if resolution is not None:
        parser["resolution"] = masks["section_size"] = int(resolution)  # the mask pipeline resizes to section_size
    res = int(parser["resolution"])
    mask_tf = Compose(masks.get_parsed_content("mask_preprocessing"))
    datalist = drosophila_datalist(Path(parser.get_parsed_content("dataset_dir")) / parser["stack"])
    train, val = split_sections(datalist, n_train=parser["n_train"], n_val=parser["n_val"])
    return parser, load_sections(train, res, mask_transform=mask_tf), load_sections(val, res, mask_transform=mask_tf)
