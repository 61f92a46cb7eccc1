""":class:`MCDropoutInferer`: Monte-Carlo dropout mean and standard deviation of a stochastic generator, as a MONAI
inferer (the cryo-ET bundle's ``inference_uncertainty.json``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from monai.inferers import Inferer
from torch import nn

__all__ = ["MCDropoutInferer"]


class _InfererModule(nn.Module):
    """``x -> inferer(x, network)`` as a module, so that :func:`~emgan_monai.networks.mc_dropout` finds the
    network's dropout layers."""

    def __init__(self, network: nn.Module, inferer: Inferer | None) -> None:
        super().__init__()
        self.network = network
        self.inferer = inferer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x) if self.inferer is None else self.inferer(x, self.network)


def has_dropout(network: nn.Module) -> bool:
    """Whether ``network`` holds a dropout layer (MC dropout then measures the model's uncertainty)."""
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in network.modules())


class MCDropoutInferer(Inferer):
    """Mean and per-voxel standard deviation of ``k`` passes of a generator with its dropout layers active
    (:func:`~emgan_monai.networks.mc_dropout`; eval mode otherwise).

    With ``fix_noise`` and a network that has dropout and a ``sample_noise`` method (the cryo-ET generators), the
    generator's injected noise is drawn once per batch and reused by every pass, so the std shows the dropout (model)
    uncertainty only; the network then runs on the whole input, which must have the size of ``inferer``'s window.
    Otherwise each pass goes through ``inferer`` (e.g. a ``SlidingWindowInferer``) and draws new noise; a network
    without dropout (the physics-informed generator without residual) gives the spread of its ``k`` stochastic samples.

    Parameters
    ----------
    k
        Number of passes (>= 2).
    fix_noise
        Reuse one draw of the generator's noise for all passes (see above).
    inferer
        Inferer of each pass (``None``: the network on the whole input).

    Returns
    -------
    torch.Tensor
        ``(B, 2 C, *S)`` for ``(B, C, *S)`` inputs: channels ``[:C]`` the mean, ``[C:]`` the population std.
    """

    def __init__(self, k: int = 20, fix_noise: bool = True, inferer: Inferer | None = None) -> None:
        super().__init__()
        if k < 2:
            raise ValueError(f"k must be at least 2, got {k}")
        self.k, self.fix_noise, self.inferer = int(k), bool(fix_noise), inferer

    def noise_fixed(self, network: nn.Module) -> bool:
        """Whether the passes share one draw of ``network``'s noise (``fix_noise`` and the network allows it)."""
        return self.fix_noise and has_dropout(network) and hasattr(network, "sample_noise")

    def __call__(  # type: ignore[override]  # a module (its dropout layers), not any callable
        self, inputs: torch.Tensor, network: nn.Module, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        from emgan_monai.networks import mc_dropout

        if self.noise_fixed(network):
            roi = getattr(self.inferer, "roi_size", None)
            if roi is not None and tuple(inputs.shape[2:]) != tuple(roi):
                raise ValueError(
                    f"fix_noise needs maps of exactly the box size {tuple(roi)}, got "
                    f"{tuple(inputs.shape[2:])}; pass --fix_noise false to tile larger maps"
                )
            sample_noise = cast(Callable[[torch.Tensor], torch.Tensor], network.sample_noise)  # checked by noise_fixed
            mean, std = mc_dropout(network, inputs, k=self.k, noise=sample_noise(inputs))
        else:
            mean, std = mc_dropout(_InfererModule(network, self.inferer), inputs, k=self.k)
        return torch.cat([mean, std], dim=1)
