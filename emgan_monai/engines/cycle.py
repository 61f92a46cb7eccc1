"""Unpaired image-to-image GAN trainer (CycleGAN, Zhu et al. 2017)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from emgan_monai.losses.cycle import CycleConsistencyLoss, IdentityLoss

from .base import AdversarialTrainer, CriticPair
from .utils import ImagePool

__all__ = ["CycleGANTrainer"]


class CycleGANTrainer(AdversarialTrainer):
    """CycleGAN: ``G_ab: A -> B``, ``G_ba: B -> A``, critics ``D_a`` (on domain A) and ``D_b`` (on domain B).

    Generator loss ``adv(D_b(G_ab(a))) + adv(D_a(G_ba(b))) + lambda_cycle * (cycle_a + cycle_b)
    + lambda_cycle * lambda_identity * (identity_a + identity_b)`` with ``cycle_a = |G_ba(G_ab(a)) - a|_1`` and
    ``identity_a = |G_ba(a) - a|_1`` (CycleGAN's convention: the identity weight is relative to the cycle weight).
    Each critic sees its real images against fakes drawn through its :class:`~emgan_monai.engines.utils.ImagePool`
    (pools are saved with ``engine.rng``).

    Parameters
    ----------
    device, max_epochs, train_data_loader
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`; batches hold unpaired ``a_key`` and ``b_key``.
    g_ab, g_ba
        Generators ``(B, C_a, H, W[, D]) -> (B, C_b, ...)`` and back.
    d_a, d_b
        Critics on domain A ``(B, C_a, ...)`` and domain B ``(B, C_b, ...)``.
    g_optimizer
        Optimiser over the parameters of both generators (e.g. ``itertools.chain`` of both).
    d_optimizer
        Optimiser over the parameters of both critics.
    a_key, b_key
        Batch keys of the two domains.
    lambda_cycle
        Cycle-consistency weight (10 in CycleGAN).
    lambda_identity
        Identity weight relative to ``lambda_cycle`` (0.5 in CycleGAN); 0 disables the identity forward passes.
        Needs ``C_a == C_b``.
    pool_size
        Capacity of each image pool (50 in CycleGAN; 0 disables).
    kwargs
        Other arguments of :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    Notes
    -----
    ``engine.state.output`` holds ``g_loss``, ``g_adv`` (sum over both directions), ``g_cycle``, ``g_identity``
    (unweighted sums over both domains), ``d_loss``, ``d_real``, ``d_fake``, ``d_a``, ``d_b`` (``gp``) and the
    images ``real_a``, ``real_b``, ``fake_a``, ``fake_b``, ``rec_a``, ``rec_b`` (``idt_a``, ``idt_b``).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        g_ab: nn.Module,
        g_ba: nn.Module,
        d_a: nn.Module,
        d_b: nn.Module,
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        a_key: str = "image_a",
        b_key: str = "image_b",
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        **kwargs: Any,
    ) -> None:
        if lambda_cycle < 0 or lambda_identity < 0:
            raise ValueError(f"lambda_cycle and lambda_identity must be >= 0, got {lambda_cycle}, {lambda_identity}.")
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            generators={"g_ab": g_ab, "g_ba": g_ba},
            discriminators={"d_a": d_a, "d_b": d_b},
            **kwargs,
        )
        self.g_ab, self.g_ba, self.d_a, self.d_b = g_ab, g_ba, d_a, d_b
        self.a_key, self.b_key = a_key, b_key
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = float(lambda_identity)
        self.pool_a = ImagePool(pool_size, rng=self.rng)
        self.pool_b = ImagePool(pool_size, rng=self.rng)
        self.rng.register("pool_a", self.pool_a)
        self.rng.register("pool_b", self.pool_b)
        self.cycle_loss = CycleConsistencyLoss()
        self.identity_loss = IdentityLoss()

    def _prepare_inputs(self, batchdata: Any) -> dict[str, torch.Tensor]:
        return {"real_a": self.to_device(batchdata, self.a_key), "real_b": self.to_device(batchdata, self.b_key)}

    def _generate(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real_a, real_b = inputs["real_a"], inputs["real_b"]
        fake_b = self.g_ab(real_a)
        fake_a = self.g_ba(real_b)
        out = {"fake_b": fake_b, "rec_a": self.g_ba(fake_b), "fake_a": fake_a, "rec_b": self.g_ab(fake_a)}
        if self.lambda_identity > 0:
            out["idt_a"] = self.g_ba(real_a)
            out["idt_b"] = self.g_ab(real_b)
        return out

    def _critic_fakes(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict:
        return {"fake_a": self.pool_a.query(fakes["fake_a"]), "fake_b": self.pool_b.query(fakes["fake_b"])}

    def _critic_pairs(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> list[CriticPair]:
        return [
            ("a", self.d_a, inputs["real_a"], fakes["fake_a"]),
            ("b", self.d_b, inputs["real_b"], fakes["fake_b"]),
        ]

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        real_a, real_b = inputs["real_a"], inputs["real_b"]
        adv = self.generator_adv(self.d_b, fakes["fake_b"]) + self.generator_adv(self.d_a, fakes["fake_a"])
        cycle = self.cycle_loss(real_a, fakes["rec_a"].float()) + self.cycle_loss(real_b, fakes["rec_b"].float())
        terms = {"g_adv": (1.0, adv), "g_cycle": (self.lambda_cycle, cycle)}
        if self.lambda_identity > 0:
            identity = self.identity_loss(real_a, fakes["idt_a"].float()) + self.identity_loss(
                real_b, fakes["idt_b"].float()
            )
            terms["g_identity"] = (self.lambda_cycle * self.lambda_identity, identity)
        return terms
