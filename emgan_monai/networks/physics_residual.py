"""CryoETGAN's D -> S generator started at the physics: the calibrated simulator plus a zero-initialised 3D ResNet.

:class:`PhysicsResidualGenerator` is the ``G_ds`` of the bundle's working CycleGAN: the output of a
:class:`~emgan_monai.networks.PhysicsInformedGenerator` (learnable CTF, wedge, contrast and coloured noise, no
refinement of its own) plus a full CycleGAN ResNet generator (:class:`~emgan_monai.networks.CycleGANGenerator`, noise
at the bottleneck and every decoder scale) that sees the simulated subtomogram and the map and adds a correction
bounded by ``residual_bound`` z units. The ResNet's last convolution starts at zero, so before any training step the
generator *is* the calibrated simulator; the cycle and the critics then decide how far the network moves away from
the physics. The residual, not the physics, is what a pure CycleGAN generator must learn from scratch (and where it
collapses on small data).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .cyclegan3d import CycleGANGenerator
from .physics_generator import PhysicsInformedGenerator

__all__ = ["PhysicsResidualGenerator", "load_physics_"]


class PhysicsResidualGenerator(nn.Module):
    """Physics-informed simulator + zero-initialised 3D ResNet residual (CryoETGAN ``G_ds``).

    ``y = physics_z(m, n) + residual_bound * R([physics_z / z_scale, m], noise)`` with ``R`` a
    :class:`~emgan_monai.networks.CycleGANGenerator` (two input channels, ``tanh`` output, last convolution
    zero-initialised); output ``clamp(y / z_scale, -1, 1)``.

    Parameters
    ----------
    box, voxel_size, defocus_um, tilt_max_deg, z_scale
        As :class:`~emgan_monai.networks.PhysicsInformedGenerator` (its refinement branch is disabled).
    residual_channels
        Base filters of the ResNet residual (its encoder doubles them twice).
    residual_blocks
        Residual blocks at the ResNet's bottleneck.
    residual_bound
        Largest correction in z units (the signal of a particle is about 0.3 z at the toy data's SNR, the noise 1 z).
    noise_channels
        Noise channels injected at the ResNet's bottleneck and decoder scales (0: deterministic residual; the
        physics' noise stays).
    dropout
        Channel dropout in the ResNet (MC-dropout uncertainty); 0 = none.
    norm
        MONAI norm of the ResNet (``"INSTANCE"``).

    Shapes
    ------
    ``(B, 1, N, N, N)`` map in ``[-1, 1]`` -> ``(B, 1, N, N, N)`` subtomogram in ``[-1, 1]``; ``N`` divisible by 4.
    """

    def __init__(
        self,
        box: int = 16,
        voxel_size: float = 20.0,
        defocus_um: float = 3.0,
        tilt_max_deg: float = 60.0,
        z_scale: float = 3.0,
        residual_channels: int = 8,
        residual_blocks: int = 4,
        residual_bound: float = 0.1,
        noise_channels: int = 1,
        dropout: float = 0.0,
        norm: str = "INSTANCE",
    ) -> None:
        super().__init__()
        if residual_bound <= 0:
            raise ValueError(f"residual_bound must be positive, got {residual_bound}")
        self.spatial_dims = 3
        self.box = int(box)
        self.z_scale = float(z_scale)
        self.residual_bound = float(residual_bound)
        self.physics_net = PhysicsInformedGenerator(
            box=box,
            voxel_size=voxel_size,
            defocus_um=defocus_um,
            tilt_max_deg=tilt_max_deg,
            z_scale=z_scale,
            refine_channels=0,
        )
        self.residual = CycleGANGenerator(
            spatial_dims=3,
            in_channels=2,
            out_channels=1,
            channels=residual_channels,
            n_res_blocks=residual_blocks,
            noise_channels=noise_channels,
            dropout=dropout,
            norm=norm,
            decoder_noise=noise_channels > 0,
        )
        for p in self.residual.decoder[2].parameters():  # the last convolution: R = tanh(0) = 0 at the start
            nn.init.zeros_(p)

    def physics(self) -> dict[str, float | list[float]]:
        """The simulator's current physical parameters (see :meth:`PhysicsInformedGenerator.physics`)."""
        return self.physics_net.physics()

    def physics_parameters(self) -> list[nn.Parameter]:
        """The simulator's few physical parameters (their own optimiser group, see
        :func:`emgan_monai.engines.gan_modes.gan_optimizer`)."""
        return self.physics_net.physics_parameters()

    def calibrate_(
        self, maps: torch.Tensor | np.ndarray, snr: float, target_mean: float = 0.0, target_std: float = 1.0
    ) -> dict[str, float | list[float]]:
        """Start the simulator at the fair traditional baseline (:meth:`PhysicsInformedGenerator.calibrate_`)."""
        return self.physics_net.calibrate_(maps, snr, target_mean, target_std)

    def simulate(self, x: torch.Tensor, noise: torch.Tensor | list[torch.Tensor] | None = None) -> torch.Tensor:
        """The physics alone, ``clamp(z / z_scale, -1, 1)`` (the residual's starting point)."""
        return self.physics_net(x, noise)

    def forward(self, x: torch.Tensor, noise: Any = None) -> torch.Tensor:
        """``(B, 1, N, N, N)`` map in ``[-1, 1]`` -> subtomogram in ``[-1, 1]``; ``noise``: the physics' white
        ``(B, 1, N, N, N)`` volume (the ResNet's noise is drawn from the global torch generator)."""
        y = self.physics_net.forward_z(x, noise)
        r = self.residual(torch.cat([y / self.z_scale, x.float()], dim=1))
        return torch.clamp((y + self.residual_bound * r) / self.z_scale, -1.0, 1.0)


def load_physics_(generator: nn.Module, path: str) -> dict[str, float | list[float]]:
    """Load a trained :class:`PhysicsInformedGenerator` (its state dict at ``path``, without a refinement branch)
    into the simulator of a :class:`PhysicsResidualGenerator` (``DistributedDataParallel`` is unwrapped); returns the
    loaded physics. The CycleGAN recipe starts ``G_ds`` from the shipped physics-informed GAN this way."""
    net = getattr(generator, "module", generator)
    if not isinstance(net, PhysicsResidualGenerator):
        raise TypeError(f"physics_init needs a physics_residual generator, got {type(net).__name__}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    expected = set(net.physics_net.state_dict())
    if not isinstance(state, dict) or set(state) != expected:
        got = sorted(set(state) ^ expected) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"physics_init {path}: not the weights of a physics-informed generator without residual branch "
            f"(refine_channels 0), e.g. models/g_ds_physics.pt; differing keys: {got}"
        )
    net.physics_net.load_state_dict(state)
    return net.physics()
