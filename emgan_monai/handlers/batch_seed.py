"""Seed torch's global generator from the batch before every iteration: reproducible noise injected by a network.

Generators with noise injection (:class:`~emgan_monai.networks.NoiseUNet`, the stage-1 mask generators,
:class:`~emgan_monai.networks.two_stage_generator.TwoStageGenerator`) draw from torch's global generator in
``forward``. A dataset can carry the seed of each sample's noise (e.g. ``"noise_seed"``); :class:`BatchSeed` seeds the
global generator with the first seed of each batch, after the batch is fetched and before the network runs, so a
sample depends on its seed and batch, not on what ran before (the data loader, other handlers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import torch

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["BatchSeed"]


class BatchSeed:
    """On ``ITERATION_STARTED``, ``torch.manual_seed(int(engine.state.batch[key][0]))``.

    Parameters
    ----------
    key
        Batch entry holding one integer seed per sample (a ``(B,)`` tensor or list once collated).
    """

    def __init__(self, key: str = "noise_seed") -> None:
        self.key = key

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        batch = cast(Mapping[str, Any], engine.state.batch)  # ignite annotates State.batch as int | None
        seeds = batch[self.key]
        torch.manual_seed(int(seeds[0]))
