"""Base adversarial trainer shared by the unconditional, paired (pix2pix) and unpaired (CycleGAN) trainers."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any

import torch
from monai.data import MetaTensor
from monai.engines import Trainer
from monai.engines.utils import IterationEvents
from monai.engines.workflow import Workflow
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from emgan_monai.errors import CheckpointError, DataError, NonFiniteLossError
from emgan_monai.losses.adversarial import AdversarialLoss, clip_weights, gradient_penalty

from .settings import AdversarialSettings
from .utils import FullPassLoader, RandomState

__all__ = ["AdversarialTrainer", "CriticPair"]

#: (name, critic, real input, fake input) as returned by ``AdversarialTrainer._critic_pairs``
CriticPair = tuple[str, nn.Module, torch.Tensor, torch.Tensor]

_AMP_CPU_WARNED = False


@contextmanager
def frozen(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Disable ``requires_grad`` of the modules' parameters (restored on exit).

    Modules wrapped in ``DistributedDataParallel`` additionally run under ``no_sync()``, so their reducer does not wait
    for gradients that will never arrive.
    """
    saved: list[tuple[nn.Parameter, bool]] = []
    with ExitStack() as stack:
        for module in modules:
            if isinstance(module, DistributedDataParallel):
                stack.enter_context(module.no_sync())
            for p in module.parameters():
                saved.append((p, p.requires_grad))
                p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in saved:
                p.requires_grad_(flag)


