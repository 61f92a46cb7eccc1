"""Weight snapshots with their wall time: the raw material of a 'metric versus wall time' curve."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["WallTimeSnapshots"]


class WallTimeSnapshots:
    """Every ``interval`` iterations save ``network``'s state dict as ``<save_dir>/<prefix>_<iteration>.pt`` and
    append ``iteration, epoch, wall_s`` to ``<save_dir>/snapshots.csv``.

    ``wall_s`` counts seconds since the engine started in this process plus the wall time recorded in the csv by an
    earlier process (a resumed run continues the clock). The files are small plain state dicts (load with
    ``torch.load(..., weights_only=True)``); evaluate them afterwards to plot a metric against training time without
    slowing the training loop.

    Parameters
    ----------
    network
        The module to snapshot (e.g. the D -> S generator); a ``DistributedDataParallel`` wrapper is unwrapped.
    save_dir
        Output folder (created).
    interval
        Iterations between snapshots (> 0).
    prefix
        File name prefix.
    """

    def __init__(self, network: nn.Module, save_dir: str | os.PathLike, interval: int = 100, prefix: str = "g") -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.network = network
        self.save_dir = Path(save_dir)
        self.interval = int(interval)
        self.prefix = prefix
        self._start = 0.0
        self._offset = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self._save)

    def _started(self, engine: Engine) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        self._start = time.perf_counter()
        csv_path = self.save_dir / "snapshots.csv"
        self._offset = 0.0
        if csv_path.is_file():
            rows = [r for r in csv.DictReader(csv_path.open()) if int(r["iteration"]) <= engine.state.iteration]
            self._offset = float(rows[-1]["wall_s"]) if rows else 0.0

    def _save(self, engine: Engine) -> None:
        net = getattr(self.network, "module", self.network)
        it = engine.state.iteration
        path = self.save_dir / f"{self.prefix}_{it:07d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
        csv_path = self.save_dir / "snapshots.csv"
        new = not csv_path.is_file()
        with csv_path.open("a", newline="") as fh:
            w = csv.writer(fh)
            if new:
                w.writerow(["iteration", "epoch", "wall_s", "file"])
            w.writerow([it, engine.state.epoch, f"{self._offset + time.perf_counter() - self._start:.1f}", path.name])
