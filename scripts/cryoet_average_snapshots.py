"""Uniform average of a cryoet_gan run's generator snapshots (stochastic weight averaging over the LR-decay phase).

``train.json`` saves the EMA generator every ``snapshot_interval`` iterations to ``<run>/snapshots/g_ds_<it>.pt``.
This script averages every floating-point tensor of the snapshots from ``--from_iteration`` on and writes a plain
state dict loadable by the same network (for the physics-informed generator: the average of its 15 physical
parameters). See the cryoet_gan README ("Spread over seeds") for what it did on the held-out data.

Example::

    python scripts/cryoet_average_snapshots.py bundles/cryoet_gan/runs/physics --from_iteration 2160 \\
        --out bundles/cryoet_gan/runs/physics/model_averaged.pt
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch


def average_snapshots(run_dir: Path, from_iteration: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Average of the snapshots with ``iteration >= from_iteration``; returns the state dict and the files used."""
    rows = [
        r
        for r in csv.DictReader((run_dir / "snapshots" / "snapshots.csv").open())
        if int(r["iteration"]) >= from_iteration
    ]
    if not rows:
        raise ValueError(f"{run_dir}: no snapshot at or after iteration {from_iteration}")
    states = [torch.load(run_dir / "snapshots" / r["file"], map_location="cpu", weights_only=True) for r in rows]
    avg = {}
    for key, value in states[0].items():
        if value.dtype.is_floating_point:
            avg[key] = sum(s[key] for s in states) / len(states)
        else:
            avg[key] = states[-1][key]
    return avg, [r["file"] for r in rows]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--from_iteration", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    avg, used = average_snapshots(args.run_dir, args.from_iteration)
    if args.out.exists():
        raise FileExistsError(f"{args.out} exists")
    torch.save(avg, args.out)
    print(f"averaged {len(used)} snapshots ({used[0]} .. {used[-1]}) -> {args.out}")


if __name__ == "__main__":
    main()
