"""Paired image-to-image GAN trainer (pix2pix, Isola et al. 2017)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .base import AdversarialTrainer, CriticPair
from .settings import AdversarialSettings, GeneratorLoss

__all__ = ["PairedGANTrainer", "PIXEL_LOSSES"]

_CYCLE_TERMS = ("lambda_cycle", "cycle_criterion", "lambda_cycle_b", "cycle_b_sigma", "lambda_adv_a", "lambda_identity")
#: the symmetry, boundary-profile and diversity terms, which only the paired few-shot trainer has
_EQUIVARIANCE_TERMS = (
    "equivariance_loss",
    "lambda_equivariance",
    "profile_loss",
    "lambda_profile",
    "diversity_loss",
    "lambda_diversity",
)

#: pixel losses selectable by name
PIXEL_LOSSES: dict[str, type[nn.Module]] = {
    "l1": nn.L1Loss,
    "l2": nn.MSELoss,
    "mse": nn.MSELoss,
    "smooth_l1": nn.SmoothL1Loss,
}


class PairedGANTrainer(AdversarialTrainer):
    """pix2pix: ``fake = G(image)``, adversarial + ``lambda_pixel`` * pixel loss to ``label``.

    The discriminator sees ``cat(image, fake | label)`` on channels (a conditional GAN, as in pix2pix).

    Parameters
    ----------
    device, max_epochs, train_data_loader
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.
    g_network
        Generator ``(B, C_in, H, W[, D]) -> (B, C_out, H, W[, D])``.
    g_optimizer
        Optimiser of ``g_network``.
    d_network
        Discriminator on ``(B, C_in + C_out, H, W[, D])``.
    d_optimizer
        Optimiser of ``d_network``.
    keys
        Batch keys of the input and of the target image.
    generator_loss
        :class:`~emgan_monai.engines.GeneratorLoss`: ``pixel_loss`` (``"l1"``, ``"l2"``/``"mse"``,
        ``"smooth_l1"`` or a callable ``(fake, label) -> scalar``), ``lambda_pixel`` (100 in pix2pix),
        ``lambda_adv`` (1 in pix2pix) and ``adv_warmup`` (linear ramp of the adversarial weight).
    adversarial
        :class:`~emgan_monai.engines.AdversarialSettings` (``loss``, ``d_steps``, ``gp_weight``, ``clip_value``).
    amp, seed, train_handlers, kwargs
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    Notes
    -----
    ``engine.state.output`` holds ``g_loss`` (= ``w_adv * g_adv + lambda_pixel * g_pixel``), ``g_adv``,
    ``g_pixel``, ``d_loss``, ``d_real``, ``d_fake`` (``gp``) and the images ``input``, ``fake``, ``real``.
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
        generator_loss = GeneratorLoss() if generator_loss is None else generator_loss
        adversarial = AdversarialSettings() if adversarial is None else adversarial
        self._refuse_unused(adversarial, generator_loss)
        pixel_loss = generator_loss.pixel_loss
        if isinstance(pixel_loss, str):
            if pixel_loss.lower() not in PIXEL_LOSSES:
                raise ValueError(
                    f"unknown pixel_loss {pixel_loss!r}; expected one of {sorted(PIXEL_LOSSES)} or a callable."
                )
            pixel_loss = PIXEL_LOSSES[pixel_loss.lower()]()
        elif not callable(pixel_loss):
            raise ValueError(f"pixel_loss must be a name or a callable, got {type(pixel_loss).__name__}.")
        if isinstance(keys, str) or len(keys) != 2:
            raise ValueError(f"keys must be the batch keys (input, target), got {keys!r}.")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            generators={"g": g_network},
            discriminators={"d": d_network},
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            adversarial=adversarial,
            amp=amp,
            seed=seed,
            train_handlers=train_handlers,
            **kwargs,
        )
        self.g_network = g_network
        self.d_network = d_network
        self.image_key, self.label_key = keys
        self.generator_loss = generator_loss
        self.lambda_pixel = float(generator_loss.lambda_pixel)
        self.pixel_loss = pixel_loss
        self.lambda_adv = float(generator_loss.lambda_adv)
        self.adv_ramp_iterations = int(generator_loss.adv_warmup)

    def _refuse_unused(self, adversarial: AdversarialSettings, generator_loss: GeneratorLoss) -> None:
        """Refuse settings this trainer does not implement (the few-shot subclass has R1, augment and texture)."""
        adversarial.refuse(type(self).__name__, "r1_gamma", "r1_interval", "augment", "pool_size")
        generator_loss.refuse(
            type(self).__name__, "texture_loss", "lambda_texture", *_CYCLE_TERMS, *_EQUIVARIANCE_TERMS
        )

    def adv_weight(self) -> float:
        """Adversarial weight at the current iteration (linear ramp to ``lambda_adv``)."""
        if self.adv_ramp_iterations <= 0:
            return self.lambda_adv
        return self.lambda_adv * min(1.0, self.state.iteration / self.adv_ramp_iterations)

    def _prepare_inputs(self, batchdata: Any) -> dict[str, torch.Tensor]:
        image = self.to_device(batchdata, self.image_key)
        label = self.to_device(batchdata, self.label_key)
        if image.shape[0] != label.shape[0] or image.shape[2:] != label.shape[2:]:
            raise ValueError(
                f"batch[{self.image_key!r}] {tuple(image.shape)} and batch[{self.label_key!r}] {tuple(label.shape)} "
                "must share batch size and spatial shape."
            )
        return {"input": image, "real": label}

    def _generate(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"fake": self.g_network(inputs["input"])}

    def _d_input(self, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, target.to(image.dtype)], dim=1)

    def _critic_pairs(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> list[CriticPair]:
        image = inputs["input"]
        return [("d", self.d_network, self._d_input(image, inputs["real"]), self._d_input(image, fakes["fake"]))]

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        fake = fakes["fake"]
        adv = self.generator_adv(self.d_network, self._d_input(inputs["input"], fake))
        pixel = self.pixel_loss(fake.float(), inputs["real"].float())
        return {"g_adv": (self.adv_weight(), adv), "g_pixel": (self.lambda_pixel, pixel)}
