"""Image I/O for microscopy and cryo-EM in MONAI pipelines.

- :class:`MRCReader` / :class:`MRCWriter`: MRC maps, tomograms, stacks (mrcfile), voxel size in Angstrom.
- :class:`TiffReader` / :class:`TiffWriter`: 8/16-bit and float TIFF, 2D/3D, ImageJ/OME axes and
  voxel size (tifffile).
- :class:`AtomicModelReader`: PDB / mmCIF atomic models as density maps at a given voxel size (not auto-selected).
- :func:`read_image` / :func:`write_image`: plain numpy helpers for scripts (MRC, TIFF, PNG).

Importing this package registers the writers with MONAI (``SaveImage(output_ext=".mrc")`` and
``".tif"`` pick them) and adds the readers to ``LoadImage``'s automatic reader selection.
Readers return spatial axes ``(X, Y[, Z])`` like MONAI's ITK reader; see :mod:`emgan_monai.io.base`.
"""

from __future__ import annotations

from monai.data import image_writer
from monai.transforms.io.array import SUPPORTED_READERS

from emgan_monai.io.atomic_models import AtomicModelReader
from emgan_monai.io.errors import ImageFileNotFoundError, ImageReadError, ImageWriteError
from emgan_monai.io.files import image_format, read_image, write_image
from emgan_monai.io.mrc import MRC_SUFFIXES, MRCImage, MRCReader, MRCWriter, read_mrc, write_mrc
from emgan_monai.io.png import PNGReader
from emgan_monai.io.save import SafeSaveImage, SafeSaveImaged, output_name_formatter
from emgan_monai.io.tiff import TIFF_SUFFIXES, TiffImage, TiffReader, TiffWriter, read_tiff, write_tiff

__all__ = [
    "AtomicModelReader",
    "ImageFileNotFoundError",
    "ImageReadError",
    "ImageWriteError",
    "SafeSaveImage",
    "SafeSaveImaged",
    "MRCImage",
    "MRCReader",
    "MRCWriter",
    "PNGReader",
    "TiffImage",
    "TiffReader",
    "TiffWriter",
    "image_format",
    "output_name_formatter",
    "read_image",
    "read_mrc",
    "read_tiff",
    "register_with_monai",
    "write_image",
    "write_mrc",
    "write_tiff",
]


def register_with_monai() -> None:
    """Make MONAI's ``SaveImage``/``LoadImage`` use our writers/readers by file extension.

    ``monai.data.register_writer`` puts :class:`MRCWriter` first for MRC extensions and
    :class:`TiffWriter` ahead of MONAI's ``PILWriter`` (8-bit, no voxel size) for ``.tif``/``.tiff``.
    The readers are added to ``monai.transforms.io.array.SUPPORTED_READERS``, which ``LoadImage()``
    (no ``reader=``) instantiates and matches by suffix. Idempotent.
    """
    if not image_writer.SUPPORTED_WRITERS:
        image_writer.init()  # MONAI fills its defaults lazily only while the registry is empty
    for ext, writer in [*((e, MRCWriter) for e in MRC_SUFFIXES), *((e, TiffWriter) for e in TIFF_SUFFIXES)]:
        current = image_writer.SUPPORTED_WRITERS.get(ext, ())
        if not current or current[0] is not writer:
            image_writer.SUPPORTED_WRITERS[ext] = tuple(w for w in current if w is not writer)
            image_writer.register_writer(ext, writer)
    SUPPORTED_READERS.setdefault("mrcreader", MRCReader)
    SUPPORTED_READERS.setdefault("tiffreader", TiffReader)
    SUPPORTED_READERS.setdefault("pngreader", PNGReader)  # tried before MONAI's lenient PILReader for .png


register_with_monai()
