#!/usr/bin/env python
"""Ship a generator of ``drosophila_skip_patch`` from a full training checkpoint.

``--stage 1`` (``train_mask.json``): writes ``<models_dir>/mask_generator.pt``, the EMA generator's state dict with
its batch-norm statistics recomputed for the averaged weights
(:func:`emgan_monai.networks.mask_generator.recalibrate_batchnorm`), and ``mask_generator_checkpoint.pt``.
``--stage 2`` (``train.json``): writes ``<models_dir>/em_generator.pt``, the EMA generator's state dict (instance
norm: no statistics to recompute), and ``model_checkpoint.pt``. Either way ``<models_dir>/model.pt`` is then rewritten
as the state dict of ``inference.json``'s ``network_def`` (``TwoStageGenerator``: both stages,
``TwoStageGenerator.combine_state_dicts`` of ``mask_generator.pt`` and ``em_generator.pt``), which ``inference.json``
and ``evaluate.json`` load; ``inference_mask2em.json`` loads ``em_generator.pt``. The ``*_checkpoint.pt`` file is the full resumable checkpoint (generator, EMA,
discriminator, both optimisers, trainer state with the step, random state), copied unchanged. Every file must stay
under 25 MB. Examples::

    python scripts/export_drosophila.py --stage 1 \
        --checkpoint bundles/drosophila_skip_patch/runs/stage1_fewshot/checkpoints/checkpoint_epoch=60.pt
    python scripts/export_drosophila.py --stage 2 --checkpoint runs/stage2/checkpoints/checkpoint_epoch=10.pt
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
    ap.add_argument("--stage", type=int, choices=(1, 2), required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--config", default=None, help="training config (default: train_mask.json / train.json)")
    ap.add_argument("--models_dir", default=str(BUNDLE / "models"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    from monai.bundle import ConfigParser

    from emgan_monai.bundle_utils import config_files
    from emgan_monai.handlers.ema import load_ema_generator
    from emgan_monai.networks.two_stage_generator import TwoStageGenerator

    name = "mask_generator" if args.stage == 1 else "em_generator"
    checkpoint_name = "mask_generator_checkpoint" if args.stage == 1 else "model_checkpoint"
    parser = ConfigParser()
    config = args.config or ("train_mask.json" if args.stage == 1 else "train.json")
    parser.read_config(config_files(BUNDLE, config))
    net = load_ema_generator(parser.get(), Path(args.checkpoint), recalibrate=args.stage == 1)
    out = Path(args.models_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / f"{name}.pt")
    shutil.copyfile(args.checkpoint, out / f"{checkpoint_name}.pt")
    written = [f"{name}.pt", f"{checkpoint_name}.pt"]
    if (out / "mask_generator.pt").is_file() and (out / "em_generator.pt").is_file():
        stages = [
            torch.load(out / f, map_location="cpu", weights_only=True) for f in ("mask_generator.pt", "em_generator.pt")
        ]
        torch.save(TwoStageGenerator.combine_state_dicts(*stages), out / "model.pt")
        written.append("model.pt")
    for name in written:
        size = (out / name).stat().st_size
        if size >= LIMIT:
            raise SystemExit(f"{out / name} is {size / 1024**2:.1f} MB, over the 25 MB limit")
        print(f"{out / name}: {size / 1024**2:.2f} MB")


if __name__ == "__main__":
    main()
