"""Resume training from the newest complete checkpoint in a folder, if there is one."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from emgan_monai.handlers.checkpoint import checkpoint_summary, is_complete_checkpoint, load_checkpoint

__all__ = ["ResumeFromLatest", "latest_checkpoint"]

logger = logging.getLogger(__name__)

_NUM = re.compile(r"=(\d+)")


def latest_checkpoint(folder: str | Path, pattern: str = "checkpoint*.pt", complete_only: bool = True) -> Path | None:
    """Newest checkpoint in ``folder`` by the iteration/epoch number in its name (``checkpoint_epoch=12.pt``),
    then by modification time; ``None`` when there is none.

    Parameters
    ----------
    folder
        Folder written by a ``CheckpointSaver``.
    pattern
        Glob pattern of the checkpoint files.
    complete_only
        Skip files that are not complete ``torch.save`` archives (cut short by a kill during a non-atomic save,
        see :func:`~emgan_monai.handlers.checkpoint.is_complete_checkpoint`), with a warning naming them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.endswith(".tmp")]
    if not files:
        return None

    def key(p: Path) -> tuple[int, float]:
        m = _NUM.findall(p.stem)
        return (int(m[-1]) if m else -1, p.stat().st_mtime)

    for path in sorted(files, key=key, reverse=True):
        if not complete_only or is_complete_checkpoint(path):
            return path
        logger.warning("resume: skipping %s: not a complete checkpoint (cut short while being written?)", path)
    return None


class ResumeFromLatest:
    """Load the newest complete ``checkpoint*.pt`` of ``checkpoint_dir`` into ``load_dict`` when training starts.

    The file is found and read when the handler is attached (before training starts), with
    ``torch.load(weights_only=True)`` (:func:`~emgan_monai.handlers.checkpoint.load_checkpoint`): a checkpoint that
    is truncated or holds pickled code raises :class:`~emgan_monai.errors.CheckpointError` there, naming the file,
    and nothing from it is executed. The objects are restored at ``Events.STARTED``, as MONAI's
    :class:`~monai.handlers.CheckpointLoader` does (same ``strict`` semantics, same ``max_epochs`` handling), so
    a bundle can say ``--resume true`` without knowing the checkpoint's name. With ``enabled=False`` or no
    checkpoint in the folder it does nothing (and says so).

    Parameters
    ----------
    checkpoint_dir
        folder written by the run's ``CheckpointSaver``.
    load_dict
        the same dictionary given to ``CheckpointSaver`` (networks, optimisers, schedulers, ``"trainer"``, ``"rng"``).
    enabled
        ``False`` disables resuming (the bundle's ``resume`` key).
    map_location
        As :func:`torch.load`.
    pattern
        Glob pattern of the checkpoint files.
    """

    def __init__(
        self,
        checkpoint_dir: str | Path,
        load_dict: Mapping,
        enabled: bool = True,
        map_location: str | None = "cpu",
        pattern: str = "checkpoint*.pt",
    ) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.load_dict = dict(load_dict)
        if not self.load_dict:
            raise ValueError("ResumeFromLatest needs a non-empty load_dict")
        self.enabled = bool(enabled)
        self.map_location = map_location
        self.pattern = pattern
        self.loaded_from: Path | None = None
        self._checkpoint: Any = None

    def attach(self, engine: Engine) -> None:
        """Find and read the checkpoint now; restore it into ``load_dict`` when ``engine`` starts."""
        if not self.enabled:
            return
        path = latest_checkpoint(self.checkpoint_dir, self.pattern)
        if path is None:
            logger.info("resume: no checkpoint in %s, starting from scratch", self.checkpoint_dir)
            return
        self._checkpoint = load_checkpoint(path, map_location=self.map_location)
        self.loaded_from = path
        logger.info("resume: read %s (%s)", path, checkpoint_summary(self._checkpoint))
        engine.add_event_handler(Events.STARTED, self._restore)

    def _restore(self, engine: Engine) -> None:
        checkpoint = self._checkpoint
        first = next(iter(self.load_dict))
        if len(self.load_dict) == 1 and first not in checkpoint:  # a bare state dict for a single object
            checkpoint = {first: checkpoint}
        checkpoint = _bare_module_states(self.load_dict, checkpoint)
        prior_max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.load_dict, checkpoint=checkpoint, strict=True)
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise ValueError(
                f"epoch {engine.state.epoch} of the checkpoint {self.loaded_from} is larger than max_epochs "
                f"{prior_max_epochs} of this run"
            )
        engine.state.max_epochs = prior_max_epochs  # keep this run's max_epochs (e.g. extended training)
        self._checkpoint = None  # free the memory
        logger.info(
            "resume: restored %s at epoch %d, iteration %d",
            self.loaded_from,
            engine.state.epoch,
            engine.state.iteration,
        )


def _bare_module_states(load_dict: Mapping[str, Any], checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Strip the ``module.`` prefix of network entries written from a ``DistributedDataParallel``/``DataParallel``
    wrapper's own ``state_dict()`` (ignite's savers already store the bare module), so that such a checkpoint of a
    multi-GPU run resumes into plain networks on one device. Entries for wrapped networks are left as they are:
    ignite unwraps those on loading."""
    out = dict(checkpoint)
    for key, obj in load_dict.items():
        state = out.get(key)
        wrapped = isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel))
        if (
            isinstance(obj, torch.nn.Module)
            and not wrapped
            and isinstance(state, Mapping)
            and state
            and all(isinstance(k, str) and k.startswith("module.") for k in state)
        ):
            state = dict(state)
            consume_prefix_in_state_dict_if_present(state, "module.")
            out[key] = state
    return out
