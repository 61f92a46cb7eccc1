#!/usr/bin/env python
"""Ship a stage-1 mask generator of ``drosophila_skip_patch`` from a full training checkpoint.

Writes ``<models_dir>/mask_generator.pt``: the EMA generator's state dict, with its batch-norm statistics recomputed
for the averaged weights (:func:`emgan_monai.networks.mask_generator.recalibrate_batchnorm`; what ``inference.json``
and ``evaluate.json`` load), and ``<models_dir>/mask_generator_checkpoint.pt``: the full resumable checkpoint
(generator, EMA, discriminator, both optimisers, trainer state with the step, random state), unchanged. Both files
must stay under 25 MB. Example::

    python scripts/export_drosophila_stage1.py \
        --checkpoint bundles/drosophila_skip_patch/runs/stage1_fewshot/checkpoints/checkpoint_epoch=60.pt
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"
LIMIT = 25 * 1024**2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--config", default=str(BUNDLE / "configs" / "train_mask.json"))
    ap.add_argument("--models_dir", default=str(BUNDLE / "models"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from drosophila_stage1_curve import load_ema_generator
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(args.config)
    net = load_ema_generator(parser.get(), Path(args.checkpoint), recalibrate=True)
    out = Path(args.models_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "mask_generator.pt")
    shutil.copyfile(args.checkpoint, out / "mask_generator_checkpoint.pt")
    for name in ("mask_generator.pt", "mask_generator_checkpoint.pt"):
        size = (out / name).stat().st_size
        if size >= LIMIT:
            raise SystemExit(f"{out / name} is {size / 1024**2:.1f} MB, over the 25 MB limit")
        print(f"{out / name}: {size / 1024**2:.2f} MB")


if __name__ == "__main__":
    main()
