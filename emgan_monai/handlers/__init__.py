"""emgan_monai.handlers: ignite handlers (TensorBoard image grids, progress bar)."""

from .image_grid import TensorBoardImageGrid, default_image_transform, image_tiles, make_grid
from .progress import ProgressBar

__all__ = ["ProgressBar", "TensorBoardImageGrid", "default_image_transform", "image_tiles", "make_grid"]
