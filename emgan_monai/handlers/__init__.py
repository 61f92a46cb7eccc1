"""emgan_monai.handlers: ignite handlers (TensorBoard image grids, progress bar)."""

from .ema import ModelEMA, averaged_model_state, ema_multi_avg_fn
from .image_grid import TensorBoardImageGrid, default_image_transform, image_tiles, make_grid
from .progress import ProgressBar
from .schedule import AttributeSchedule
from .snapshots import WallTimeSnapshots

__all__ = ["AttributeSchedule", "ModelEMA", "averaged_model_state", "ema_multi_avg_fn", "ProgressBar", "TensorBoardImageGrid", "WallTimeSnapshots", "default_image_transform", "image_tiles", "make_grid"]
