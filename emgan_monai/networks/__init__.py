"""Generators and discriminators built from MONAI blocks (``spatial_dims`` 2 or 3)."""

from .cyclegan3d import CycleGANGenerator, SpectralNormCritic, SubtomogramClassifier, mc_dropout
from .discriminators import DISCRIMINATOR_KINDS, PatchDiscriminator, SkipPatchDiscriminator, build_discriminator
from .mask_generator import NoiseToMaskGenerator
from .noise_unet import NoiseUNet
from .physics_generator import PhysicsInformedGenerator, build_subtomogram_generator
from .physics_residual import PhysicsResidualGenerator
from .pix2pix_unet import Pix2PixUNet
from .residual_unet import ResidualUNetGenerator
from .two_stage_generator import TwoStageGenerator

__all__ = [
    "DISCRIMINATOR_KINDS",
    "CycleGANGenerator",
    "NoiseToMaskGenerator",
    "NoiseUNet",
    "PatchDiscriminator",
    "PhysicsInformedGenerator",
    "PhysicsResidualGenerator",
    "Pix2PixUNet",
    "ResidualUNetGenerator",
    "SkipPatchDiscriminator",
    "SpectralNormCritic",
    "SubtomogramClassifier",
    "TwoStageGenerator",
    "build_discriminator",
    "build_subtomogram_generator",
    "mc_dropout",
]
