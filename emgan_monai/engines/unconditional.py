"""Unconditional GAN trainer: latent noise -> image (e.g. noise -> segmentation mask)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .base import AdversarialTrainer, CriticPair
from .settings import AdversarialSettings

__all__ = ["UnconditionalGANTrainer"]


class UnconditionalGANTrainer(AdversarialTrainer):
    """Train ``G: z -> x`` against ``D`` on real images ``batch[real_key]``.

    Each iteration draws ``z ~ N(0, 1)`` of shape ``(B, *latent_shape)`` from ``engine.rng`` (``B`` is the size of
    the real batch), computes ``fake = G(z)`` and compares ``D(real)`` with ``D(fake)``.

    Parameters
    ----------
    device, max_epochs, train_data_loader
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.
    g_network
        Generator mapping ``(B, *latent_shape)`` to ``(B, C, H, W[, D])``.
    g_optimizer
        Optimiser of ``g_network``.
    d_network
        Discriminator/critic on ``(B, C, H, W[, D])``.
    d_optimizer
        Optimiser of ``d_network``.
    latent_shape
        Per-sample latent shape, e.g. ``(128,)`` for a flat code or ``(1, 16, 16)`` for a noise image.
    real_key
        Batch key of the real images.
    adversarial
        :class:`~emgan_monai.engines.AdversarialSettings` (``loss``, ``d_steps``, ``gp_weight``, ``clip_value``).
    amp, seed, train_handlers, kwargs
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    Notes
    -----
    ``engine.state.output`` holds ``g_loss``, ``g_adv``, ``d_loss``, ``d_real``, ``d_fake`` (``gp``) and the images
    ``real``, ``fake`` ``(B, C, H, W[, D])`` and ``latent``.
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
        adversarial: AdversarialSettings | None = None,
        amp: bool = False,
        seed: int = 0,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        adversarial = AdversarialSettings() if adversarial is None else adversarial
        self._refuse_unused(adversarial)
        latent = tuple(int(s) for s in (latent_shape if isinstance(latent_shape, Sequence) else (latent_shape,)))
        if not latent or any(s < 1 for s in latent):
            raise ValueError(f"latent_shape must be a non-empty sequence of positive ints, got {latent_shape!r}.")
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
        self.latent_shape = latent
        self.real_key = real_key

    def _refuse_unused(self, adversarial: AdversarialSettings) -> None:
        """Refuse settings this trainer does not implement (the few-shot subclass implements R1 and augment)."""
        adversarial.refuse(type(self).__name__, "r1_gamma", "r1_interval", "augment", "pool_size")

    def _prepare_inputs(self, batchdata: Any) -> dict[str, torch.Tensor]:
        real = self.to_device(batchdata, self.real_key)
        latent = self.rng.randn((real.shape[0], *self.latent_shape), device=self.state.device)
        return {"real": real, "latent": latent}

    def _generate(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"fake": self.g_network(inputs["latent"])}

    def _critic_pairs(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> list[CriticPair]:
        return [("d", self.d_network, inputs["real"], fakes["fake"])]

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        return {"g_adv": (1.0, self.generator_adv(self.d_network, fakes["fake"]))}
