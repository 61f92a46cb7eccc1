"""Piecewise-constant schedules of any attribute (a loss weight, a probability) over training epochs.

A statistics term that corrects what the adversarial game leaves (e.g. the orientation term of
:class:`~emgan_monai.losses.TextureStatisticsLoss`) can disturb the layout a generator has not learned yet; switching
it on after a warm-up is the usual curriculum. The value is set from ``engine.state.epoch`` at the start of every
epoch, so a run resumed from a checkpoint gets the value of the epoch it resumes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["AttributeSchedule"]


class AttributeSchedule:
    """Set ``obj.<name>`` to ``milestones[k]`` for the largest ``k <= completed epochs`` at every epoch start.

    Parameters
    ----------
    obj
        The object holding the attribute (e.g. a loss module).
    name
        Attribute name; it must exist on ``obj``.
    milestones
        ``{completed epochs: value}``, with an entry for 0 (the value from the first epoch on). JSON keys may be
        strings (``{"0": 0.0, "60": 10.0}``: 0 for epochs 1-60, 10 from epoch 61 on).

    Example (bundle config)::

        "orientation_schedule": {"_target_": "emgan_monai.handlers.schedule.AttributeSchedule",
                                 "obj": "@texture_loss", "name": "w_orientation",
                                 "milestones": {"0": 0.0, "60": 10.0}}
    """

    def __init__(self, obj: Any, name: str, milestones: Mapping[int | str, Any]) -> None:
        if not hasattr(obj, name):
            raise AttributeError(f"AttributeSchedule: {type(obj).__name__} has no attribute {name!r}.")
        steps = sorted((int(k), v) for k, v in milestones.items())
        if not steps or steps[0][0] != 0 or any(k < 0 for k, _ in steps):
            raise ValueError(
                f"AttributeSchedule: milestones need an entry for epoch 0 and no negative keys, got {dict(milestones)}."
            )
        self.obj, self.name, self.steps = obj, name, steps

    def value_at(self, completed_epochs: int) -> Any:
        """The scheduled value once ``completed_epochs`` epochs are done."""
        return [v for k, v in self.steps if k <= completed_epochs][-1]

    def __call__(self, engine: Engine) -> None:
        setattr(self.obj, self.name, self.value_at(engine.state.epoch - 1))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)
