"""Checkpoints that survive a kill and never execute code: atomic saving, safe loading.

- :class:`AtomicCheckpointSaver`: MONAI's :class:`~monai.handlers.CheckpointSaver` whose files are written to a
  temporary file in the same folder and then renamed (ignite ``DiskSaver(atomic=True)``). MONAI creates its savers
  with ``atomic=False`` (an old ignite gave the renamed file mode 0600; ignite >= 0.4.10 adds group/other read
  permission after the rename), so a run killed while ``torch.save`` writes leaves a truncated
  ``checkpoint_epoch=N.pt`` that looks like the newest checkpoint. It also refuses to save the current state as
  the "final" checkpoint when training stopped on a non-finite loss or an unloadable checkpoint.
- :func:`load_checkpoint`: ``torch.load(..., weights_only=True)`` with clear errors: a truncated/corrupt file and a
  file holding pickled code both raise :class:`~emgan_monai.errors.CheckpointError` naming the file.
- :func:`is_complete_checkpoint`: cheap check that a file is a complete ``torch.save`` zip archive.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointSaver

from emgan_monai.errors import CheckpointError, NonFiniteLossError

__all__ = ["AtomicCheckpointSaver", "NO_SAVE_ERRORS", "checkpoint_summary", "is_complete_checkpoint", "load_checkpoint"]

logger = logging.getLogger(__name__)

#: exceptions after which the engine's current state must not be saved as a checkpoint
NO_SAVE_ERRORS: tuple[type[BaseException], ...] = (NonFiniteLossError, CheckpointError)


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """``True`` when ``path`` is a complete zip archive as written by ``torch.save`` (the default format).

    A file cut short by a kill lacks the zip central directory at its end and fails this check; the contents are
    not decompressed or unpickled.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return any(name.endswith("data.pkl") for name in names)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)``, translating failures into one clear error.

    Parameters
    ----------
    path
        Checkpoint file.
    map_location
        As :func:`torch.load`.

    Returns
    -------
    Any
        The loaded object (tensors, numbers, strings and plain containers only).

    Raises
    ------
    CheckpointError
        The file is missing, truncated or corrupt, or holds objects that ``weights_only=True`` refuses to build
        (pickled classes or functions: unpickling them could run arbitrary code, so nothing of it is executed).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            path,
            "refused by torch.load(weights_only=True): the file holds pickled objects other than tensors and plain "
            "containers, which could execute code when loaded; nothing from it was run. Load only checkpoints you "
            f"trust, re-saved as plain state dicts ({first[0] if first else 'UnpicklingError'})",
        ) from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(path, f"truncated or corrupt checkpoint ({type(e).__name__}: {e})") from e


class AtomicCheckpointSaver(CheckpointSaver):
    """:class:`monai.handlers.CheckpointSaver` writing every file atomically (temporary file, then rename).

    Takes exactly the arguments of :class:`~monai.handlers.CheckpointSaver`. A kill during saving leaves the
    previous checkpoint untouched and no partial ``*.pt`` file (only an orphan ``tmp*`` file, which
    :func:`~emgan_monai.handlers.resume.latest_checkpoint` ignores). With ``save_final=True``, the state is not
    saved on :class:`~emgan_monai.errors.NonFiniteLossError` or :class:`~emgan_monai.errors.CheckpointError`
    (MONAI's saver would store the diverged or un-resumed state as the final checkpoint).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True  # ignite DiskSaver: NamedTemporaryFile + os.replace

    def exception_raised(self, engine, e: Exception) -> None:
        """Re-raise without saving after a non-finite loss or a bad checkpoint; otherwise MONAI's behaviour."""
        if isinstance(e, NO_SAVE_ERRORS):
            (self.logger or logger).error("not saving the current state as a final checkpoint: %s", e)
            raise e
        super().exception_raised(engine, e)

    @property
    def atomic(self) -> bool:
        """Whether all of this saver's disk writers are atomic."""
        return all(
            c.save_handler._atomic
            for c in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint)
            if c is not None
        )


def checkpoint_summary(state: Mapping[str, Any]) -> str:
    """One line describing a loaded training checkpoint (epoch / iteration of its ``trainer`` entry)."""
    trainer = state.get("trainer") if isinstance(state, Mapping) else None
    if not isinstance(trainer, Mapping) or "iteration" not in trainer:
        return "no trainer state"
    iteration, length = int(trainer["iteration"]), trainer.get("epoch_length")
    epochs = f"{iteration / int(length):g} epochs, " if length else ""
    return f"{epochs}iteration {iteration}"
