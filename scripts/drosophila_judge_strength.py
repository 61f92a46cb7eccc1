#!/usr/bin/env python
"""Is a low two-sample accuracy a weak judge? Stage-2 generators judged by judges of growing strength (issue 22).

``evaluate.json``'s judge (64-px patches, a 16-32-64 CNN, 400 steps) is fast and catches a 0.7 px blur, but a low
accuracy may mean the judge did not learn long enough or could not see enough. This script scores the same rows
under several judges: each ``--judge PATCH:STEPS:WIDTHS`` (e.g. ``128:800:16,32,64,128``) is one
:func:`~emgan_monai.metrics.two_sample.two_sample_table` with ``--seeds`` judges per row. Rows, all against the
held-out sections 16-19 and built as ``evaluate.json`` builds them:

- ``real_vs_real``: the floor (training sections 0-7 vs 8-15, tested on 16-17 vs 18-19);
- ``real_noisy``: real sections + noise of sd 0.08 (a degradation the eye barely sees);
- one ``generated_from_heldout_masks`` row per ``--weights`` file (a stage-2 state dict such as
  ``models/em_generator.pt``, or a full ``train.json`` checkpoint, whose EMA generator is used): draws 0-1 on the
  held-out masks train the judge against sections 0-15, draws 2-3 test it against sections 16-19. The network is
  ``train.json``'s; ``,key=value`` after a path sets its network keys for those weights (weights of versions before
  0.12.0 need ``em_antialias=false``; the shipped inference adds ``em_border_pad=16``).

Usage::

    OMP_NUM_THREADS=1 python scripts/drosophila_judge_strength.py --out judges.json \
        --weights shipped=bundles/drosophila_skip_patch/models/em_generator.pt,em_border_pad=16 \
        new=runs/x/checkpoints/checkpoint_epoch=100.pt "old=<0.9.0 em_generator.pt>,em_antialias=false" \
        --judge 64:400:16,32,64 64:1600:32,64,128 128:800:16,32,64,128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"


def _judge(spec: str) -> tuple[int, int, tuple[int, ...]]:
    """``PATCH:STEPS:W1,W2,...`` -> ``(patch, steps, widths)``."""
    try:
        patch, steps, widths = spec.split(":")
        return int(patch), int(steps), tuple(int(w) for w in widths.split(","))
    except ValueError:
        raise SystemExit(f"--judge {spec!r}: expected PATCH:STEPS:WIDTHS, e.g. 64:400:16,32,64") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file of the table")
    ap.add_argument(
        "--weights",
        nargs="+",
        required=True,
        help="NAME=PATH[,KEY=VALUE...] of stage-2 weights or checkpoints, with train.json network keys that differ from "
        "its defaults (e.g. 0.9.0=em_generator.pt,em_antialias=false)",
    )
    ap.add_argument("--judge", nargs="+", default=["64:400:16,32,64"], help="PATCH:STEPS:WIDTHS per judge")
    ap.add_argument("--seeds", type=int, default=3, help="judges per row and judge kind")
    ap.add_argument("--n_draws", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    judges = [_judge(j) for j in args.judge]
    named = dict(w.split("=", 1) for w in args.weights)
    torch.set_num_threads(1)

    from _drosophila_sections import heldout_split

    from emgan_monai.evaluation.drosophila import heldout_draws_set, stage2_draws, two_sample_sets
    from emgan_monai.handlers.ema import load_ema_generator
    from emgan_monai.metrics.two_sample import two_sample_table

    parser, train_sections, val_sections = heldout_split()  # train_mask.json's masks, as evaluate.json

    defaults = {k: parser[k] for k in ("em_antialias", "em_border_pad")}
    sets = {}
    for name, spec in named.items():
        path, *settings = spec.split(",")
        for key, value in ({**defaults, **dict(kv.split("=", 1) for kv in settings)}).items():
            parser[key] = json.loads(value) if isinstance(value, str) else value
        if "checkpoint" in Path(path).name:
            net = load_ema_generator(parser.get(), path, recalibrate=False)
        else:
            net = parser.get_parsed_content("network_def")
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        draws = stage2_draws(net, val_sections[0], args.n_draws, seed=args.seed)
        if not sets:  # the reference rows, from the first generator's draws (they do not use them)
            refs = two_sample_sets(train_sections, val_sections, draws, draws[0], seed=args.seed)
            sets = {k: refs[k] for k in ("real_vs_real", "real_noisy")}
        sets[name] = heldout_draws_set(train_sections[1], val_sections[1], draws)
    table: dict = {"weights": named, "n_draws": args.n_draws, "judges": []}
    for patch, steps, widths in judges:
        start = time.time()
        result = two_sample_table(sets, patch=patch, steps=steps, seeds=args.seeds, channels=widths)
        result["wall_s"] = time.time() - start
        table["judges"].append(result)
        summary = {k: round(v["accuracy"], 3) for k, v in result["rows"].items()}
        print(json.dumps({"patch": patch, "steps": steps, "widths": widths, "accuracy": summary}), flush=True)
        Path(args.out).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
