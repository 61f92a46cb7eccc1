"""Stop any ignite/MONAI trainer whose loss became NaN or infinite, naming the loss and the iteration."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from ignite.engine import Engine, Events

from emgan_monai.engines.utils import scalars
from emgan_monai.errors import NonFiniteLossError

__all__ = ["NonFiniteLossGuard"]


class NonFiniteLossGuard:
    """Raise :class:`~emgan_monai.errors.NonFiniteLossError` after an iteration whose loss is NaN or infinite.

    The GAN trainers of :mod:`emgan_monai.engines` check their losses themselves, before the optimiser step
    (``stop_on_nonfinite``). This handler covers other engines (e.g. MONAI's ``SupervisedTrainer`` in a pixel-loss
    pre-training config): it inspects ``engine.state.output`` after each iteration, so the optimiser has already
    applied that step; pair it with :class:`~emgan_monai.handlers.checkpoint.AtomicCheckpointSaver`, which does not
    save the state as a final checkpoint after this error, so the last interval checkpoint stays the one to resume
    from. Unlike ignite's ``TerminateOnNan`` it stops with an error (a bundle run exits non-zero) that says which
    loss, where, and how to resume.

    Parameters
    ----------
    output_transform
        Maps ``engine.state.output`` to ``{name: float}``; default :func:`emgan_monai.engines.scalars` (dict
        outputs, or the first item of a decollated list, e.g. MONAI's ``{"loss": ...}``).
    keys
        Names to check; ``None`` checks every value the transform returns.
    """

    def __init__(
        self, output_transform: Callable[[Any], dict[str, float]] = scalars, keys: Sequence[str] | None = None
    ) -> None:
        self.output_transform = output_transform
        self.keys = None if keys is None else list(keys)

    def attach(self, engine: Engine) -> None:
        """Check after every iteration."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        values = self.output_transform(engine.state.output)
        checked = values if self.keys is None else {k: values[k] for k in self.keys if k in values}
        for name, value in checked.items():
            if not math.isfinite(float(value)):
                raise NonFiniteLossError(
                    name, float(value), engine.state.epoch, engine.state.iteration, checked, before_step=False
                )
