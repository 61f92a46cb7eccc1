"""Paired image-to-image GAN trainer (pix2pix, Isola et al. 2017)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .base import AdversarialTrainer, CriticPair

__all__ = ["PairedGANTrainer", "PIXEL_LOSSES"]

#: pixel losses selectable by name
PIXEL_LOSSES: dict[str, type[nn.Module]] = {
    "l1": nn.L1Loss,
    "l2": nn.MSELoss,
    "mse": nn.MSELoss,
    "smooth_l1": nn.SmoothL1Loss,
}


class PairedGANTrainer(AdversarialTrainer):
    """pix2pix: ``fake = G(image)``, adversarial + ``lambda_pixel`` * pixel loss to ``label``.

    Parameters
    ----------
    device, max_epochs, train_data_loader
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.
    g_network
        Generator ``(B, C_in, H, W[, D]) -> (B, C_out, H, W[, D])``.
    g_optimizer
        Optimiser of ``g_network``.
    d_network
        Discriminator on ``(B, C_in + C_out, ...)`` when ``conditional`` else ``(B, C_out, ...)``.
    d_optimizer
        Optimiser of ``d_network``.
    image_key, label_key
        Batch keys of the input and of the target image.
    lambda_pixel
        Weight of the pixel loss (100 in pix2pix).
    pixel_loss
        ``"l1"``, ``"l2"``/``"mse"``, ``"smooth_l1"`` or a callable ``(fake, label) -> scalar``.
    conditional
        Show the discriminator ``cat(image, fake|label)`` on channels (conditional GAN) rather than ``fake|label``.
    lambda_adv
        Weight of the generator's adversarial term (1 in pix2pix). A small weight after pixel pre-training keeps the
        fidelity of the pixel model and adds sharpness (the perception-distortion trade-off).
    adv_ramp_iterations
        The adversarial weight grows linearly from 0 to ``lambda_adv`` over this many iterations of the run
        (counted from ``engine.state.iteration``, so a resumed run continues the ramp); 0 = full weight at once.
    kwargs
        Other arguments of :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    Notes
    -----
    ``engine.state.output`` holds ``g_loss`` (= ``w_adv * g_adv + lambda_pixel * g_pixel``), ``g_adv``, ``g_pixel``,
    ``d_loss``, ``d_real``, ``d_fake`` (``gp``) and the images ``input``, ``fake``, ``real``.
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
        image_key: str = "image",
        label_key: str = "label",
        lambda_pixel: float = 100.0,
        pixel_loss: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "l1",
        conditional: bool = True,
        lambda_adv: float = 1.0,
        adv_ramp_iterations: int = 0,
        **kwargs: Any,
    ) -> None:
        if isinstance(pixel_loss, str):
            if pixel_loss.lower() not in PIXEL_LOSSES:
                raise ValueError(
                    f"unknown pixel_loss {pixel_loss!r}; expected one of {sorted(PIXEL_LOSSES)} or a callable."
                )
            pixel_loss = PIXEL_LOSSES[pixel_loss.lower()]()
        elif not callable(pixel_loss):
            raise ValueError(f"pixel_loss must be a name or a callable, got {type(pixel_loss).__name__}.")
        if lambda_pixel < 0 or lambda_adv < 0 or adv_ramp_iterations < 0:
            raise ValueError(
                f"lambda_pixel, lambda_adv and adv_ramp_iterations must be >= 0, got {lambda_pixel}, {lambda_adv}, "
                f"{adv_ramp_iterations}."
            )
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            generators={"g": g_network},
            discriminators={"d": d_network},
            **kwargs,
        )
        self.g_network = g_network
        self.d_network = d_network
        self.image_key = image_key
        self.label_key = label_key
        self.lambda_pixel = float(lambda_pixel)
        self.pixel_loss = pixel_loss
        self.conditional = conditional
        self.lambda_adv = float(lambda_adv)
        self.adv_ramp_iterations = int(adv_ramp_iterations)

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
        return torch.cat([image, target.to(image.dtype)], dim=1) if self.conditional else target

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
