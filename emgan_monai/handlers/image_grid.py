"""TensorBoard image grids of the tensors a GAN trainer reports (inputs, fakes, reals, reconstructions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.transforms import rescale_array
from monai.utils import optional_import

from emgan_monai.visualize import make_grid

if TYPE_CHECKING:
    from ignite.engine import Engine
    from torch.utils.tensorboard import SummaryWriter
else:
    Engine, _ = optional_import("ignite.engine", name="Engine")
    SummaryWriter, _ = optional_import("torch.utils.tensorboard", name="SummaryWriter")
Events, _ = optional_import("ignite.engine", name="Events")

__all__ = ["TensorBoardImageGrid", "image_tiles", "make_grid", "default_image_transform"]


def default_image_transform(output: Any) -> dict[str, torch.Tensor]:
    """All batched image tensors (``ndim >= 4``) of a trainer output dict, by name."""
    if isinstance(output, (list, tuple)):
        output = output[0] if output else {}
    if not isinstance(output, Mapping):
        return {}
    return {str(k): v for k, v in output.items() if isinstance(v, torch.Tensor) and v.ndim >= 4}


def _unit_range(x: np.ndarray) -> np.ndarray:
    """``x`` min-max scaled to ``[0, 1]``, float32 (MONAI's ``rescale_array`` returns the input's array type)."""
    return np.asarray(rescale_array(x, 0.0, 1.0, dtype=np.float32))


def image_tiles(images: torch.Tensor | np.ndarray, max_images: int = 4) -> list[list[np.ndarray]]:
    """Per-sample display tiles of a batch, each min-max scaled to ``[0, 1]``.

    Parameters
    ----------
    images
        ``(B, C, H, W)`` or ``(B, C, H, W, D)``; for 3D the middle slice along the last axis is shown.
    max_images
        Number of samples kept.

    Returns
    -------
    list[list[np.ndarray]]
        For each sample, a list of ``(3, H, W)`` float32 tiles: one RGB tile when ``C == 3``, otherwise one grey
        tile per channel.
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    if arr.ndim == 5:
        arr = arr[..., arr.shape[-1] // 2]
    if arr.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W) or (B, C, H, W, D), got {arr.shape}.")
    rows = []
    for sample in arr[:max_images]:
        if sample.shape[0] == 3:
            rows.append([_unit_range(sample)])
        else:
            rows.append([np.repeat(_unit_range(ch[None]), 3, axis=0) for ch in sample])
    return rows


class TensorBoardImageGrid:
    """Write image grids of the engine output to TensorBoard.

    ``output_transform(engine.state.output)`` returns either a dict of named batches, written as one grid per name
    under ``f"{tag}/{name}"`` (rows: samples, columns: channels unless ``C == 3``), or a tuple/list of batches with
    the same spatial size, written as a single grid under ``tag`` whose rows are samples and whose columns are the
    batches side by side (e.g. ``input | fake | real``). Batches are ``(B, C, H, W)`` or ``(B, C, H, W, D)`` (middle
    slice along the last axis); every tile is min-max scaled.

    Parameters
    ----------
    summary_writer
        A ``torch.utils.tensorboard.SummaryWriter``; one is created in ``log_dir`` when ``None``.
    log_dir
        Folder of the created writer.
    output_transform
        See above; default: every tensor with ``ndim >= 4`` in the output dict.
    tag
        Tag (prefix) of the images.
    max_images
        Samples shown per batch.
    interval
        Write every ``interval`` epochs (``epoch_level``) or iterations.
    epoch_level
        Write at ``EPOCH_COMPLETED`` (step: epoch) rather than ``ITERATION_COMPLETED`` (step: iteration).
    """

    def __init__(
        self,
        summary_writer: SummaryWriter | None = None,
        log_dir: str = "./runs",
        output_transform: Callable[[Any], Any] = default_image_transform,
        tag: str = "images",
        max_images: int = 4,
        interval: int = 1,
        epoch_level: bool = True,
    ) -> None:
        if max_images < 1 or interval < 1:
            raise ValueError(f"max_images and interval must be >= 1, got {max_images} and {interval}.")
        self._writer = summary_writer
        self._own_writer = summary_writer is None
        self.log_dir = log_dir
        self.output_transform = output_transform
        self.tag = tag
        self.max_images = int(max_images)
        self.interval = int(interval)
        self.epoch_level = epoch_level

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            self._writer = SummaryWriter(log_dir=self.log_dir)
        return self._writer

    def attach(self, engine: Engine) -> None:
        """Register on ``EPOCH_COMPLETED`` or ``ITERATION_COMPLETED`` every ``interval`` events."""
        event = Events.EPOCH_COMPLETED if self.epoch_level else Events.ITERATION_COMPLETED
        engine.add_event_handler(event(every=self.interval), self)
        if self._own_writer:
            engine.add_event_handler(Events.COMPLETED, self.close)

    def grids(self, data: Any) -> dict[str, np.ndarray]:
        """``tag -> (3, H, W)`` grid for the transformed output ``data`` (a dict or a sequence of batches)."""
        if isinstance(data, Mapping):
            return {
                f"{self.tag}/{name}": make_grid(image_tiles(value, self.max_images))
                for name, value in data.items()
                if value is not None
            }
        if isinstance(data, (list, tuple)):
            per_batch = [image_tiles(value, self.max_images) for value in data if value is not None]
            if not per_batch:
                return {}
            nrows = min(len(rows) for rows in per_batch)
            rows = [[tile for rows_b in per_batch for tile in rows_b[r]] for r in range(nrows)]
            return {self.tag: make_grid(rows)}
        if isinstance(data, (torch.Tensor, np.ndarray)):
            return {self.tag: make_grid(image_tiles(data, self.max_images))}
        raise ValueError(f"output_transform must return a dict, a sequence or a tensor, got {type(data).__name__}.")

    def __call__(self, engine: Engine) -> None:
        step = engine.state.epoch if self.epoch_level else engine.state.iteration
        for tag, grid in self.grids(self.output_transform(engine.state.output)).items():
            self.writer.add_image(tag, grid, global_step=step, dataformats="CHW")
        self.writer.flush()

    def close(self, engine: Engine | None = None) -> None:
        """Close the writer if this handler created it."""
        if self._own_writer and self._writer is not None:
            self._writer.close()
            self._writer = None
