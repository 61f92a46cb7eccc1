"""``SaveImage`` / ``SaveImaged`` that refuse to replace existing files unless asked, and to leave their folder.

MONAI's savers overwrite silently; inference in this project never loses a file a user already has. The target path
is computed exactly as MONAI computes it (``fname_formatter`` + ``folder_layout``) and checked before writing: it
must not exist (unless ``overwrite``) and must lie inside ``output_dir`` (a name derived from an input, e.g. through
``data_root_dir`` or a crafted ``filename_or_obj``, cannot write elsewhere). :func:`safe_output_path` does the same
for code that builds output names itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import cast

from monai.data import MetaTensor
from monai.transforms import SaveImage, SaveImaged

from emgan_monai.errors import UnsafePathError

__all__ = [
    "OUTPUT_NAME_KEY",
    "SafeSaveImage",
    "SafeSaveImaged",
    "check_inside",
    "output_name_formatter",
    "safe_output_path",
    "sanitize_filename",
]

#: Metadata key of an image's output name, when it is not the input file's stem (set by the pipeline, e.g.
#: :class:`~emgan_monai.transforms.OutputNamed`, to keep ``x.mrc`` and ``x.pdb`` from writing the same file).
OUTPUT_NAME_KEY = "output_name"

_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\:]")


def sanitize_filename(name: str, replacement: str = "_") -> str:
    """A file name derived from an input, made safe to join onto an output folder.

    Path separators (``/``, ``\\``), drive colons, NUL and other control characters become ``replacement``;
    names that are empty or only dots (``""``, ``"."``, ``".."``) are refused. Percent-escapes such as ``%2f``
    are left as literal characters (they are never decoded, so they cannot become separators).

    Raises
    ------
    UnsafePathError
        ``name`` is empty or consists of dots only.
    """
    clean = _UNSAFE_CHARS.sub(replacement, str(name)).strip()
    if not clean or set(clean) <= {"."}:
        raise UnsafePathError(name, "(a file name)")
    return clean


def check_inside(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Return ``path`` resolved, raising :class:`~emgan_monai.errors.UnsafePathError` unless it lies in ``folder``.

    Symbolic links in the existing part of the path are resolved, so a link pointing out of ``folder`` is caught.
    """
    root = Path(folder).expanduser().resolve()
    target = Path(path).expanduser()
    target = (target if target.is_absolute() else Path.cwd() / target).resolve()
    if target != root and root not in target.parents:
        raise UnsafePathError(path, folder)
    return target


def safe_output_path(output_dir: str | os.PathLike, name: str, suffix: str = "") -> Path:
    """``output_dir / (sanitize_filename(name) + suffix)``, checked to stay inside ``output_dir``.

    Parameters
    ----------
    output_dir
        Output folder.
    name
        Name derived from an input (e.g. its stem); may contain anything.
    suffix
        Appended as is (e.g. ``"_em.tif"``).
    """
    path = Path(output_dir) / (sanitize_filename(name) + suffix)
    check_inside(path, output_dir)
    return path


def output_name_formatter(metadict: dict | None, saver) -> dict:
    """``output_name_formatter`` for MONAI's savers: the subject is ``metadict[OUTPUT_NAME_KEY]`` when set, else (as
    MONAI's default) the input's ``filename_or_obj``; the patch index is kept. Use it in a config as
    ``"output_name_formatter": "$emgan_monai.io.output_name_formatter"``."""
    from monai.data.folder_layout import default_name_formatter

    out = default_name_formatter(metadict or {}, saver)  # MONAI treats None and {} alike
    name = (metadict or {}).get(OUTPUT_NAME_KEY)
    if name:
        out["subject"] = sanitize_filename(str(name))
    return out


class SafeSaveImage(SaveImage):
    """:class:`monai.transforms.SaveImage` with ``overwrite=False`` by default and output kept in ``output_dir``.

    Raises
    ------
    FileExistsError
        naming the file when the target exists and ``overwrite`` is ``False``.
    UnsafePathError
        when the target path (derived from the input's ``filename_or_obj``) lies outside ``output_dir``.
    """

    def __init__(self, *args, overwrite: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.overwrite = bool(overwrite)

    def target_path(self, img, meta_data: dict | None = None, filename=None) -> str:
        """The path MONAI would write ``img`` to."""
        meta_data = img.meta if isinstance(img, MetaTensor) else meta_data
        if filename is not None:
            return f"{filename}{self.output_ext}"
        return os.fspath(self.folder_layout.filename(**self.fname_formatter(meta_data, self)))

    def __call__(self, img, meta_data: dict | None = None, filename=None):
        path = self.target_path(img, meta_data, filename)
        if filename is None:  # derived from the input's name: must stay in output_dir
            output_dir = getattr(self.folder_layout, "output_dir", None)  # FolderLayout's (FolderLayoutBase has none)
            if output_dir is None:
                raise AttributeError(f"{type(self.folder_layout).__name__} has no output_dir to keep {path} in")
            check_inside(path, output_dir)
        if not self.overwrite and os.path.exists(path):
            raise FileExistsError(
                f"{path} already exists; choose another output_dir or pass --overwrite true to replace it"
            )
        return super().__call__(img, meta_data, filename)


class SafeSaveImaged(SaveImaged):
    """:class:`monai.transforms.SaveImaged` whose saver is a :class:`SafeSaveImage` (``overwrite=False`` default)."""

    def __init__(self, *args, overwrite: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # same saver, same settings: only the class gains the existence and containment checks
        self.saver.__class__ = SafeSaveImage
        cast(SafeSaveImage, self.saver).overwrite = bool(overwrite)  # mypy does not follow the __class__ change