class AdversarialTrainer(Trainer):
    """Base class of the GAN trainers: one critic phase and one generator phase per iteration.

    Each iteration (one batch from ``train_data_loader``):

    1. prepare the batch (:meth:`_prepare_inputs`) and run the generator(s) once (:meth:`_generate`);
    2. update the discriminator(s) ``d_steps`` times on the same real batch and the same detached fakes
       (:meth:`_critic_pairs`), optionally with WGAN-GP penalty and/or WGAN weight clipping after each step;
    3. update the generator(s) once through the freshly updated, frozen discriminator(s)
       (:meth:`_generator_terms`), reusing the fakes of step 1.

    ``engine.state.output`` is a dict with float scalars ``g_loss``, ``d_loss`` and loss components (``g_adv``,
    ``d_real``, ``d_fake``, ``gp`` and the subclass terms; components are unweighted, the totals weighted; with
    ``d_steps > 1`` critic values are averaged over the steps) plus detached image tensors ``(B, C, H, W[, D])``
    named by the subclass. Use :func:`emgan_monai.engines.scalars` as ``output_transform`` of ``StatsHandler`` /
    ``TensorBoardStatsHandler``.

    All randomness of the engine (latent noise, image pool, penalty ``eps``) comes from ``engine.rng``
    (:class:`~emgan_monai.engines.utils.RandomState`); add it to the checkpoint (``{"rng": trainer.rng}``)
    together with the networks, both optimisers and the trainer for a bit-exact resume. ``engine.rng`` also holds
    the random state of the training data: the ``train_data_loader``'s shuffling generator and, when it loads in the
    main process (``num_workers=0``), the random state of every MONAI ``Randomizable`` transform of its dataset
    (see :meth:`~emgan_monai.engines.utils.RandomState.register_data_loader`), so that a resumed run draws the same
    batches, flips and crops as an uninterrupted one.

    Non-finite losses: with ``stop_on_nonfinite`` (an attribute, default ``True``) each total loss (``d_loss``,
    ``g_loss``) is checked before its backward pass; a NaN/Inf raises
    :class:`~emgan_monai.errors.NonFiniteLossError` (naming the loss, its terms, the epoch and iteration) before the
    optimiser touches the weights. The error is raised straight out
    of :meth:`run` without firing ignite's ``EXCEPTION_RAISED`` event, so handlers such as
    ``CheckpointSaver(save_final=True)`` do not save the untrusted state as a "final" checkpoint: the last interval
    checkpoint stays the newest, and ``ResumeFromLatest`` / ``--resume true`` continues from it.

    Non-finite inputs: every floating-point batch tensor is checked for NaN/Inf before the forward pass
    (``check_inputs``), raising :class:`~emgan_monai.errors.DataError` naming the batch key, the iteration and (when
    the batch carries MONAI metadata) the files; without it such data surface as a NaN loss or an obscure error
    inside a loss.

    Parameters
    ----------
    device
        Device to train on.
    max_epochs
        Number of epochs.
    train_data_loader
        Iterable of dict batches (a ``torch.utils.data.DataLoader`` of a MONAI dataset).
    generators, discriminators
        Named networks (plain or ``DistributedDataParallel``-wrapped); used for ``train()`` mode, weight clipping and
        freezing the critics during the generator phase.
    g_optimizer
        Optimiser over the parameters of all generators.
    d_optimizer
        Optimiser over the parameters of all discriminators/critics.
    adversarial
        :class:`~emgan_monai.engines.AdversarialSettings`: the criterion (``loss``; the discriminator loss of a
        critic is ``0.5 * (loss_real + loss_fake)`` as in pix2pix/CycleGAN, ``loss_real + loss_fake`` for
        Wasserstein), ``d_steps``, ``gp_weight`` and ``clip_value``; ``None``: ``AdversarialSettings()`` (BCE, one
        critic step, no penalty). R1, augmentation and image pools are the subclasses' to use.
    amp
        Mixed precision with ``torch.autocast("cuda")`` and one ``GradScaler`` per optimiser (``engine.scaler_g``,
        ``engine.scaler_d``). Only honoured on CUDA: on other devices a warning is issued once and training runs in
        float32 (bf16 autocast on CPU is far slower).
    seed
        Seed of ``engine.rng``.
    train_handlers
        Ignite/MONAI handlers to attach (``StatsHandler``, ``CheckpointSaver``, ``ValidationHandler``, ...).
    kwargs
        The other arguments of :class:`monai.engines.Trainer`, passed on unchanged (``epoch_length``,
        ``non_blocking``, ``iteration_update``, ``postprocessing``, ``key_metric``, ``additional_metrics``,
        ``metric_cmp_fn``, ``event_names``, ``event_to_attr``, ``to_kwargs``, ``amp_kwargs``); outputs are not
        decollated (``decollate=False``).

    Attributes
    ----------
    stop_on_nonfinite
        ``True`` (default): the non-finite loss check above; ``False`` lets the optimiser step on whatever the loss
        is (benchmarks).
    check_inputs
        ``True`` (default): the non-finite input check above.
    optim_set_to_none
        Passed to ``optimizer.zero_grad(set_to_none=...)``; default ``False``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        generators: Mapping[str, nn.Module],
        discriminators: Mapping[str, nn.Module],
        g_optimizer: Optimizer,
        d_optimizer: Optimizer,
        adversarial: AdversarialSettings | None = None,
        amp: bool = False,
        seed: int = 0,
        train_handlers: Sequence | None = None,
        **kwargs: Any,
    ) -> None:
        adversarial = AdversarialSettings() if adversarial is None else adversarial
        if not generators or not discriminators:
            raise ValueError("at least one generator and one discriminator are required.")
        device = torch.device(device)
        use_amp = bool(amp)
        if use_amp and device.type != "cuda":
            global _AMP_CPU_WARNED
            if not _AMP_CPU_WARNED:
                warnings.warn(f"amp=True is only honoured on CUDA; training on {device} runs in float32.", stacklevel=2)
                _AMP_CPU_WARNED = True
            use_amp = False
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            handlers=train_handlers,
            amp=use_amp,
            decollate=False,
            **kwargs,
        )
        self.g_networks: dict[str, nn.Module] = dict(generators)
        self.d_networks: dict[str, nn.Module] = dict(discriminators)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        self.adversarial = adversarial
        loss = "bce" if adversarial.loss is None else adversarial.loss
        self.adv_loss = loss if isinstance(loss, AdversarialLoss) else AdversarialLoss(loss)
        self.d_steps = int(adversarial.d_steps)
        self.clip_value = adversarial.clip_value
        self.gp_weight = adversarial.gp_weight
        self.optim_set_to_none = False
        self.rng = RandomState(seed)
        self.rng.register_data_loader(train_data_loader)
        self._train_loader = train_data_loader
        try:
            self._full_pass_loader: FullPassLoader | None = FullPassLoader(train_data_loader)
        except TypeError:  # an iterable without a length: never wrapped
            self._full_pass_loader = None
        self.stop_on_nonfinite = True
        self.check_inputs = True
        self.scaler_g = torch.amp.GradScaler("cuda") if use_amp else None
        self.scaler_d = torch.amp.GradScaler("cuda") if use_amp else None
        self._d_scale = 1.0 if self.adv_loss.is_wasserstein else 0.5

    # ------------------------------------------------------------------ hooks for subclasses
    def _prepare_inputs(self, batchdata: Any) -> dict[str, torch.Tensor]:
        """Tensors needed by the iteration, moved to the engine device."""
        raise NotImplementedError(f"{type(self).__name__} must implement _prepare_inputs.")

    def _generate(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Generator forward pass(es); the returned tensors keep their graph for the generator phase."""
        raise NotImplementedError(f"{type(self).__name__} must implement _generate.")

    def _critic_fakes(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict:
        """Detached fakes shown to the critics (CycleGAN passes them through its image pools)."""
        return {k: v.detach() for k, v in fakes.items()}

    def _critic_pairs(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> list[CriticPair]:
        """``(name, critic, real_input, fake_input)`` for every critic."""
        raise NotImplementedError(f"{type(self).__name__} must implement _critic_pairs.")

    def _generator_terms(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, tuple[float, torch.Tensor]]:
        """Generator loss terms ``name -> (weight, unweighted scalar loss)``; use :meth:`generator_adv`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _generator_terms.")

    def _images(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict:
        """Detached images reported in ``engine.state.output``."""
        return {**{k: v.detach() for k, v in inputs.items()}, **{k: v.detach() for k, v in fakes.items()}}

    # ------------------------------------------------------------------ helpers
    def networks(self) -> list[nn.Module]:
        """All generators and discriminators."""
        return [*self.g_networks.values(), *self.d_networks.values()]

    def autocast(self):
        """``torch.autocast("cuda", **amp_kwargs)`` when AMP is active, else a null context."""
        return torch.autocast("cuda", **self.amp_kwargs) if self.amp else nullcontext()

    def generator_adv(self, critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Adversarial generator loss of ``critic(x)`` (fakes judged as real)."""
        return self.adv_loss(critic(x), target_is_real=True, for_discriminator=False)

    def to_device(self, batchdata: Any, key: str) -> torch.Tensor:
        """``batchdata[key]`` as a plain tensor on the engine device; a clear ``ValueError`` if it is missing."""
        if not isinstance(batchdata, Mapping):
            raise ValueError(f"{type(self).__name__} expects dict batches, got {type(batchdata).__name__}.")
        if key not in batchdata:
            raise ValueError(f"batch has no key {key!r}; available keys: {sorted(map(str, batchdata))}.")
        value = batchdata[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"batch[{key!r}] must be a tensor, got {type(value).__name__}.")
        if self.check_inputs and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            files = value.meta.get("filename_or_obj") if isinstance(value, MetaTensor) else None
            if files is None:
                files = batchdata.get(f"{key}_meta_dict", {}).get("filename_or_obj")
            n_bad = int((~torch.isfinite(value)).sum())
            raise DataError(
                "" if files is None else str(files),
                f"batch[{key!r}] holds {n_bad} NaN/Inf values at epoch {self.state.epoch}, iteration "
                f"{self.state.iteration}; fix or drop the offending images (e.g. a failed reconstruction)",
            )
        if isinstance(value, MetaTensor):
            value = value.as_tensor()
        return value.to(self.state.device, non_blocking=self.non_blocking, **self.to_kwargs)

    def check_finite(self, name: str, loss: torch.Tensor, components: Mapping[str, Any]) -> None:
        """Raise :class:`~emgan_monai.errors.NonFiniteLossError` if ``loss`` is NaN/Inf (``stop_on_nonfinite``).

        Parameters
        ----------
        name
            Name of the total loss (``"d_loss"``, ``"g_loss"``).
        loss
            The scalar total loss, before its backward pass.
        components
            Its terms (tensors or floats), reported in the message.
        """
        if not self.stop_on_nonfinite or bool(torch.isfinite(loss.detach()).all()):
            return
        terms = {
            k: float(v.detach().float()) if isinstance(v, torch.Tensor) else float(v) for k, v in components.items()
        }
        raise NonFiniteLossError(name, float(loss.detach().float()), self.state.epoch, self.state.iteration, terms)

    def _handle_exception(self, e: BaseException) -> None:
        """Let non-finite-loss and checkpoint errors through without firing ``EXCEPTION_RAISED``.

        ignite hands exceptions to the ``EXCEPTION_RAISED`` handlers, and MONAI's ``CheckpointSaver(save_final=True)``
        saves the current state there. After a non-finite loss (:class:`~emgan_monai.errors.NonFiniteLossError`)
        or a checkpoint that could not be restored (:class:`~emgan_monai.errors.CheckpointError`) that state must not
        become a checkpoint (nor overwrite ``model.pt``).
        """
        if isinstance(e, (NonFiniteLossError, CheckpointError)):
            if not getattr(e, "_emgan_logged", False):  # ignite hands the error over twice (iteration, run)
                self.logger.error("training stopped: %s", e)
                e._emgan_logged = True  # type: ignore[union-attr]  # a mark on this error object, read back above
            raise e
        super()._handle_exception(e)

    def _step(self, loss: torch.Tensor, optimizer: Optimizer, scaler: torch.amp.GradScaler | None) -> None:
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    # ------------------------------------------------------------------ phases
    def _critic_phase(self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]) -> dict[str, float]:
        pairs = self._critic_pairs(inputs, fakes)
        totals: dict[str, float] = {}
        for _ in range(self.d_steps):
            self.d_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
            stats: dict[str, torch.Tensor] = {}
            d_loss = torch.zeros((), device=self.state.device)
            with self.autocast():
                for name, critic, real, fake in pairs:
                    loss_real = self.adv_loss(critic(real), target_is_real=True, for_discriminator=True)
                    loss_fake = self.adv_loss(critic(fake), target_is_real=False, for_discriminator=True)
                    loss = self._d_scale * (loss_real + loss_fake)
                    d_loss = d_loss + loss
                    stats["d_real"] = stats.get("d_real", 0.0) + loss_real.detach()
                    stats["d_fake"] = stats.get("d_fake", 0.0) + loss_fake.detach()
                    if len(pairs) > 1:
                        stats[f"d_{name}"] = loss.detach()
            if self.gp_weight:
                gp = torch.zeros((), device=self.state.device)
                for _, critic, real, fake in pairs:
                    gp = gp + gradient_penalty(critic, real.float(), fake.float(), generator=self.rng.generator)
                d_loss = d_loss + self.gp_weight * gp
                stats["gp"] = gp.detach()
            stats["d_loss"] = d_loss.detach()
            self.check_finite("d_loss", d_loss, {k: v for k, v in stats.items() if k != "d_loss"})
            self._step(d_loss, self.d_optimizer, self.scaler_d)
            if self.clip_value is not None:
                for critic in self.d_networks.values():
                    clip_weights(critic, self.clip_value)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + float(value) / self.d_steps
        return totals

    def _generator_phase(
        self, inputs: Mapping[str, torch.Tensor], fakes: Mapping[str, torch.Tensor]
    ) -> dict[str, float]:
        self.g_optimizer.zero_grad(set_to_none=self.optim_set_to_none)
        with frozen(self.d_networks.values()):
            with self.autocast():
                terms = self._generator_terms(inputs, fakes)
                g_loss = sum(weight * value.float() for weight, value in terms.values())
            self.check_finite("g_loss", g_loss, {k: v for k, (_, v) in terms.items()})  # type: ignore[arg-type]
            self._step(g_loss, self.g_optimizer, self.scaler_g)  # type: ignore[arg-type]
        stats = {name: float(value.detach()) for name, (_, value) in terms.items()}
        stats["g_loss"] = float(g_loss.detach())  # type: ignore[union-attr]
        return stats

    def _iteration(self, engine: AdversarialTrainer, batchdata: Any) -> dict[str, Any]:
        """One critic phase and one generator phase on ``batchdata``; returns the output dict described above."""
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        inputs = engine._prepare_inputs(batchdata)
        for network in engine.networks():
            network.train()
        with engine.autocast():
            fakes = engine._generate(inputs)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        d_stats = engine._critic_phase(inputs, engine._critic_fakes(inputs, fakes))
        g_stats = engine._generator_phase(inputs, fakes)
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.state.output = {**g_stats, **d_stats, **engine._images(inputs, fakes)}
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def run(self) -> None:  # type: ignore[override]
        """Train; calling it again continues from the current state. The GradScalers persist across calls.

        When an epoch is one full pass over a sized loader (``epoch_length == len(train_data_loader)``), ignite is
        given the loader wrapped in :class:`~emgan_monai.engines.utils.FullPassLoader`, whose iterator ends after
        the pass without drawing the extra shuffle that a second ``next`` on an exhausted ``DataLoader`` iterator
        would; a run resumed at an epoch boundary then sees the same data order as an uninterrupted one. Shorter
        epochs keep ignite's behaviour of continuing the iterator across epochs.
        """
        loader, wrapped = self._train_loader, self._full_pass_loader  # wrapped: None for an iterable without a length
        try:
            full_pass = wrapped is not None and self.state.epoch_length == len(wrapped)
        except TypeError:  # an iterable without a length
            full_pass = False
        self.data_loader = wrapped if full_pass and wrapped is not None else loader
        try:
            Workflow.run(self)
        finally:
            self.data_loader = loader
