"""Resume training from the newest checkpoint in a folder, if there is one."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

from monai.handlers import CheckpointLoader

__all__ = ["ResumeFromLatest", "latest_checkpoint"]

logger = logging.getLogger(__name__)

_NUM = re.compile(r"=(\d+)")


def latest_checkpoint(folder: str | Path, pattern: str = "checkpoint*.pt") -> Path | None:
    """Newest checkpoint in ``folder`` by the iteration/epoch number in its name (``checkpoint_epoch=12.pt``),
    then by modification time; ``None`` when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.endswith(".tmp")]
    if not files:
        return None

    def key(p: Path) -> tuple[int, float]:
        m = _NUM.findall(p.stem)
        return (int(m[-1]) if m else -1, p.stat().st_mtime)

    return max(files, key=key)


class ResumeFromLatest:
    """Load the newest ``checkpoint*.pt`` of ``checkpoint_dir`` into ``load_dict`` when training starts.

    A thin wrapper around MONAI's :class:`~monai.handlers.CheckpointLoader` (which loads with
    ``weights_only=True``) that finds the file itself, so a bundle can say ``--resume true`` without knowing the
    checkpoint's name. With ``enabled=False`` or no checkpoint in the folder it does nothing (and says so).

    Parameters
    ----------
    checkpoint_dir
        folder written by the run's ``CheckpointSaver``.
    load_dict
        the same dictionary given to ``CheckpointSaver`` (networks, optimisers, schedulers, ``"trainer"``, ``"rng"``).
    """

    def __init__(self, checkpoint_dir: str | Path, load_dict: Mapping, enabled: bool = True,
                 map_location: str | None = "cpu", pattern: str = "checkpoint*.pt") -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.load_dict = dict(load_dict)
        self.enabled = bool(enabled)
        self.map_location = map_location
        self.pattern = pattern
        self.loaded_from: Path | None = None

    def attach(self, engine) -> None:
        if not self.enabled:
            return
        path = latest_checkpoint(self.checkpoint_dir, self.pattern)
        if path is None:
            logger.info("resume: no checkpoint in %s, starting from scratch", self.checkpoint_dir)
            return
        logger.info("resume: loading %s", path)
        self.loaded_from = path
        CheckpointLoader(load_path=str(path), load_dict=self.load_dict, map_location=self.map_location,
                         strict=True).attach(engine)

