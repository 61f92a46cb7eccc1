"""Unpaired image-to-image GAN trainer (CycleGAN, Zhu et al. 2017)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from emgan_monai.losses.cycle import CycleConsistencyLoss, IdentityLoss, LowPassCycleLoss

from .base import AdversarialTrainer, CriticPair
from .paired import _EQUIVARIANCE_TERMS
from .settings import AdversarialSettings, GeneratorLoss
from .utils import ImagePool

__all__ = ["CycleGANTrainer"]


class CycleGANTrainer(AdversarialTrainer):
    """CycleGAN: ``G_ab: A -> B``, ``G_ba: B -> A``, critics ``D_a`` (on domain A) and ``D_b`` (on domain B).

    Generator loss ``adv(D_b(G_ab(a))) + lambda_adv_a * adv(D_a(G_ba(b))) + lambda_cycle * cycle_a + lambda_cycle_b * cycle_b
    + lambda_cycle * lambda_identity * (identity_a + identity_b)`` with
    ``cycle_a = |G_ba(G_ab(a)) - a|_1`` and ``identity_a = |G_ba(a) - a|_1`` (CycleGAN's convention: the identity
    weight is relative to the cycle weight). Each critic sees its real images against fakes drawn through its
    :class:`~emgan_monai.engines.utils.ImagePool` (``adversarial.pool_size``; pools are saved with ``engine.rng``).

    Parameters
    ----------
    device, max_epochs, train_data_loader
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`; batches hold unpaired images of both domains.
    generators
        ``{"g_ab": G_ab, "g_ba": G_ba}``: the generators ``(B, C_a, H, W[, D]) -> (B, C_b, ...)`` and back.
    discriminators
        ``{"d_a": D_a, "d_b": D_b}``: the critics on domain A ``(B, C_a, ...)`` and domain B ``(B, C_b, ...)``.
    g_optimizer
        Optimiser over the parameters of both generators (e.g. ``itertools.chain`` of both).
    d_optimizer
        Optimiser over the parameters of both critics.
    keys
        Batch keys of domain A and domain B.
    generator_loss
        :class:`~emgan_monai.engines.GeneratorLoss`: ``lambda_cycle`` (10 in CycleGAN), ``cycle_criterion`` (``"l1"``
        as CycleGAN, or ``"mse"``: the A cycle's distance), ``lambda_cycle_b``
        (``None``: ``lambda_cycle``), ``cycle_b_sigma`` (Gaussian low-pass of the B cycle,
        :class:`~emgan_monai.losses.LowPassCycleLoss`), ``lambda_adv_a`` (weight of ``G_ba``'s adversarial term, 1 in
        CycleGAN) and ``lambda_identity`` (0.5 in CycleGAN; 0 disables the
        identity forward passes; needs ``C_a == C_b``).
    adversarial
        :class:`~emgan_monai.engines.AdversarialSettings` (``loss``, ``d_steps``, ``gp_weight``, ``clip_value``,
        ``pool_size``); ``None``: ``AdversarialSettings(pool_size=50)`` as CycleGAN.
    amp, seed, train_handlers, kwargs
        As :class:`~emgan_monai.engines.base.AdversarialTrainer`.

    One-directional mode: without ``g_ba`` and ``d_a`` (absent or ``None``) only ``G_ab`` is trained, against ``D_b``
    (unpaired translation GAN without cycle), e.g. a physics-informed simulator whose structure already ties output
    to input.

    Notes
    -----
    ``engine.state.output`` holds ``g_loss``, ``g_adv`` (both directions, ``G_ba``'s weighted by ``lambda_adv_a``),
    ``g_cycle``, ``g_identity`` (unweighted sums over both domains), ``d_loss``, ``d_real``, ``d_fake``, ``d_a``, ``d_b`` (``gp``) and the
    images ``real_a``, ``real_b``, ``fake_a``, ``fake_b``, ``rec_a``, ``rec_b`` (``idt_a``, ``idt_b``).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        generators: Mapping[str, nn.Module | None],
        discriminators: Mapping[str, nn.Module | None],
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        keys: Sequence[str] = ("image_a", "image_b"),
        generator_loss: GeneratorLoss | None = None,
        adversarial: AdversarialSettings | None = None,
        amp: bool = False,
        seed: int = 0,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        weights = GeneratorLoss() if generator_loss is None else generator_loss
        adversarial = AdversarialSettings(pool_size=50) if adversarial is None else adversarial
        adversarial.refuse(type(self).__name__, "r1_gamma", "r1_interval", "augment")
        weights.refuse(
            type(self).__name__,
            "lambda_adv",
            "adv_warmup",
            "pixel_loss",
            "lambda_pixel",
            "texture_loss",
            "lambda_texture",
            *_EQUIVARIANCE_TERMS,
        )
        given_g = {k: v for k, v in generators.items() if v is not None}
        given_d = {k: v for k, v in discriminators.items() if v is not None}
        if not {"g_ab"} <= set(given_g) <= {"g_ab", "g_ba"} or not {"d_b"} <= set(given_d) <= {"d_a", "d_b"}:
            raise ValueError(
                "generators must be {'g_ab'[, 'g_ba']} and discriminators {'d_b'[, 'd_a']}, got "
                f"{sorted(given_g)} and {sorted(given_d)}."
            )
        g_ab, g_ba, d_a, d_b = given_g["g_ab"], given_g.get("g_ba"), given_d.get("d_a"), given_d["d_b"]
        if (g_ba is None) != (d_a is None):
            raise ValueError("g_ba and d_a must both be given (CycleGAN) or both be None (one-directional GAN).")
        if isinstance(keys, str) or len(keys) != 2:
            raise ValueError(f"keys must be the batch keys (domain A, domain B), got {keys!r}.")
        critics = {"d_b": d_b} if d_a is None else {"d_a": d_a, "d_b": d_b}
        # CycleGAN (``self.cycle``) exactly when both ``g_ba`` and ``d_a`` are given; the methods below narrow on them
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            generators={"g_ab": g_ab} if g_ba is None else {"g_ab": g_ab, "g_ba": g_ba},
            discriminators=critics,
            g_optimizer=g_optimizer,
            d_optimizer=d_optimizer,
            adversarial=adversarial,
            amp=amp,
            seed=seed,
            train_handlers=train_handlers,
            **kwargs,
        )
        self.cycle = g_ba is not None
        self.g_ab, self.g_ba, self.d_a, self.d_b = g_ab, g_ba, d_a, d_b
        self.a_key, self.b_key = keys
        self.generator_loss = weights
        self.lambda_cycle = float(weights.lambda_cycle)
        self.lambda_identity = float(weights.lambda_identity) if self.cycle else 0.0
        self.lambda_cycle_b = self.lambda_cycle if weights.lambda_cycle_b is None else float(weights.lambda_cycle_b)
        self.lambda_adv_a = float(weights.lambda_adv_a)
        pool_size = int(adversarial.pool_size)
        self.pool_a = ImagePool(pool_size, rng=self.rng)
        self.pool_b = ImagePool(pool_size, rng=self.rng)
        self.rng.register("pool_a", self.pool_a)
        self.rng.register("pool_b", self.pool_b)
        self.cycle_loss = CycleConsistencyLoss(criterion=weights.cycle_criterion)
        spatial = getattr(g_ab, "spatial_dims", 3)
        sigma = float(weights.cycle_b_sigma)
        self.cycle_loss_b = LowPassCycleLoss(sigma, spatial) if sigma > 0 else CycleConsistencyLoss()
        self.identity_loss = IdentityLoss()

    def _prepare_inputs(self, batchdata: Any) -> dict[str, torch.Tensor]:
        return {"real_a": self.to_device(batchdata, self.a_key), "real_b": self.to_device(batchdata, self.b_key)}

    def _generate(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real_a, real_b = inputs["real_a"], inputs["real_b"]
        fake_b = self.g_ab(real_a)
        g_ba = self.g_ba
        if g_ba is None:
            return {"fake_b": fake_b}
        fake_a = g_ba(real_b)
        out = {"fake_b": fake_b, "rec_a": g_ba(fake_b), "fake_a": fake_a, "rec_b": self.g_ab(fake_a)}
        if self.lambda_identity > 0:
            out["idt_a"] = g_ba(real_a)
            out["idt_b"] = self.g_ab(real_b)
        return out

    def _critic_fakes(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict:
        if not self.cycle:
            return {"fake_b": self.pool_b.query(fakes["fake_b"])}
        return {"fake_a": self.pool_a.query(fakes["fake_a"]), "fake_b": self.pool_b.query(fakes["fake_b"])}

    def _critic_pairs(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> list[CriticPair]:
        if self.d_a is None:
            return [("b", self.d_b, inputs["real_b"], fakes["fake_b"])]
        return [
            ("a", self.d_a, inputs["real_a"], fakes["fake_a"]),
            ("b", self.d_b, inputs["real_b"], fakes["fake_b"]),
        ]

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        real_a, real_b = inputs["real_a"], inputs["real_b"]
        if self.d_a is None:
            return {"g_adv": (1.0, self.generator_adv(self.d_b, fakes["fake_b"]))}
        adv = self.generator_adv(self.d_b, fakes["fake_b"]) + self.lambda_adv_a * self.generator_adv(
            self.d_a, fakes["fake_a"]
        )
        cycle_a = self.cycle_loss(real_a, fakes["rec_a"].float())
        cycle_b = self.cycle_loss_b(real_b, fakes["rec_b"].float())
        terms = {
            "g_adv": (1.0, adv),
            "g_cycle": (self.lambda_cycle, cycle_a),
            "g_cycle_b": (self.lambda_cycle_b, cycle_b),
        }
        if self.lambda_identity > 0:
            identity = self.identity_loss(real_a, fakes["idt_a"].float()) + self.identity_loss(
                real_b, fakes["idt_b"].float()
            )
            terms["g_identity"] = (self.lambda_cycle * self.lambda_identity, identity)
        return terms
