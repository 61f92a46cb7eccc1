"""Generators and discriminators built from MONAI blocks (``spatial_dims`` 2 or 3)."""

from .discriminators import DISCRIMINATOR_KINDS, PatchDiscriminator, SkipPatchDiscriminator, build_discriminator
from .mask_generator import NoiseToMaskGenerator
from .pix2pix_unet import Pix2PixUNet
