#!/usr/bin/env python
"""Markdown table of TensorBoard scalars against wall time (minutes since the run's first event).

Used to record the curve of a bundle's target metric against training time in its docs::

    python scripts/tb_curve.py bundles/confocal_enhance/runs/pixel --tags val_ssim val_psnr
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: str | Path, tags: list[str]) -> tuple[dict[str, list[tuple[float, int, float]]], float]:
    """``{tag: [(wall_time_s, step, value), ...]}`` over all event files of ``run_dir`` (sorted by wall time), and
    the wall time of the run's first scalar of any tag (the training start)."""
    out: dict[str, list[tuple[float, int, float]]] = {t: [] for t in tags}
    first = float("inf")
    files = sorted(Path(run_dir).glob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event files in {run_dir}")
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            first = min(first, acc.Scalars(tag)[0].wall_time)
        for tag in tags:
            if tag in acc.Tags()["scalars"]:
                out[tag] += [(e.wall_time, e.step, e.value) for e in acc.Scalars(tag)]
    return {t: sorted(v) for t, v in out.items()}, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--tags", nargs="+", default=["val_ssim"])
    parser.add_argument("--start", type=float, default=None, help="wall time (s) of t = 0; default: first event")
    args = parser.parse_args()
    scalars, start = read_scalars(args.run_dir, args.tags)
    first = args.tags[0]
    if not scalars[first]:
        raise SystemExit(f"tag {first!r} not found in {args.run_dir}")
    t0 = args.start if args.start is not None else start
    print("| minutes | step | " + " | ".join(args.tags) + " |")
    print("|---" * (len(args.tags) + 2) + "|")
    for wall, step, value in scalars[first]:
        others = []
        for tag in args.tags[1:]:
            match = [v for w, s, v in scalars[tag] if s == step]
            others.append(f"{match[0]:.4f}" if match else "")
        print(f"| {(wall - t0) / 60:.1f} | {step} | {value:.4f} | " + " | ".join(others) + " |")


if __name__ == "__main__":
    main()
