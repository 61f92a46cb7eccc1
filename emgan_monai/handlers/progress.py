"""tqdm progress bar usable from a bundle's ``handlers`` list."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch.distributed as dist
from monai.utils import optional_import

from emgan_monai.engines.utils import scalars

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", name="Engine")
IgniteProgressBar, _ = optional_import("ignite.handlers", name="ProgressBar")

__all__ = ["ProgressBar"]


class ProgressBar:
    """Thin wrapper of :class:`ignite.handlers.ProgressBar` whose ``attach`` takes only the engine.

    Parameters
    ----------
    output_transform
        Maps ``engine.state.output`` to a dict of scalars shown as the bar postfix (default
        :func:`emgan_monai.engines.scalars`).
    desc
        Bar description.
    persist
        Keep the bar after each epoch.
    metric_names
        ``engine.state.metrics`` entries to show (``"all"`` for all).
    rank_zero_only
        Under ``torch.distributed`` only rank 0 shows a bar.
    tqdm_kwargs
        Passed to ``tqdm``.
    """

    def __init__(
        self,
        output_transform: Callable[[Any], Any] | None = scalars,
        desc: str | None = None,
        persist: bool = False,
        metric_names: str | list[str] | None = None,
        rank_zero_only: bool = True,
        **tqdm_kwargs: Any,
    ) -> None:
        if desc is not None:
            tqdm_kwargs["desc"] = desc
        self.output_transform = output_transform
        self.metric_names = metric_names
        self.rank_zero_only = rank_zero_only
        self.pbar = IgniteProgressBar(persist=persist, **tqdm_kwargs)

    def attach(self, engine: Engine) -> None:
        if self.rank_zero_only and dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return
        self.pbar.attach(engine, metric_names=self.metric_names, output_transform=self.output_transform)
