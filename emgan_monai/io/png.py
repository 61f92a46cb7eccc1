"""A strict PNG reader for MONAI's ``LoadImage``.

MONAI's :class:`~monai.data.PILReader` opens files lazily and lets Pillow's own exceptions through (or, for some
truncated files, returns partly decoded pixels). :class:`PNGReader` decodes each file completely at ``read`` time
through :func:`emgan_monai.io.files.open_png`: the header's size is checked against the image size limit before
decoding, and any corrupt, truncated or non-PNG file raises :class:`~emgan_monai.io.errors.ImageReadError` naming
it (under ``LoadImage(reader=...)`` from ``get_data``, so that MONAI cannot fall back to the lenient
``PILReader``). Output (array layout and metadata) is exactly :class:`~monai.data.PILReader`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from monai.config import PathLike
from monai.data import PILReader
from monai.data.utils import is_supported_format
from monai.utils import ensure_tuple

from emgan_monai.io.base import FailedRead, raise_failed_reads, read_or_defer
from emgan_monai.io.files import open_png

__all__ = ["PNGReader"]


class PNGReader(PILReader):
    """:class:`monai.data.PILReader` for ``.png`` files that validates each file completely when reading it.

    ``get_data`` returns, as MONAI's ``PILReader``, ``(X, Y[, S])`` (spatial axes reversed with
    ``reverse_indexing=True``, the default) and PIL metadata.

    Parameters
    ----------
    max_bytes
        Refuse files whose header announces more bytes; ``None``: :func:`~emgan_monai.io.base.max_image_bytes`.
    kwargs
        As :class:`monai.data.PILReader` (``converter``, ``reverse_indexing``).
    """

    def __init__(self, max_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_bytes = max_bytes

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """``True`` when every file name ends in ``.png``."""
        return is_supported_format(filename, ("png",))

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any):  # type: ignore[override]  # files, not arrays
        """Decode and check each file (:func:`~emgan_monai.io.files.open_png`); return the PIL image(s)."""
        images = []
        for name in ensure_tuple(data):
            img = read_or_defer(functools.partial(open_png, name, max_bytes=kwargs.get("max_bytes", self.max_bytes)))
            if callable(self.converter) and not isinstance(img, FailedRead):
                img = self.converter(img)
            images.append(img)
        return images if len(images) > 1 else images[0]

    def get_data(self, img):
        """As :meth:`monai.data.PILReader.get_data`; raises a failed read's error (see :mod:`emgan_monai.io.base`)."""
        raise_failed_reads(img)
        return super().get_data(img)
