"""Errors raised by :mod:`emgan_monai.io`.

Every error names the file it is about, so that a failure deep inside a MONAI ``Dataset`` or a
bundle run points at the offending file rather than at a tifffile/mrcfile internals message.
"""

from __future__ import annotations

import os

from emgan_monai.errors import DataError, DataNotFoundError

__all__ = ["ImageReadError", "ImageFileNotFoundError", "ImageTooLargeError", "ImageWriteError"]


class ImageReadError(DataError):
    """An image file could not be read: missing, truncated, corrupt or of an unsupported kind.

    Parameters
    ----------
    filename
        The file that failed.
    problem
        What went wrong, in words.

    Attributes
    ----------
    filename : str
        The file that failed, as given.
    problem : str
        The description of the problem.
    """

    def __init__(self, filename: str | os.PathLike, problem: str) -> None:
        super().__init__(filename, problem)
        ValueError.__init__(self, f"cannot read image file '{self.filename}': {problem}")

    def __str__(self) -> str:
        return f"cannot read image file '{self.filename}': {self.problem}"

    def __reduce__(self):  # keep the error picklable (DataLoader workers send errors between processes)
        return (self.__class__, (self.filename, self.problem))


class ImageFileNotFoundError(ImageReadError, DataNotFoundError):
    """The image file does not exist (also a :class:`FileNotFoundError`)."""

    def __str__(self) -> str:  # OSError.__str__ would drop the message built by ImageReadError
        return f"cannot read image file '{self.filename}': {self.problem}"


class ImageTooLargeError(ImageReadError):
    """The file's header announces more data than the configured limit; nothing was allocated.

    The limit is :func:`emgan_monai.io.base.max_image_bytes` (environment variable ``EMGAN_MAX_IMAGE_BYTES``,
    or :func:`emgan_monai.io.base.set_max_image_bytes`, or the readers' ``max_bytes`` argument).
    """


class ImageWriteError(ValueError):
    """An image cannot be written in the requested format (unsupported dtype, shape or extension).

    Parameters
    ----------
    filename
        The file that was to be written.
    problem
        What went wrong, in words.
    """

    def __init__(self, filename: str | os.PathLike, problem: str) -> None:
        self.filename = os.fspath(filename)
        self.problem = problem
        super().__init__(f"cannot write image file '{self.filename}': {problem}")

    def __reduce__(self):
        return (self.__class__, (self.filename, self.problem))
