#!/usr/bin/env python
"""Downstream utility of a stage-2 generator alone: ``evaluate.json``'s downstream step for other weights.

The shipped stage 1 draws ``--num_generated`` masks (seed ``--seed``, as ``evaluate.json``), the given stage 2 turns
them into EM, and :func:`emgan_monai.evaluation.drosophila.downstream_segmentation` trains its segmenters (generated
pairs only, real sections 0-15 only, both with as many real crops, and the real-only control for as many steps), each
scored on the real held-out sections 16-19. Use it to compare an earlier version under the current protocol.

Usage::

    OMP_NUM_THREADS=1 python scripts/drosophila_downstream.py --weights <em_generator.pt or checkpoint> --out d.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--weights", required=True, help="stage-2 state dict (em_generator.pt) or full train.json checkpoint"
    )
    ap.add_argument("--out", required=True, help="JSON file of the result")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--num_generated", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from _drosophila_sections import heldout_split
    from monai.bundle import ConfigParser

    from emgan_monai.bundle_utils import config_files
    from emgan_monai.data.drosophila_synthesis import generate
    from emgan_monai.evaluation.drosophila import default_latent_shape, downstream_segmentation
    from emgan_monai.handlers.ema import load_ema_generator

    train_cfg, train_sections, val_sections = heldout_split()  # evaluate.json's masks
    res = int(train_cfg["resolution"])
    infer = ConfigParser()
    infer.read_config(config_files(BUNDLE, str(BUNDLE / "configs" / "inference.json")))

    net = infer.get_parsed_content("network_def")
    net.mask_generator.load_state_dict(torch.load(BUNDLE / "models" / "mask_generator.pt", weights_only=True))
    em_net = load_ema_generator(train_cfg.get(), args.weights, recalibrate=False)
    latent = list(default_latent_shape(net.mask_generator, res))
    generated = generate(net.mask_generator, em_net, args.num_generated, latent, seed=args.seed)
    result = downstream_segmentation(
        train_sections, val_sections, generated, steps=args.steps, seed=args.seed, n_seeds=args.seeds
    )
    result["weights"] = str(args.weights)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("dice", "both_minus_real", "both_minus_real_same_compute")}, indent=1))


if __name__ == "__main__":
    main()
