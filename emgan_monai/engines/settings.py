"""Settings of the adversarial trainers, grouped by what they control: the generator's loss terms and the game
against the critic.

A trainer of :mod:`emgan_monai.engines` takes MONAI's ``Trainer`` arguments, its networks and optimisers, the
batch keys it reads, and these two objects; each trainer reads the fields that apply to it and refuses settings it
does not implement (e.g. R1 on a trainer without the few-shot recipe). In a bundle config they are ``_target_``
dicts::

    "generator_loss": {"_target_": "emgan_monai.engines.GeneratorLoss", "lambda_pixel": "@lambda_pixel"},
    "adversarial": {"_target_": "emgan_monai.engines.AdversarialSettings", "loss": "least_squares", "d_steps": 2}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["AdversarialSettings", "GeneratorLoss"]


@dataclass(frozen=True)
class GeneratorLoss:
    """The generator's loss terms besides the adversarial one, each with its weight (``lambda_*`` of the papers).

    The generator loss of a trainer is ``w_adv * adv + sum(lambda_term * term)`` over the terms it has; it reads
    the fields below that name it and refuses the others when they differ from their defaults.

    Attributes
    ----------
    lambda_adv
        Weight of the adversarial term of the paired trainers (1 in pix2pix; a small weight after pixel
        pre-training keeps the fidelity of the pixel model and adds sharpness, the perception-distortion
        trade-off).
    adv_warmup
        The paired trainers' adversarial weight grows linearly from 0 to ``lambda_adv`` over this many iterations
        of the run (counted from ``engine.state.iteration``, so a resumed run continues the ramp); 0 = at once.
    pixel_loss
        Pixel term of the paired trainers: ``"l1"``, ``"l2"``/``"mse"``, ``"smooth_l1"`` or a callable
        ``(fake, label) -> scalar`` (e.g. :class:`~emgan_monai.losses.LowPassCycleLoss` for structure only).
    lambda_pixel
        Its weight (100 in pix2pix).
    texture_loss
        Optional statistics term of the few-shot trainers, a callable ``(fake, real) -> scalar`` such as
        :class:`~emgan_monai.losses.TextureStatisticsLoss`; reported as ``g_texture``.
    lambda_texture
        Its weight (needs ``texture_loss``).
    lambda_cycle
        CycleGAN's cycle-consistency weight (10 in CycleGAN); the A -> B -> A cycle.
    cycle_criterion
        Distance of the A -> B -> A cycle: ``"l1"`` (CycleGAN) or ``"mse"`` (a map the round trip can only estimate
        as a posterior mean, e.g. a small particle read back from a noisy subtomogram: the L1 optimum is then the
        empty map).
    lambda_cycle_b
        Weight of the B -> A -> B cycle; ``None`` = ``lambda_cycle``. A weaker B cycle suits a domain that is mostly
        noise (cryo-ET subtomograms).
    cycle_b_sigma
        Gaussian low-pass (voxels) applied to both sides of the B cycle before its L1
        (:class:`~emgan_monai.losses.LowPassCycleLoss`); 0 = plain L1.
    lambda_adv_a
        CycleGAN: weight of ``G_ba``'s adversarial term (its outputs judged by the domain-A critic); 1 in CycleGAN.
        Below 1 the inverse generator is taught mostly by the two cycles: with very little data a domain-A critic
        rewards plausible outputs that no longer depend on the input (a sharp but wrong map instead of a soft right
        one).
    lambda_identity
        CycleGAN's identity weight relative to ``lambda_cycle`` (0.5 in CycleGAN); 0 skips the identity passes.
    equivariance_loss
        Optional symmetry term of the paired few-shot trainer, a callable
        ``(generator, input, output, k, offset) -> scalar`` (:class:`~emgan_monai.losses.EquivarianceLoss`): the
        generator's output for a mirrored or turned (and, with its ``shift``, shifted) input, turned back, against its
        output for the input; ``k`` is drawn from ``1 .. 7`` and ``offset`` (two integers in ``0 .. 255``) each
        iteration. Reported as ``g_equivariance``.
    lambda_equivariance
        Its weight (needs ``equivariance_loss``).
    profile_loss
        Optional term of the paired few-shot trainer comparing fake and real around the condition, a callable
        ``(fake, real, input) -> scalar`` (:class:`~emgan_monai.losses.BoundaryProfileLoss`: mean grey value in
        bands of distance from the membranes of the input mask). Reported as ``g_profile``.
    lambda_profile
        Its weight (needs ``profile_loss``).
    diversity_loss
        Optional term of the paired few-shot trainer, a callable ``(generator, input, output) -> scalar``
        (:class:`~emgan_monai.losses.DiversityLoss`: a second draw for the same input, a hinge asking the high-passed
        draws to differ). Reported as ``g_diversity``.
    lambda_diversity
        Its weight (needs ``diversity_loss``).
    """

    lambda_adv: float = 1.0
    adv_warmup: int = 0
    pixel_loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "l1"
    lambda_pixel: float = 100.0
    texture_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    lambda_texture: float = 0.0
    lambda_cycle: float = 10.0
    cycle_criterion: str = "l1"
    lambda_cycle_b: float | None = None
    cycle_b_sigma: float = 0.0
    lambda_adv_a: float = 1.0
    lambda_identity: float = 0.5
    equivariance_loss: Callable[[Any, torch.Tensor, torch.Tensor, int, tuple[int, int]], torch.Tensor] | None = None
    lambda_equivariance: float = 0.0
    profile_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    lambda_profile: float = 0.0
    diversity_loss: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    lambda_diversity: float = 0.0

    def __post_init__(self) -> None:
        numbers = (
            "lambda_adv",
            "adv_warmup",
            "lambda_pixel",
            "lambda_texture",
            "lambda_cycle",
            "lambda_cycle_b",
            "cycle_b_sigma",
            "lambda_adv_a",
            "lambda_identity",
            "lambda_equivariance",
            "lambda_profile",
            "lambda_diversity",
        )
        negative = {k: getattr(self, k) for k in numbers if getattr(self, k) is not None and getattr(self, k) < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}.")
        if self.cycle_criterion not in ("l1", "mse"):
            raise ValueError(f"cycle_criterion must be 'l1' or 'mse', got {self.cycle_criterion!r}.")
        if self.lambda_texture > 0 and self.texture_loss is None:
            raise ValueError(f"lambda_texture={self.lambda_texture} needs a texture_loss.")
        if self.lambda_equivariance > 0 and self.equivariance_loss is None:
            raise ValueError(f"lambda_equivariance={self.lambda_equivariance} needs an equivariance_loss.")
        if self.lambda_profile > 0 and self.profile_loss is None:
            raise ValueError(f"lambda_profile={self.lambda_profile} needs a profile_loss.")
        if self.lambda_diversity > 0 and self.diversity_loss is None:
            raise ValueError(f"lambda_diversity={self.lambda_diversity} needs a diversity_loss.")

    def refuse(self, trainer: str, *fields: str) -> None:
        """Raise ``ValueError`` if any of ``fields`` differs from its default (a term ``trainer`` does not have)."""
        _refuse(self, GeneratorLoss(), trainer, fields)


@dataclass(frozen=True)
class AdversarialSettings:
    """The game against the critic: its criterion, its updates per generator update, and how it is kept in check.

    Attributes
    ----------
    loss
        Adversarial criterion of both players. :class:`~emgan_monai.engines.AdversarialTrainer` and its direct
        subclasses: ``"bce"``, ``"least_squares"``, ``"hinge"``, ``"wasserstein"`` or an
        :class:`~emgan_monai.losses.AdversarialLoss`; the few-shot trainers: ``"hinge"`` or ``"nonsaturating"``.
        ``None``: the trainer's default (``"bce"``; few-shot: ``"hinge"``).
    d_steps
        Critic updates per generator update (``n_critic``), all on the same batch and fakes.
    gp_weight
        WGAN-GP weight (10 in Gulrajani et al.); the penalty is computed in float32 outside autocast.
    clip_value
        WGAN weight clipping bound ``c``, applied to all critic parameters after each critic step.
    r1_gamma
        R1 weight ``gamma`` on the (augmented) reals of the few-shot trainers; 0 = no R1.
    r1_interval
        Lazy R1 (StyleGAN2): apply R1 every this many iterations, scaled by the interval.
    augment
        Differentiable augmentation of real and fake critic inputs of the few-shot trainers
        (:class:`~emgan_monai.transforms.diffaugment.DiffAugment`); ``None`` for none.
    pool_size
        Capacity of each image pool of past fakes shown to the critics of the CycleGAN trainer (50 in CycleGAN);
        0 = the current fakes only.
    """

    loss: str | Any | None = None
    d_steps: int = 1
    gp_weight: float | None = None
    clip_value: float | None = None
    r1_gamma: float = 0.0
    r1_interval: int = 1
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    pool_size: int = 0

    def __post_init__(self) -> None:
        if int(self.d_steps) < 1:
            raise ValueError(f"d_steps must be >= 1, got {self.d_steps}.")
        if self.clip_value is not None and self.clip_value <= 0:
            raise ValueError(f"clip_value must be positive, got {self.clip_value}.")
        if self.gp_weight is not None and self.gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {self.gp_weight}.")
        if self.r1_gamma < 0 or int(self.r1_interval) < 1:
            raise ValueError(f"r1_gamma must be >= 0 and r1_interval >= 1, got {self.r1_gamma}, {self.r1_interval}.")
        if int(self.pool_size) < 0:
            raise ValueError(f"pool_size must be >= 0, got {self.pool_size}.")

    def refuse(self, trainer: str, *fields: str) -> None:
        """Raise ``ValueError`` if any of ``fields`` differs from its default (a setting ``trainer`` does not
        implement), so that a config cannot ask for a regulariser that silently does nothing."""
        _refuse(self, AdversarialSettings(), trainer, fields)


def _refuse(settings: Any, default: Any, trainer: str, fields: tuple[str, ...]) -> None:
    changed = {f: getattr(settings, f) for f in fields if getattr(settings, f) != getattr(default, f)}
    if changed:
        raise ValueError(f"{trainer} does not implement {', '.join(changed)} (got {changed}); leave them unset.")
