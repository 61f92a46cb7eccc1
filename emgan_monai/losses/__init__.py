"""emgan_monai.losses: adversarial (bce, least squares, hinge, Wasserstein), gradient penalty, cycle and identity,
L1 + SSIM pixel loss."""

from .adversarial import ADVERSARIAL_CRITERIA, AdversarialLoss, clip_weights, gradient_penalty, last_logits
from .cycle import CycleConsistencyLoss, IdentityLoss, LowPassCycleLoss
from .pixel import L1SSIMLoss

__all__ = [
    "ADVERSARIAL_CRITERIA",
    "AdversarialLoss",
    "CycleConsistencyLoss",
    "IdentityLoss",
    "L1SSIMLoss",
    "LowPassCycleLoss",
    "clip_weights",
    "gradient_penalty",
    "last_logits",
]
