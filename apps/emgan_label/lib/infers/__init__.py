"""MONAI Label inference tasks serving the emgan_monai bundles."""

from .bundle_image import BundleImageInferTask
from .cryoet_generator import CryoETGeneratorInferTask
from .drosophila_generator import DrosophilaGeneratorInferTask
from .writer import write_result

__all__ = ["BundleImageInferTask", "CryoETGeneratorInferTask", "DrosophilaGeneratorInferTask", "write_result"]
