"""emgan_monai.handlers: ignite handlers (TensorBoard image grids, progress bar)."""

from .batch_seed import BatchSeed
from .cryoet_records import SynthesisRecord, UncertaintyRecord
from .ema import AveragedModelUpdate, ModelEMA, averaged_model_state, ema_multi_avg_fn
from .image_grid import TensorBoardImageGrid, default_image_transform, image_tiles, make_grid
from .progress import ProgressBar
from .run_seed import RunSeed
from .schedule import AttributeSchedule
from .snapshots import WallTimeSnapshots

__all__ = [
    "AttributeSchedule",
    "AveragedModelUpdate",
    "BatchSeed",
    "ModelEMA",
    "averaged_model_state",
    "ema_multi_avg_fn",
    "ProgressBar",
    "RunSeed",
    "SynthesisRecord",
    "UncertaintyRecord",
    "TensorBoardImageGrid",
    "WallTimeSnapshots",
    "default_image_transform",
    "image_tiles",
    "make_grid",
]
