"""Exponential moving average (EMA) of generator weights (Karras et al. 2018; Yazici et al. 2019)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = [
    "AveragedModelUpdate",
    "ModelEMA",
    "averaged_model_state",
    "ema_decay",
    "ema_multi_avg_fn",
    "ema_update_",
    "load_ema_generator",
]


def ema_decay(updates: float, decay: float, warmup: bool = True) -> float:
    """Decay of EMA update number ``updates``: ``min(decay, (1 + n) / (10 + n))`` with warm-up (as TensorFlow's
    ``ExponentialMovingAverage`` with ``num_updates``), so early averages are not dominated by the initial weights."""
    return min(decay, (1.0 + updates) / (10.0 + updates)) if warmup else decay


@torch.no_grad()
def ema_update_(ema_tensors, current_tensors, d: float) -> None:
    """In place: floating-point ``ema = d * ema + (1 - d) * current``; other tensors (counters such as BatchNorm's
    ``num_batches_tracked``) are copied."""
    floats = [(e, c) for e, c in zip(ema_tensors, current_tensors) if e.is_floating_point()]
    if floats:
        torch._foreach_lerp_([e for e, _ in floats], [c.detach().to(e.dtype) for e, c in floats], 1.0 - d)
    for e, c in zip(ema_tensors, current_tensors):
        if not e.is_floating_point():
            e.copy_(c)


def averaged_model_state(state) -> dict:
    """The averaged network's own state dict from a ``torch.optim.swa_utils.AveragedModel`` state dict (e.g. the
    ``g_ema`` entry of a few-shot checkpoint): ``module.``-prefixed entries without the prefix, ``n_averaged`` dropped.

    Raises
    ------
    ValueError
        If ``state`` holds no ``module.`` entry (not an ``AveragedModel`` state dict).
    """
    out = {k[len("module.") :]: v for k, v in state.items() if k.startswith("module.")}
    if not out:
        raise ValueError(f"not an AveragedModel state dict (keys: {sorted(state)[:5]}...).")
    return out


def ema_multi_avg_fn(decay: float = 0.999, warmup: bool = True):
    """``multi_avg_fn`` for ``torch.optim.swa_utils.AveragedModel``: the EMA of :class:`ModelEMA` (same warm-up);
    ``warmup=False`` gives ``torch.optim.swa_utils.get_ema_multi_avg_fn(decay)``."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}.")

    def fn(ema_params, current_params, num_averaged) -> None:
        ema_update_(ema_params, current_params, ema_decay(float(num_averaged), decay, warmup))

    return fn


class ModelEMA(nn.Module):
    """An EMA copy of a network, updated after every training iteration: ``ema = decay * ema + (1 - decay) * w``.

    GAN generators oscillate around the equilibrium; the average of their recent weights is usually a better and
    steadier generator than the last iterate. Floating-point buffers are averaged too, integer buffers copied. The
    EMA starts as an exact copy of the network (call :meth:`reset` after loading other weights into the network,
    e.g. a calibration, before training). It is an ``nn.Module``: put it in the checkpoint dict for a bit-exact
    resume, save ``ema.module`` as the shipped generator, and call it like the network.

    Parameters
    ----------
    network
        The trained module (a ``DistributedDataParallel`` wrapper is unwrapped).
    decay
        EMA decay per iteration in ``[0, 1)`` (0.999 averages over about 1,000 iterations).
    warmup
        With ``warmup``, the decay used at update ``t`` is ``min(decay, (1 + t) / (10 + t))`` so that the early
        average is not dominated by the initial weights.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.source = [getattr(network, "module", network)]  # a list: not registered as a submodule
        self.module = copy.deepcopy(self.source[0]).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates: torch.Tensor  # the number of updates so far (a buffer, so that it is checkpointed)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def reset(self) -> None:
        """Copy the network's current weights into the EMA and restart the warm-up."""
        self.module.load_state_dict(self.source[0].state_dict())
        self.updates.zero_()

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step towards the network's current weights."""
        src = self.source[0].state_dict()
        ema = self.module.state_dict()
        ema_update_(
            list(ema.values()), [src[name] for name in ema], ema_decay(int(self.updates), self.decay, self.warmup)
        )
        self.updates += 1

    def attach(self, engine: Engine) -> None:
        """Update after every iteration of ``engine``."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _: self.update())

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class AveragedModelUpdate:
    """Update a ``torch.optim.swa_utils.AveragedModel`` (e.g. the EMA of a generator) after every training step.

    Runs on MONAI's ``IterationEvents.MODEL_COMPLETED``, i.e. inside the iteration right after the optimiser steps
    and before any ``ITERATION_COMPLETED`` handler, so a checkpoint saved at the end of an iteration holds the
    average of that iteration whatever the order of the handlers.

    Parameters
    ----------
    averaged
        The averaged copy, e.g.
        ``AveragedModel(G, multi_avg_fn=emgan_monai.handlers.ema_multi_avg_fn(0.999), use_buffers=True)``.
        Put it in the checkpoint for a bit-exact resume.
    network
        The trained network; ``None``: the engine's ``g_network`` (the generator of the GAN trainers, as the
        engine holds it, possibly ``DistributedDataParallel``-wrapped).
    """

    def __init__(self, averaged: torch.optim.swa_utils.AveragedModel, network: nn.Module | None = None) -> None:
        if not hasattr(averaged, "update_parameters"):
            raise TypeError(f"averaged must be a torch.optim.swa_utils.AveragedModel, got {type(averaged).__name__}.")
        self.averaged = averaged
        self.network = network

    def attach(self, engine: Engine) -> None:
        """Update after every model update of ``engine`` (a MONAI engine)."""
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.MODEL_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        network = self.network if self.network is not None else engine.g_network  # type: ignore[attr-defined]
        self.averaged.update_parameters(network)


def load_ema_generator(config: dict, ckpt: str | Path, recalibrate: bool = True) -> torch.nn.Module:
    """The EMA generator of a full training checkpoint (or a plain generator state dict), in ``eval()`` mode.

    ``config`` is a training config's content (``train_mask.json`` for stage 1, ``train.json`` for stage 2); the
    network is its ``network_def``; a full checkpoint gives its ``g_ema`` entry, one without EMA its ``generator``.

    With ``recalibrate`` (and a full checkpoint) the batch-norm statistics are recomputed for the averaged weights
    (:func:`~emgan_monai.networks.mask_generator.recalibrate_batchnorm`), as for the shipped weights.
    """
    from monai.bundle import ConfigParser

    from emgan_monai.networks.mask_generator import recalibrate_batchnorm

    parser = ConfigParser(config)
    net = parser.get_parsed_content("network_def")
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    full = "g_ema" in state
    if full:
        state = averaged_model_state(state["g_ema"])
    elif "generator" in state:
        state = state["generator"]
    net.load_state_dict(state)
    if full and recalibrate:
        recalibrate_batchnorm(net, parser.get_parsed_content("latent_shape"), seed=0)
    return net.eval()
