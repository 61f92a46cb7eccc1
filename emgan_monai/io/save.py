"""``SaveImage`` / ``SaveImaged`` that refuse to replace existing files unless asked.

MONAI's savers overwrite silently; inference in this project never loses a file a user already has. The target path
is computed exactly as MONAI computes it (``fname_formatter`` + ``folder_layout``) and checked before writing.
"""

from __future__ import annotations

import os

from monai.data import MetaTensor
from monai.transforms import SaveImage, SaveImaged

__all__ = ["SafeSaveImage", "SafeSaveImaged"]


class SafeSaveImage(SaveImage):
    """:class:`monai.transforms.SaveImage` with ``overwrite=False`` by default.

    Raises
    ------
    FileExistsError
        naming the file when the target exists and ``overwrite`` is ``False``.
    """

    def __init__(self, *args, overwrite: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.overwrite = bool(overwrite)

    def target_path(self, img, meta_data: dict | None = None, filename=None) -> str:
        """The path MONAI would write ``img`` to."""
        meta_data = img.meta if isinstance(img, MetaTensor) else meta_data
        if filename is not None:
            return f"{filename}{self.output_ext}"
        return self.folder_layout.filename(**self.fname_formatter(meta_data, self))

    def __call__(self, img, meta_data: dict | None = None, filename=None):
        if not self.overwrite:
            path = self.target_path(img, meta_data, filename)
            if os.path.exists(path):
                raise FileExistsError(
                    f"{path} already exists; choose another output_dir or pass --overwrite true to replace it"
                )
        return super().__call__(img, meta_data, filename)


class SafeSaveImaged(SaveImaged):
    """:class:`monai.transforms.SaveImaged` whose saver is a :class:`SafeSaveImage` (``overwrite=False`` default)."""

    def __init__(self, *args, overwrite: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # same saver, same settings: only the class gains the existence check
        self.saver.__class__ = SafeSaveImage
        self.saver.overwrite = bool(overwrite)
