"""emgan_monai.losses: adversarial (bce, least squares, hinge, Wasserstein), gradient penalty, cycle and identity,
L1 + SSIM pixel loss, radial power-spectrum loss."""

from .adversarial import ADVERSARIAL_CRITERIA, AdversarialLoss, clip_weights, gradient_penalty, last_logits
from .cycle import CycleConsistencyLoss, IdentityLoss, LowPassCycleLoss
from .pixel import L1SSIMLoss
from .spectrum import RadialSpectrumLoss, radial_power_spectrum

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "AdversarialLoss",
    "CycleConsistencyLoss",
    "IdentityLoss",
    "L1SSIMLoss",
    "LowPassCycleLoss",
    "RadialSpectrumLoss",
    "clip_weights",
    "gradient_penalty",
    "last_logits",
    "radial_power_spectrum",
]
