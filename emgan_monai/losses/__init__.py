"""emgan_monai.losses: adversarial (bce, least squares, hinge, Wasserstein), gradient penalty, cycle and identity,
L1 + SSIM pixel loss, mirror/rotation/shift consistency of a generator, diversity of its fine texture, grey-value
profile across a mask boundary, texture-statistics losses (power spectrum in rings and orientation sectors, value and
gradient distributions)."""

from .adversarial import ADVERSARIAL_CRITERIA, AdversarialLoss, clip_weights, gradient_penalty, last_logits
from .cycle import CycleConsistencyLoss, IdentityLoss, LowPassCycleLoss
from .diversity import DiversityLoss
from .equivariance import EquivarianceLoss, dihedral, dihedral_inverse
from .pixel import L1SSIMLoss
from .profile import BoundaryProfileLoss, distance_bands
from .texture import RadialSpectrumLoss, TextureStatisticsLoss, radial_power_spectrum, sorted_values_distance

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "AdversarialLoss",
    "BoundaryProfileLoss",
    "CycleConsistencyLoss",
    "DiversityLoss",
    "EquivarianceLoss",
    "IdentityLoss",
    "L1SSIMLoss",
    "LowPassCycleLoss",
    "RadialSpectrumLoss",
    "TextureStatisticsLoss",
    "clip_weights",
    "dihedral",
    "dihedral_inverse",
    "distance_bands",
    "gradient_penalty",
    "last_logits",
    "radial_power_spectrum",
    "sorted_values_distance",
]
