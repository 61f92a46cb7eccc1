"""Seed every random generator when an engine starts: one reproducible stream of draws for a whole run.

A generator that draws its noise from torch's global generator in ``forward`` (the cryo-ET generators) gives, for a
fixed seed, the same outputs in the same order whatever was built or run before the engine started (networks with
random initialisation, other configs). Pair it with a data loader that has its own ``generator`` so that starting
the loader does not draw from the global one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monai.utils import set_determinism

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["RunSeed"]


class RunSeed:
    """On ``STARTED``, ``monai.utils.set_determinism(seed=seed)`` (torch, numpy and ``random``).

    Parameters
    ----------
    seed
        The seed of the run.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        set_determinism(seed=self.seed)
