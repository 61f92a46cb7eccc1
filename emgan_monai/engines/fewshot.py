"""Few-shot GAN trainers: hinge / non-saturating loss, lazy R1, DiffAugment, EMA; unconditional and paired.

The recipe of the few-shot GAN literature (Miyato et al. 2018; Mescheder et al. 2018; Zhao et al. 2020; Karras et
al. 2020) as one mixin (:class:`FewShotRecipe`: discriminator step, adversarial generator term, EMA update) on top of
:class:`~emgan_monai.engines.UnconditionalGANTrainer` (:class:`FewShotGANTrainer`) and
:class:`~emgan_monai.engines.PairedGANTrainer` (:class:`PairedFewShotGANTrainer`): everything else (data, latent
noise from ``engine.rng``, non-finite checks, checkpointable state, handlers) is inherited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from emgan_monai.losses.adversarial import last_logits
from emgan_monai.losses.fewshot import FEWSHOT_LOSSES, discriminator_loss, generator_loss, r1_penalty
from emgan_monai.networks.mask_generator import straight_through_onehot

from .paired import PairedGANTrainer
from .unconditional import UnconditionalGANTrainer
from .utils import GeneratorState

__all__ = ["FewShotGANTrainer", "FewShotRecipe", "PairedFewShotGANTrainer"]


class FewShotRecipe:
    """Mixin of the few-shot recipe for an :class:`~emgan_monai.engines.base.AdversarialTrainer` subclass.

    Adds the keyword arguments ``loss``, ``r1_gamma``, ``r1_interval``, ``augment``, ``g_ema``, ``texture_loss`` and
    ``lambda_texture`` (see :class:`FewShotGANTrainer`), the discriminator step :meth:`fewshot_critic_step`, the
    adversarial generator term :meth:`fewshot_generator_adv`, the statistics term :meth:`fewshot_texture_terms` and
    the EMA update after every iteration. An ``augment`` that owns a
    ``torch.Generator`` (``DiffAugment``) has it registered with ``engine.rng``, so that a resumed run draws the same
    augmentations as an uninterrupted one. ``adv_loss`` of the base trainer is ignored (``loss`` rules).
    """

    def __init__(
        self,
        *args: Any,
        loss: str = "hinge",
        r1_gamma: float = 1.0,
        r1_interval: int = 4,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        g_ema: nn.Module | None = None,
        texture_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        lambda_texture: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if lambda_texture < 0 or (lambda_texture > 0 and texture_loss is None):
            raise ValueError(f"lambda_texture must be >= 0 and needs a texture_loss, got {lambda_texture}.")
        if str(loss).lower() not in FEWSHOT_LOSSES:
            raise ValueError(f"loss must be one of {FEWSHOT_LOSSES}, got {loss!r}.")
        if r1_gamma < 0 or int(r1_interval) < 1:
            raise ValueError(f"r1_gamma must be >= 0 and r1_interval >= 1, got {r1_gamma}, {r1_interval}.")
        kwargs.pop("adv_loss", None)
        super().__init__(*args, **kwargs)
        if isinstance(getattr(augment, "generator", None), torch.Generator):
            self.rng.register("augment", GeneratorState(augment.generator))
        self.loss_kind = str(loss).lower()
        self.r1_gamma = float(r1_gamma)
        self.r1_interval = int(r1_interval)
        self.augment = augment if augment is not None else (lambda x: x)
        self.g_ema = g_ema
        self.texture_loss = texture_loss
        self.lambda_texture = float(lambda_texture)
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
        return generator_loss(self.d_network(self.augment(fake)), self.loss_kind)

    def _iteration(self, engine: Any, batchdata: Any) -> dict[str, Any]:
        output = super()._iteration(engine, batchdata)
        if engine.g_ema is not None:
            engine.g_ema.update_parameters(engine.g_network)
        return output


class FewShotGANTrainer(FewShotRecipe, UnconditionalGANTrainer):
    """Unconditional GAN trainer for a handful of training images.

    Per iteration: ``fake = G(z)``; real and fake are shown to the discriminator as the same kind of values, so it
    cannot win on value saturation alone: with ``fake_mode="straight_through"`` (default) the fakes are made one-hot
    by :func:`straight_through_onehot`; with ``"blur"`` both the one-hot reals and the softmax fakes go through the
    same Gaussian blur (``blur_sigma`` px, :class:`monai.networks.layers.GaussianFilter`); ``"soft"`` shows the
    fakes as they are. Then one discriminator step on ``augment(real)`` vs ``augment(fake)`` with ``loss`` (``"hinge"`` or ``"nonsaturating"``) plus, every ``r1_interval`` iterations,
    ``r1_gamma / 2 * r1_interval * R1`` on the augmented reals (lazy regularisation, StyleGAN2); one generator step
    through the same augmentation; then the EMA of the generator weights is updated (``g_ema``, e.g.
    ``torch.optim.swa_utils.AveragedModel(G, multi_avg_fn=emgan_monai.handlers.ema_multi_avg_fn(0.999))``). Two time-scale learning
    rates are set through the two optimisers.

    Parameters
    ----------
    device, max_epochs, train_data_loader, g_network, g_optimizer, d_network, d_optimizer, latent_shape, real_key
        As :class:`~emgan_monai.engines.UnconditionalGANTrainer`.
    loss
        ``"hinge"`` or ``"nonsaturating"`` (see :mod:`emgan_monai.losses.fewshot`).
    r1_gamma
        R1 weight ``gamma`` (0 disables R1).
    r1_interval
        Apply R1 every this many iterations, scaled by the interval.
    augment
        Differentiable augmentation applied to both real and fake discriminator inputs
        (:class:`~emgan_monai.transforms.diffaugment.DiffAugment`); ``None`` for none.
    g_ema
        Averaged copy of the generator updated after every generator step (``update_parameters(g_network)``);
        ``None`` for none. Put it in the checkpoint.
    texture_loss, lambda_texture
        An optional statistics term ``lambda_texture * texture_loss(fake, real)`` between the batch of fakes (as the
        discriminator sees them) and the batch of reals, e.g. :class:`~emgan_monai.losses.TextureStatisticsLoss`
        (value histogram, gradient histogram, radial spectrum: independent of where things lie, so any real image
        is a fair reference); reported as ``g_texture``. For the signed-distance masks of stage 1 it removes the
        values real maps never take (near the decision level), which the discriminator alone was slow to punish.
    fake_mode
        ``"straight_through"`` (default), ``"blur"`` or ``"soft"`` (see above). Measured on the Drosophila masks (a few
        hundred iterations each): with a batch-norm generator, straight-through fakes move the class balance
        steadily towards the real one; with a pixel-norm generator the near-tied arg-max flipped between whole
        classes from one step to the next; with ``"blur"`` the discriminator still tells the unsaturated softmax
        values from blurred one-hot ones and wins.
    blur_sigma
        Standard deviation (px) of the shared blur of ``fake_mode="blur"``.
    kwargs
        Other arguments of :class:`~emgan_monai.engines.base.AdversarialTrainer` (``seed``, ``train_handlers``, ...).

    Notes
    -----
    ``engine.state.output`` holds ``d_loss``, ``d_real``/``d_fake`` (loss terms), ``logit_real``/``logit_fake``
    (mean logits), ``r1`` (on R1 iterations, else the last value), ``g_loss``/``g_adv`` [, ``g_texture``] and the images ``real``,
    ``fake`` (what the discriminator saw, un-augmented), ``latent``.
    """

    def __init__(self, *args: Any, fake_mode: str = "straight_through", blur_sigma: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if fake_mode not in ("blur", "straight_through", "soft"):
            raise ValueError(f"fake_mode must be 'blur', 'straight_through' or 'soft', got {fake_mode!r}.")
        self.fake_mode = fake_mode
        self.blur: nn.Module | None = None
        if fake_mode == "blur":
            from monai.networks.layers import GaussianFilter

            n_spatial = len(self.latent_shape) - 1
            self.blur = GaussianFilter(n_spatial, float(blur_sigma))

    def _blurred(self, x: torch.Tensor) -> torch.Tensor:
        """The shared blur of ``fake_mode="blur"`` (identity otherwise); ``augment`` follows in the critic."""
        if self.blur is None:
            return x
        self.blur.to(x.device)
        return self.blur(x)

    def _generate(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        soft = self.g_network(inputs["latent"])
        return {"fake": straight_through_onehot(soft) if self.fake_mode == "straight_through" else soft}

    def _critic_phase(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return self.fewshot_critic_step(self._blurred(inputs["real"]), self._blurred(fakes["fake"].detach()))

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        fake = self._blurred(fakes["fake"])
        return {"g_adv": (1.0, self.fewshot_generator_adv(fake)),
                **self.fewshot_texture_terms(fake, self._blurred(inputs["real"]))}


class PairedFewShotGANTrainer(FewShotRecipe, PairedGANTrainer):
    """Paired (conditional) GAN trainer with the few-shot recipe, for image translation from a handful of pairs.

    As :class:`~emgan_monai.engines.PairedGANTrainer` (``fake = G(input)``, pixel term
    ``lambda_pixel * pixel_loss(fake, real)``, adversarial weight ramped to ``lambda_adv``), with the
    discriminator step and adversarial term of :class:`FewShotGANTrainer`: true hinge or non-saturating loss, lazy
    R1 on the augmented reals, DiffAugment on the discriminator inputs ``cat(input, real | fake)`` (one
    augmentation of the concatenated channels, so condition and image stay aligned) and an EMA of the generator.
    A spectral-norm discriminator is set in the config. Pair it with a structure-only pixel loss (e.g.
    :class:`~emgan_monai.losses.LowPassCycleLoss`) when the condition does not fix the texture.

    Parameters
    ----------
    args, kwargs
        As :class:`~emgan_monai.engines.PairedGANTrainer` (``adv_loss`` is ignored: ``loss`` rules).
    loss, r1_gamma, r1_interval, augment, g_ema
        As :class:`FewShotGANTrainer`.
    texture_loss, lambda_texture
        An optional texture-statistics term ``lambda_texture * texture_loss(fake, real)`` against the paired real
        image (e.g. :class:`~emgan_monai.losses.RadialSpectrumLoss`): reported as ``g_texture``.

    Notes
    -----
    ``engine.state.output`` holds ``d_loss``, ``d_real``, ``d_fake``, ``logit_real``, ``logit_fake``, ``r1``,
    ``g_loss``, ``g_adv``, ``g_pixel`` [, ``g_texture``] and the images ``input``, ``real``, ``fake``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("conditional", True)
        super().__init__(*args, **kwargs)

    def _critic_phase(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict[str, float]:
        image = inputs["input"]
        return self.fewshot_critic_step(self._d_input(image, inputs["real"]), self._d_input(image, fakes["fake"]))

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        fake = fakes["fake"]
        adv = self.fewshot_generator_adv(self._d_input(inputs["input"], fake))
        pixel = self.pixel_loss(fake.float(), inputs["real"].float())
        return {"g_adv": (self.adv_weight(), adv), "g_pixel": (self.lambda_pixel, pixel),
                **self.fewshot_texture_terms(fake, inputs["real"])}
