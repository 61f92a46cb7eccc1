"""Few-shot GAN trainers: hinge / non-saturating loss, lazy R1, DiffAugment; unconditional and paired.

The recipe of the few-shot GAN literature (Miyato et al. 2018; Mescheder et al. 2018; Zhao et al. 2020; Karras et
al. 2020) as one mixin (:class:`FewShotRecipe`: discriminator step, adversarial generator term, texture term) on top of
:class:`~emgan_monai.engines.UnconditionalGANTrainer` (:class:`FewShotGANTrainer`) and
:class:`~emgan_monai.engines.PairedGANTrainer` (:class:`PairedFewShotGANTrainer`): everything else (data, latent
noise from ``engine.rng``, non-finite checks, checkpointable state, handlers) is inherited. The EMA of the generator
weights is a handler (:class:`~emgan_monai.handlers.AveragedModelUpdate`) that the config attaches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer

from emgan_monai.losses.adversarial import last_logits
from emgan_monai.losses.fewshot import FEWSHOT_LOSSES, discriminator_loss, r1_penalty
from emgan_monai.losses.fewshot import generator_loss as fewshot_generator_loss

from .paired import _CYCLE_TERMS, _EQUIVARIANCE_TERMS, PairedGANTrainer
from .settings import AdversarialSettings, GeneratorLoss
from .unconditional import UnconditionalGANTrainer
from .utils import GeneratorState

if TYPE_CHECKING:  # the mixin is typed as the trainer it mixes into; at runtime it derives from object only
    from .base import AdversarialTrainer as _MixinBase
else:
    _MixinBase = object

__all__ = ["FewShotGANTrainer", "FewShotRecipe", "PairedFewShotGANTrainer"]


class FewShotRecipe(_MixinBase):
    """Mixin of the few-shot recipe for an :class:`~emgan_monai.engines.base.AdversarialTrainer` subclass.

    Reads ``loss`` (``"hinge"`` or ``"nonsaturating"``), ``r1_gamma``, ``r1_interval`` and ``augment`` of the
    trainer's :class:`~emgan_monai.engines.AdversarialSettings` and ``texture_loss`` / ``lambda_texture`` of its
    :class:`~emgan_monai.engines.GeneratorLoss` (:meth:`_fewshot_settings` before, :meth:`_setup_fewshot` after
    the base ``__init__``); adds the discriminator step :meth:`fewshot_critic_step`, the adversarial generator term
    :meth:`fewshot_generator_adv` and the statistics term :meth:`fewshot_texture_terms`. An ``augment`` that owns
    a ``torch.Generator`` (``DiffAugment``) has it registered with ``engine.rng``, so that a resumed run draws the
    same augmentations as an uninterrupted one.
    """

    #: the single discriminator, set by the trainer the recipe mixes into
    d_network: nn.Module

    #: the recipe's defaults when a trainer is given no ``adversarial`` settings
    DEFAULT_ADVERSARIAL = AdversarialSettings(loss="hinge", r1_gamma=1.0, r1_interval=4)

    def _fewshot_settings(self, adversarial: AdversarialSettings | None) -> AdversarialSettings:
        """``adversarial`` (or the recipe's defaults) with ``loss`` filled in and validated."""
        adversarial = self.DEFAULT_ADVERSARIAL if adversarial is None else adversarial
        adversarial.refuse(type(self).__name__, "d_steps", "gp_weight", "clip_value", "pool_size")
        loss = "hinge" if adversarial.loss is None else adversarial.loss
        if str(loss).lower() not in FEWSHOT_LOSSES:
            raise ValueError(f"loss must be one of {FEWSHOT_LOSSES}, got {loss!r}.")
        return dataclasses.replace(adversarial, loss=str(loss).lower())

    def _setup_fewshot(self, adversarial: AdversarialSettings, generator_loss: GeneratorLoss) -> None:
        augment = adversarial.augment
        generator = getattr(augment, "generator", None)
        if isinstance(generator, torch.Generator):
            self.rng.register("augment", GeneratorState(generator))
        self.adversarial = adversarial
        self.loss_kind = str(adversarial.loss)
        self.r1_gamma = float(adversarial.r1_gamma)
        self.r1_interval = int(adversarial.r1_interval)
        self.augment = augment if augment is not None else (lambda x: x)
        self.texture_loss = generator_loss.texture_loss
        self.lambda_texture = float(generator_loss.lambda_texture)
        self._last_r1 = 0.0

    def fewshot_texture_terms(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """``{"g_texture": (lambda_texture, texture_loss(fake, real))}``, or ``{}`` without a texture loss."""
        if self.texture_loss is None or self.lambda_texture <= 0:
            return {}
        return {"g_texture": (self.lambda_texture, self.texture_loss(fake.float(), real.float()))}

    def fewshot_critic_step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, float]:
        """One discriminator step on un-augmented discriminator inputs ``real`` and (detached) ``fake``.

        ``loss(D(augment(real)), D(augment(fake)))`` plus, every ``r1_interval`` iterations,
        ``r1_gamma / 2 * r1_interval * R1`` on the augmented reals. Returns the scalar statistics of the step.
        """
        do_r1 = self.r1_gamma > 0 and (self.state.iteration - 1) % self.r1_interval == 0
        self.d_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        real_in = self.augment(real).detach().requires_grad_(do_r1)
        logit_real = self.d_network(real_in)
        logit_fake = self.d_network(self.augment(fake))
        loss_real, loss_fake = discriminator_loss(logit_real, logit_fake, self.loss_kind)
        d_loss = loss_real + loss_fake
        stats = {"d_real": loss_real.detach(), "d_fake": loss_fake.detach()}
        if do_r1:
            r1 = r1_penalty(logit_real, real_in)
            d_loss = d_loss + 0.5 * self.r1_gamma * self.r1_interval * r1
            self._last_r1 = float(r1.detach())
        self.check_finite("d_loss", d_loss, stats)
        self._step(d_loss, self.d_optimizer, self.scaler_d)
        return {
            "d_loss": float(d_loss.detach()),
            "d_real": float(loss_real.detach()),
            "d_fake": float(loss_fake.detach()),
            "logit_real": float(last_logits(logit_real).detach().float().mean()),
            "logit_fake": float(last_logits(logit_fake).detach().float().mean()),
            "r1": self._last_r1,
        }

    def fewshot_generator_adv(self, fake: torch.Tensor) -> torch.Tensor:
        """Adversarial generator loss of the un-augmented discriminator input ``fake`` (through ``augment``)."""
        return fewshot_generator_loss(self.d_network(self.augment(fake)), self.loss_kind)


class FewShotGANTrainer(FewShotRecipe, UnconditionalGANTrainer):
    """Unconditional GAN trainer for a handful of training images.

    Per iteration: ``fake = G(z)``; one discriminator step on ``augment(real)`` vs ``augment(fake)`` with ``loss``
    (``"hinge"`` or ``"nonsaturating"``) plus, every ``r1_interval`` iterations, ``r1_gamma / 2 * r1_interval * R1``
    on the augmented reals (lazy regularisation, StyleGAN2); one generator step through the same augmentation.
    Reals and fakes must be the same kind of values (e.g. the signed-distance maps of the Drosophila masks, which
    the generator draws through ``tanh``), so the discriminator cannot win on value saturation alone. Two
    time-scale learning rates are set through the two optimisers; the EMA of the generator weights is the handler
    :class:`~emgan_monai.handlers.AveragedModelUpdate`.

    Parameters
    ----------
    device, max_epochs, train_data_loader, g_network, g_optimizer, d_network, d_optimizer, latent_shape, real_key
        As :class:`~emgan_monai.engines.UnconditionalGANTrainer`.
    generator_loss
        :class:`~emgan_monai.engines.GeneratorLoss`: an optional statistics term
        ``lambda_texture * texture_loss(fake, real)`` between the batch of fakes and the batch of reals, e.g.
        :class:`~emgan_monai.losses.TextureStatisticsLoss` (value histogram, gradient histogram, radial spectrum:
        independent of where things lie, so any real image is a fair reference); reported as ``g_texture``.
    adversarial
        :class:`~emgan_monai.engines.AdversarialSettings`: ``loss``, ``r1_gamma`` (0 disables R1), ``r1_interval``
        and ``augment`` (differentiable augmentation of both real and fake discriminator inputs,
        :class:`~emgan_monai.transforms.diffaugment.DiffAugment`); ``None``: hinge, R1 1.0 every 4 iterations.
    amp, seed, train_handlers, kwargs
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    Notes
    -----
    ``engine.state.output`` holds ``d_loss``, ``d_real``/``d_fake`` (loss terms), ``logit_real``/``logit_fake``
    (mean logits), ``r1`` (on R1 iterations, else the last value), ``g_loss``/``g_adv`` [, ``g_texture``] and the
    images ``real``, ``fake`` (un-augmented), ``latent``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        g_network: nn.Module,
        g_optimizer: Optimizer,
        d_network: nn.Module,
        d_optimizer: Optimizer,
        latent_shape: Sequence[int],
        real_key: str = "label",
        generator_loss: GeneratorLoss | None = None,
        adversarial: AdversarialSettings | None = None,
        amp: bool = False,
        seed: int = 0,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        adversarial = self._fewshot_settings(adversarial)
        generator_loss = GeneratorLoss() if generator_loss is None else generator_loss
        generator_loss.refuse(
            type(self).__name__,
            "lambda_adv",
            "adv_warmup",
            "pixel_loss",
            "lambda_pixel",
            *_CYCLE_TERMS,
            *_EQUIVARIANCE_TERMS,
        )
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            g_network=g_network,
            g_optimizer=g_optimizer,
            d_network=d_network,
            d_optimizer=d_optimizer,
            latent_shape=latent_shape,
            real_key=real_key,
            adversarial=dataclasses.replace(adversarial, loss=None),  # the base's criterion is not used
            amp=amp,
            seed=seed,
            train_handlers=train_handlers,
            **kwargs,
        )
        self._setup_fewshot(adversarial, generator_loss)

    def _refuse_unused(self, adversarial: AdversarialSettings) -> None:
        """Checked by :meth:`_fewshot_settings`."""

    def _critic_phase(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.fewshot_critic_step(inputs["real"], fakes["fake"].detach())

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        fake = fakes["fake"]
        return {"g_adv": (1.0, self.fewshot_generator_adv(fake)), **self.fewshot_texture_terms(fake, inputs["real"])}


class PairedFewShotGANTrainer(FewShotRecipe, PairedGANTrainer):
    """Paired (conditional) GAN trainer with the few-shot recipe, for image translation from a handful of pairs.

    As :class:`~emgan_monai.engines.PairedGANTrainer` (``fake = G(input)``, pixel term
    ``lambda_pixel * pixel_loss(fake, real)``, adversarial weight ramped to ``lambda_adv``), with the
    discriminator step and adversarial term of :class:`FewShotGANTrainer`: true hinge or non-saturating loss, lazy
    R1 on the augmented reals, DiffAugment on the discriminator inputs ``cat(input, real | fake)`` (one
    augmentation of the concatenated channels, so condition and image stay aligned). A spectral-norm
    discriminator is set in the config, the EMA of the generator by the handler
    :class:`~emgan_monai.handlers.AveragedModelUpdate`. Pair it with a structure-only pixel loss (e.g.
    :class:`~emgan_monai.losses.LowPassCycleLoss`) when the condition does not fix the texture.

    Parameters
    ----------
    device, max_epochs, train_data_loader, g_network, g_optimizer, d_network, d_optimizer, keys
        As :class:`~emgan_monai.engines.PairedGANTrainer`.
    generator_loss
        :class:`~emgan_monai.engines.GeneratorLoss`: the pixel term and adversarial weight as
        :class:`~emgan_monai.engines.PairedGANTrainer`, plus an optional texture-statistics term
        ``lambda_texture * texture_loss(fake, real)`` against the paired real image (e.g.
        :class:`~emgan_monai.losses.RadialSpectrumLoss`), reported as ``g_texture``; and an optional symmetry
        term ``lambda_equivariance * equivariance_loss(G, input, fake, k, offset)``
        (:class:`~emgan_monai.losses.EquivarianceLoss`: a mirrored, turned or shifted mask should give the mirrored,
        turned or shifted image), reported as ``g_equivariance``; and an optional boundary term
        ``lambda_profile * profile_loss(fake, real, input)`` (:class:`~emgan_monai.losses.BoundaryProfileLoss`: the
        grey-value profile away from the membranes), reported as ``g_profile``; and an optional diversity term
        ``lambda_diversity * diversity_loss(G, input, fake)`` (:class:`~emgan_monai.losses.DiversityLoss`: a second
        draw for the same mask should differ in its fine texture), reported as ``g_diversity``.
    adversarial
        As :class:`FewShotGANTrainer`.
    amp, seed, train_handlers, kwargs
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    Notes
    -----
    ``engine.state.output`` holds ``d_loss``, ``d_real``, ``d_fake``, ``logit_real``, ``logit_fake``, ``r1``,
    ``g_loss``, ``g_adv``, ``g_pixel`` [, ``g_texture``, ``g_equivariance``, ``g_profile``, ``g_diversity``] and
    the images ``input``, ``real``, ``fake``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        g_network: nn.Module,
        g_optimizer: Optimizer,
        d_network: nn.Module,
        d_optimizer: Optimizer,
        keys: Sequence[str] = ("image", "label"),
        generator_loss: GeneratorLoss | None = None,
        adversarial: AdversarialSettings | None = None,
        amp: bool = False,
        seed: int = 0,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        adversarial = self._fewshot_settings(adversarial)
        generator_loss = GeneratorLoss() if generator_loss is None else generator_loss
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            g_network=g_network,
            g_optimizer=g_optimizer,
            d_network=d_network,
            d_optimizer=d_optimizer,
            keys=keys,
            generator_loss=generator_loss,
            adversarial=dataclasses.replace(adversarial, loss=None),  # the base's criterion is not used
            amp=amp,
            seed=seed,
            train_handlers=train_handlers,
            **kwargs,
        )
        self._setup_fewshot(adversarial, generator_loss)
        self.equivariance_loss = generator_loss.equivariance_loss
        self.lambda_equivariance = float(generator_loss.lambda_equivariance)
        self.profile_loss = generator_loss.profile_loss
        self.lambda_profile = float(generator_loss.lambda_profile)
        self.diversity_loss = generator_loss.diversity_loss
        self.lambda_diversity = float(generator_loss.lambda_diversity)

    def _refuse_unused(self, adversarial: AdversarialSettings, generator_loss: GeneratorLoss) -> None:
        """R1 and augment are checked by :meth:`_fewshot_settings`; no cycle terms."""
        generator_loss.refuse(type(self).__name__, *_CYCLE_TERMS)

    def _critic_phase(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict[str, float]:
        image = inputs["input"]
        return self.fewshot_critic_step(self._d_input(image, inputs["real"]), self._d_input(image, fakes["fake"]))

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        fake = fakes["fake"]
        adv = self.fewshot_generator_adv(self._d_input(inputs["input"], fake))
        pixel = self.pixel_loss(fake.float(), inputs["real"].float())
        return {
            "g_adv": (self.adv_weight(), adv),
            "g_pixel": (self.lambda_pixel, pixel),
            **self.fewshot_texture_terms(fake, inputs["real"]),
            **self._equivariance_terms(inputs["input"], fake),
            **self._profile_terms(fake, inputs["real"], inputs["input"]),
            **self._diversity_terms(inputs["input"], fake),
        }

    def _diversity_terms(self, image: torch.Tensor, fake: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """``{"g_diversity": (lambda, diversity_loss(G, image, fake))}`` (a second draw), or ``{}`` without it."""
        if self.diversity_loss is None or self.lambda_diversity <= 0:
            return {}
        return {"g_diversity": (self.lambda_diversity, self.diversity_loss(self.g_network, image, fake))}

    def _profile_terms(
        self, fake: torch.Tensor, real: torch.Tensor, image: torch.Tensor
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """``{"g_profile": (lambda, profile_loss(fake, real, image))}``, or ``{}`` without the term."""
        if self.profile_loss is None or self.lambda_profile <= 0:
            return {}
        return {"g_profile": (self.lambda_profile, self.profile_loss(fake.float(), real.float(), image))}

    def _equivariance_terms(self, image: torch.Tensor, fake: torch.Tensor) -> dict[str, tuple[float, torch.Tensor]]:
        """``{"g_equivariance": (lambda, loss(G, image, fake, k, offset))}`` for a symmetry ``k`` in 1 .. 7 and an
        ``offset`` of two integers in ``0 .. 255`` (the loss takes it modulo its grid period), both drawn from
        ``engine.rng`` (so a resumed run draws the same ones), or ``{}`` without the term."""
        if self.equivariance_loss is None or self.lambda_equivariance <= 0:
            return {}
        k = int(torch.randint(1, 8, (1,), generator=self.rng.generator))
        dy, dx = (int(o) for o in torch.randint(0, 256, (2,), generator=self.rng.generator))
        loss = self.equivariance_loss(self.g_network, image, fake, k, (dy, dx))
        return {"g_equivariance": (self.lambda_equivariance, loss)}
