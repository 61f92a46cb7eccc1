"""emgan_monai.engines: MONAI/ignite trainers for unconditional, paired (pix2pix) and unpaired (CycleGAN) GANs."""

from .base import AdversarialTrainer, frozen
from .cycle import CycleGANTrainer
from .paired import PIXEL_LOSSES, PairedGANTrainer
from .pretrain import pretrain_inverse, random_cube_rotation
from .settings import AdversarialSettings, GeneratorLoss
from .unconditional import UnconditionalGANTrainer
from .utils import ImagePool, LinearDecayLR, RandomState, scalars

__all__ = [
    "AdversarialSettings",
    "AdversarialTrainer",
    "CycleGANTrainer",
    "GeneratorLoss",
    "ImagePool",
    "LinearDecayLR",
    "PIXEL_LOSSES",
    "PairedGANTrainer",
    "RandomState",
    "UnconditionalGANTrainer",
    "frozen",
    "pretrain_inverse",
    "random_cube_rotation",
    "scalars",
]
