"""Adversarial settings of the cryo-ET GAN by name (loss, critic Lipschitz control, optimiser) and its optimisers.

- :data:`GAN_MODES` / :func:`gan_setting`: ``lsgan``, ``hinge``, ``wgan_gp``, ``wgan_clip`` and what each sets
  (``adv_loss``, ``clip_value``, ``gp_weight``, ``spectral_norm``, optimiser, learning rate, betas), read by the
  bundle's ``train.json`` to configure :class:`~emgan_monai.engines.CycleGANTrainer` and the critics;
- :func:`gan_optimizer`: the optimiser of a mode for one or several networks (physics parameters in their own group);
- :func:`wgan_optimizer`: RMSprop / Adam of the WGAN papers, for scripts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["GAN_MODES", "gan_optimizer", "gan_setting", "wgan_optimizer"]


#: Adversarial settings by name: loss, Lipschitz control of the critic, optimiser and its defaults.
#: ``lsgan`` (default) and ``hinge``: spectrally normalised critics, no clipping, Adam(2e-4, betas 0.5/0.999);
#: ``wgan_gp``: Wasserstein + gradient penalty 10 (Gulrajani et al.), Adam(1e-4, betas 0.5/0.9), plain critic;
#: ``wgan_clip``: the paper's Wasserstein + weight clipping 0.01 on a plain critic (clipping spectrally normalised
#: weights bounds nothing), RMSprop at the WGAN paper's 5e-5.
GAN_MODES: dict[str, dict[str, Any]] = {
    "lsgan": {
        "adv_loss": "least_squares",
        "clip_value": None,
        "gp_weight": None,
        "spectral_norm": True,
        "optimizer": "adam",
        "lr": 2e-4,
        "betas": (0.5, 0.999),
    },
    "hinge": {
        "adv_loss": "hinge",
        "clip_value": None,
        "gp_weight": None,
        "spectral_norm": True,
        "optimizer": "adam",
        "lr": 2e-4,
        "betas": (0.5, 0.999),
    },
    "wgan_gp": {
        "adv_loss": "wasserstein",
        "clip_value": None,
        "gp_weight": 10.0,
        "spectral_norm": False,
        "optimizer": "adam",
        "lr": 1e-4,
        "betas": (0.5, 0.9),
    },
    "wgan_clip": {
        "adv_loss": "wasserstein",
        "clip_value": 0.01,
        "gp_weight": None,
        "spectral_norm": False,
        "optimizer": "rmsprop",
        "lr": 5e-5,
        "betas": None,
    },
}


def gan_setting(mode: str, key: str) -> Any:
    """One entry of :data:`GAN_MODES` (``adv_loss``, ``clip_value``, ``gp_weight``, ``spectral_norm``, ...)."""
    if mode not in GAN_MODES:
        raise ValueError(f"unknown gan_mode {mode!r}; expected one of {sorted(GAN_MODES)}")
    return GAN_MODES[mode][key]


def gan_optimizer(
    modules: nn.Module | Sequence[nn.Module | None],
    mode: str = "lsgan",
    lr: float | None = None,
    physics_lr: float | None = None,
) -> torch.optim.Optimizer:
    """Optimiser of one or several networks for a :data:`GAN_MODES` entry (``None`` entries are skipped).

    ``lr`` overrides the mode's learning rate. Networks with ``physics_parameters()``
    (:class:`~emgan_monai.networks.PhysicsInformedGenerator`) get those few parameters in their own group with
    ``physics_lr`` (default ``lr``): a handful of scalars (defocus, contrast, noise level) need larger steps than
    convolution weights.
    """
    gan_setting(mode, "lr")  # validates the name
    setting = GAN_MODES[mode]
    lr = float(setting["lr"] if lr is None else lr)
    mods = [modules] if isinstance(modules, nn.Module) else [m for m in modules if m is not None]
    base: list[nn.Parameter] = []
    phys: list[nn.Parameter] = []
    for m in mods:
        m = getattr(m, "module", m)  # DistributedDataParallel
        physics_parameters = getattr(m, "physics_parameters", None)
        special = list(physics_parameters()) if physics_parameters is not None else []
        ids = {id(p) for p in special}
        phys += [p for p in special if p.requires_grad]
        base += [p for p in m.parameters() if id(p) not in ids and p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": base}]
    if phys:
        groups.append({"params": phys, "lr": float(lr if physics_lr is None else physics_lr)})
    groups = [g for g in groups if g["params"]]
    if setting["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr)
    return torch.optim.Adam(groups, lr=lr, betas=tuple(setting["betas"]))


def wgan_optimizer(
    params: Iterable[torch.nn.Parameter] | Iterable[Iterable[torch.nn.Parameter]],
    gradient_penalty: bool,
    lr_rmsprop: float = 5e-5,
    lr_adam: float = 1e-4,
    betas: Sequence[float] = (0.5, 0.9),
) -> torch.optim.Optimizer:
    """RMSprop at the WGAN paper's 5e-5 (weight clipping) or Adam (WGAN-GP, Gulrajani et al.); kept for scripts,
    the bundle uses :func:`gan_optimizer`. ``params`` may be a list of parameter iterables (they are chained)."""
    given: list[Any] = list(params)  # parameters, or iterables of parameters to chain
    flat = list(itertools.chain.from_iterable(given)) if given and not isinstance(given[0], torch.Tensor) else given
    if gradient_penalty:
        return torch.optim.Adam(flat, lr=lr_adam, betas=(float(betas[0]), float(betas[1])))
    return torch.optim.RMSprop(flat, lr=lr_rmsprop)
