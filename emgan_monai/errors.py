"""Error types of :mod:`emgan_monai`.

Every error names what it is about (a file, a folder, a loss, a checkpoint) and the problem, so that a failure deep
inside a MONAI ``Dataset`` or a bundle run points at the cause rather than at library internals. They subclass the
built-in types callers already catch:

=============================  ==========================================  =============================================
error                          subclass of                                 raised when
=============================  ==========================================  =============================================
:class:`DataError`             ``ValueError``                              input data are unusable (shape, dtype, NaN,
                                                                           constant, too small, mismatched pairs ...)
:class:`DataNotFoundError`     :class:`DataError`, ``FileNotFoundError``   a file or folder is missing or empty
``ImageReadError``             :class:`DataError`                          an image file is corrupt / truncated
                                                                           (:mod:`emgan_monai.io.errors`)
``ImageTooLargeError``         ``ImageReadError``                          a header announces more bytes than allowed
:class:`CheckpointError`       ``ValueError``                              a checkpoint is unreadable or unsafe
:class:`UnsafePathError`       ``ValueError``                              an output name would leave its folder
:class:`NonFiniteLossError`    ``FloatingPointError``                      a training loss became NaN or infinite
=============================  ==========================================  =============================================

This module imports nothing from the package, so any sub-package may import it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

__all__ = [
    "CheckpointError",
    "DataError",
    "DataNotFoundError",
    "NonFiniteLossError",
    "UnsafePathError",
]


class DataError(ValueError):
    """Input data that cannot be used, naming the file (or folder) and the problem.

    Parameters
    ----------
    source
        The file or folder concerned (``""`` when there is none).
    problem
        What is wrong, in words.

    Attributes
    ----------
    filename : str
        ``source`` as a string.
    problem : str
        The description of the problem.
    """

    def __init__(self, source: str | os.PathLike, problem: str) -> None:
        self.filename = os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.filename}: {problem}" if self.filename else problem)

    def __reduce__(self):  # picklable, so DataLoader workers can send it to the main process
        return (self.__class__, (self.filename, self.problem))


class DataNotFoundError(DataError, FileNotFoundError):
    """A file or folder is missing or holds no usable file (also a :class:`FileNotFoundError`)."""

    def __str__(self) -> str:  # OSError.__str__ would drop the message built by DataError
        return f"{self.filename}: {self.problem}" if self.filename else self.problem


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: truncated, corrupt, or refused by ``torch.load(weights_only=True)``.

    Parameters
    ----------
    filename
        The checkpoint file.
    problem
        What went wrong.
    """

    def __init__(self, filename: str | os.PathLike, problem: str) -> None:
        self.filename = os.fspath(filename)
        self.problem = problem
        super().__init__(f"cannot load checkpoint '{self.filename}': {problem}")

    def __reduce__(self):
        return (self.__class__, (self.filename, self.problem))


class UnsafePathError(ValueError):
    """An output file name derived from an input would be written outside its output folder.

    Parameters
    ----------
    path
        The offending path or name.
    folder
        The folder the output must stay in.
    """

    def __init__(self, path: str | os.PathLike, folder: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.folder = os.fspath(folder)
        super().__init__(f"refusing to write '{self.path}': it is not inside the output folder '{self.folder}'")

    def __reduce__(self):
        return (self.__class__, (self.path, self.folder))


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite; training stops before the optimiser applies it.

    Parameters
    ----------
    loss_name
        The total loss that was not finite (``"g_loss"``, ``"d_loss"``, ...).
    value
        Its value.
    epoch, iteration
        Where it happened (ignite's 1-based counters: ``iteration`` counts from the start of training).
    components
        The loss terms of the same phase (unweighted), to show which one diverged.
    before_step
        Whether the error was raised before the optimiser step (the trainers' own check) or after the iteration
        (:class:`~emgan_monai.handlers.nonfinite.NonFiniteLossGuard`); only changes the message.

    Attributes
    ----------
    loss_name, value, epoch, iteration, components
        As given.
    """

    def __init__(
        self,
        loss_name: str,
        value: float,
        epoch: int,
        iteration: int,
        components: Mapping[str, float] | None = None,
        before_step: bool = True,
    ) -> None:
        self.before_step = bool(before_step)
        self.loss_name = loss_name
        self.value = float(value)
        self.epoch = int(epoch)
        self.iteration = int(iteration)
        self.components = dict(components or {})
        bad = [k for k, v in self.components.items() if not math.isfinite(v)]
        terms = ", ".join(f"{k}={v:.6g}" for k, v in self.components.items())
        super().__init__(
            f"non-finite {loss_name} ({self.value}) at epoch {self.epoch}, iteration {self.iteration}"
            + (f"; terms: {terms}" if terms else "")
            + (f" (non-finite: {', '.join(bad)})" if bad else "")
            + (
                ". Training stopped before the optimiser step, so the weights were not updated with it"
                if self.before_step
                else ". Training stopped after this iteration"
            )
            + "; no checkpoint was written from this state and the last good checkpoint is kept. Resume from it with "
            "'--resume true' (a bundle run) after lowering the learning rate or checking the input data "
            "(NaN/Inf or constant images), or the same divergence will recur."
        )

    def __reduce__(self):
        return (
            self.__class__,
            (self.loss_name, self.value, self.epoch, self.iteration, self.components, self.before_step),
        )
