"""Physics-informed subtomogram generator: the traditional cryo-ET simulator with learnable physics + a learned residual.

:class:`PhysicsInformedGenerator` maps a noise-free shape/density map to a subtomogram in three differentiable steps,

1. **image formation** (the traditional simulator of
   :func:`emgan_monai.physics.subtomogram_simulator.simulate_subtomogram`, in torch):
   ``s = -IFFT(FFT(m) * CTF(|k|; defocus, B) * W(k; tilt_max))``, contrast-inverted;
2. **detector / reconstruction noise**: ``n = IFFT(FFT(white) * A(|k|) * ((1 - w) + w * W(k)))``, i.e. white
   Gaussian noise coloured by a learnable radial amplitude profile ``A`` (one value per frequency shell) and passed
   through the missing wedge with a learnable weight ``w`` (noise reconstructed from a tilt series lacks the wedge's
   frequencies too, noise added after the simulation does not);
3. **calibration + refinement**: ``y = gain * s + offset + sigma * n`` in z units of the real training
   subtomograms, plus a small convolutional residual ``r(y, m)`` whose last layer starts at zero.

The learnable physical parameters are the defocus (log, in um), the B-factor of the CTF envelope, the half-range of
the tilt series (soft wedge edge), the signal gain (contrast) and offset, the noise amplitude, its radial profile and
its wedge weight. Initialised with :meth:`calibrate_` from the fair traditional baseline (same SNR, contrast and
normalisation), the generator starts at the baseline's quality; adversarial training against real subtomograms can
then move the physics and the residual.

Volumes are ``(B, 1, D, H, W)`` tensors, axis 2 the beam direction, axis 3 the tilt axis (as
:func:`~emgan_monai.physics.subtomogram_simulator.missing_wedge_mask` with ``tilt_axis="y"``).
Input: the generator's map range ``[-1, 1]`` (``2 * occupancy - 1``); output: ``clamp(z / z_scale, -1, 1)``, like the
real subtomograms fed to the critics.

:func:`emgan_monai.data.cryoet_calibration.init_generator` starts a generator at the calibrated traditional baseline
(it reads the training data, so it lives on the data floor); :func:`emgan_monai.evaluation.cryoet.load_generators`
builds generators of :func:`build_subtomogram_generator` kinds from saved weights (the bundle's ``evaluate.json``).
"""

from __future__ import annotations

import logging
import math
from typing import Any, List, Optional, Union

import numpy as np
import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Dropout
from torch import nn

from emgan_monai.physics.ctf import electron_wavelength

__all__ = [
    "PhysicsInformedGenerator",
    "build_subtomogram_generator",
    "ctf_torch",
    "soft_wedge",
]

logger = logging.getLogger(__name__)


def ctf_torch(
    freq: torch.Tensor,
    defocus_um: torch.Tensor | float,
    bfactor: torch.Tensor | float = 0.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> torch.Tensor:
    """Differentiable :func:`~emgan_monai.physics.ctf.ctf_1d` (same formula and sign convention).

    ``CTF(k) = [sqrt(1 - A^2) sin(chi) + A cos(chi)] * exp(-B k^2 / 4)``,
    ``chi = pi lambda dz k^2 - pi / 2 Cs lambda^3 k^4``; ``freq`` in 1/A (any shape), defocus in um (> 0 underfocus),
    B in A^2. Gradients flow to ``defocus_um`` and ``bfactor``.
    """
    return _ctf(
        freq,
        torch.as_tensor(defocus_um),
        torch.as_tensor(bfactor),
        electron_wavelength(voltage_kv),
        cs_mm,
        amplitude_contrast,
    )


def _ctf(
    freq: torch.Tensor,
    defocus_um: torch.Tensor,
    bfactor: torch.Tensor,
    wavelength: float,
    cs_mm: float,
    amplitude_contrast: float,
) -> torch.Tensor:
    """:func:`ctf_torch` with the electron wavelength (A) given: TorchScript-compatible, same operations."""
    lam = wavelength
    k2 = freq**2
    dz = defocus_um * 1e4
    cs = cs_mm * 1e7
    chi = math.pi * lam * dz * k2 - 0.5 * math.pi * cs * lam**3 * k2**2
    ctf = math.sqrt(1.0 - amplitude_contrast**2) * torch.sin(chi) + amplitude_contrast * torch.cos(chi)
    return ctf * torch.exp(-bfactor * k2 / 4.0)


def soft_wedge(angle_deg: torch.Tensor, tilt_max_deg: torch.Tensor, width_deg: float = 3.0) -> torch.Tensor:
    """Soft missing-wedge weight ``sigmoid((tilt_max - |angle|) / width)`` of frequencies at ``angle`` from the
    specimen plane (``0`` in plane, ``90`` along the beam); ``-> 1`` inside the sampled range, ``-> 0`` in the
    wedge. Differentiable in ``tilt_max_deg`` (a tensor, or a float outside TorchScript)."""
    return torch.sigmoid((tilt_max_deg - angle_deg.abs()) / width_deg)


def _inverse_softplus(y: float) -> float:
    return float(y + math.log(-math.expm1(-y))) if y < 20 else float(y)


class PhysicsInformedGenerator(nn.Module):
    """Traditional cryo-ET simulator with learnable physical parameters and a zero-initialised learned residual.

    Parameters
    ----------
    box
        Cube edge ``N`` of the volumes (the Fourier grids are built for ``(N, N, N)``).
    voxel_size
        Voxel size in A.
    defocus_um, bfactor, tilt_max_deg
        Initial defocus (um, underfocus > 0), B-factor (A^2) and tilt half-range (degrees).
    voltage_kv, cs_mm, amplitude_contrast
        Fixed microscope constants of the CTF.
    refine_channels
        Filters of the residual refinement (two 3^3 conv + PReLU layers, then a zero-initialised 3^3 conv to one
        channel, bounded by ``max_residual * tanh``); 0 = none (pure learnable physics).
    max_residual
        Largest residual in z units (a bounded correction cannot replace the physics; the signal of a particle is
        about 0.3 z units at the toy data's SNR).
    dropout
        Channel dropout inside the refinement (MC-dropout uncertainty); 0 = none.
    z_scale
        Output ``= clamp(z / z_scale, -1, 1)``; matches the subtomogram scaling of the bundle (3).
    learn_physics
        Whether the physical parameters are trainable (``False``: only gain/offset/noise/refinement learn).
    noise_shells
        Number of knots of the radial noise profile between ``|k| = 0`` and the corner frequency.
    wedge_width_deg
        Softness of the wedge edge.

    Shapes
    ------
    ``(B, 1, N, N, N)`` map in ``[-1, 1]`` -> ``(B, 1, N, N, N)`` subtomogram in ``[-1, 1]`` (z units / ``z_scale``).
    """

    def __init__(
        self,
        box: int = 16,
        voxel_size: float = 20.0,
        defocus_um: float = 3.0,
        bfactor: float = 0.0,
        tilt_max_deg: float = 60.0,
        voltage_kv: float = 300.0,
        cs_mm: float = 2.7,
        amplitude_contrast: float = 0.07,
        refine_channels: int = 16,
        max_residual: float = 0.3,
        dropout: float = 0.0,
        z_scale: float = 3.0,
        learn_physics: bool = True,
        noise_shells: int = 8,
        wedge_width_deg: float = 3.0,
    ) -> None:
        super().__init__()
        if box < 4 or voxel_size <= 0 or defocus_um <= 0 or z_scale <= 0 or noise_shells < 2:
            raise ValueError(
                f"invalid settings: box={box}, voxel_size={voxel_size}, defocus_um={defocus_um}, z_scale={z_scale}, "
                f"noise_shells={noise_shells}"
            )
        if not 0.0 < tilt_max_deg <= 90.0:
            raise ValueError(f"tilt_max_deg must be in (0, 90], got {tilt_max_deg}")
        self.spatial_dims = 3
        self.box = int(box)
        self.voxel_size = float(voxel_size)
        self.voltage_kv, self.cs_mm, self.amplitude_contrast = (
            float(voltage_kv),
            float(cs_mm),
            float(amplitude_contrast),
        )
        self.wavelength = electron_wavelength(self.voltage_kv)  # A; a plain float so that forward is scriptable
        self.z_scale = float(z_scale)
        self.max_residual = float(max_residual)
        self.wedge_width_deg = float(wedge_width_deg)
        self.noise_channels = 0  # no CycleGAN-style bottleneck noise; see sample_noise

        # Fourier grids (unshifted FFT layout), beam along axis 0, tilt axis = axis 1
        f = np.fft.fftfreq(self.box, d=self.voxel_size)
        kz, ky, kx = np.meshgrid(f, f, f, indexing="ij")
        k = np.sqrt(kz**2 + ky**2 + kx**2)
        angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))  # angle from the specimen plane in (k_z, k_x)
        angle = np.where((kz == 0) & (kx == 0), 0.0, angle)  # the tilt axis itself is always sampled
        # buffers, declared for the type checker (TorchScript cannot resolve class-level string annotations)
        self.freq: torch.Tensor
        self.angle: torch.Tensor
        self.shell_lo: torch.Tensor
        self.shell_frac: torch.Tensor
        self.register_buffer("freq", torch.from_numpy(k.astype(np.float32)), persistent=False)
        self.register_buffer("angle", torch.from_numpy(angle.astype(np.float32)), persistent=False)
        kmax = float(k.max())
        pos = k / kmax * (noise_shells - 1)  # linear interpolation between shell knots
        lo = np.clip(np.floor(pos).astype(np.int64), 0, noise_shells - 2)
        self.register_buffer("shell_lo", torch.from_numpy(lo), persistent=False)
        self.register_buffer("shell_frac", torch.from_numpy((pos - lo).astype(np.float32)), persistent=False)

        phys = dict(requires_grad=bool(learn_physics))
        self.log_defocus = nn.Parameter(torch.tensor(math.log(defocus_um)), **phys)
        self.raw_bfactor = nn.Parameter(torch.tensor(_inverse_softplus(max(bfactor, 1e-3) / 100.0)), **phys)
        self.tilt_max = nn.Parameter(torch.tensor(float(tilt_max_deg)), **phys)
        self.noise_log_profile = nn.Parameter(torch.zeros(noise_shells), **phys)
        self.noise_wedge_logit = nn.Parameter(torch.tensor(-2.0), **phys)  # w = sigmoid(-2) ~ 0.12: nearly white
        # calibration (z units of the real training subtomograms), set by calibrate_()
        self.gain = nn.Parameter(torch.tensor(1.0))
        self.offset = nn.Parameter(torch.tensor(0.0))
        self.log_sigma = nn.Parameter(torch.tensor(0.0))

        self.refine: nn.Module | None = None
        if refine_channels > 0:
            conv: dict[str, Any] = {"spatial_dims": 3, "kernel_size": 3, "act": "PRELU", "norm": None}
            last = Convolution(3, refine_channels, 1, kernel_size=3, conv_only=True)
            for p in last.parameters():  # the conv's weight and bias (conv_only)
                nn.init.zeros_(p)
            drop = Dropout[Dropout.DROPOUT, 3](p=dropout) if dropout > 0 else nn.Identity()
            self.refine = nn.Sequential(
                Convolution(in_channels=2, out_channels=refine_channels, **conv),
                Convolution(in_channels=refine_channels, out_channels=refine_channels, **conv),
                drop,
                last,
            )

    # ------------------------------------------------------------------ physical quantities
    @property
    def defocus_um(self) -> torch.Tensor:
        return self.log_defocus.exp()

    @property
    def bfactor(self) -> torch.Tensor:
        return nn.functional.softplus(self.raw_bfactor) * 100.0

    def physics(self) -> dict[str, float | list[float]]:
        """Current physical parameters as plain numbers (for logs and docs)."""
        with torch.no_grad():
            return {
                "defocus_um": float(self.defocus_um),
                "bfactor_A2": float(self.bfactor),
                "tilt_max_deg": float(self.tilt_max),
                "gain": float(self.gain),
                "offset": float(self.offset),
                "noise_sigma": float(self.log_sigma.exp()),
                "noise_wedge_weight": float(torch.sigmoid(self.noise_wedge_logit)),
                "noise_profile": [round(float(v), 4) for v in self.noise_log_profile.exp()],
            }

    def physics_parameters(self) -> list[nn.Parameter]:
        """The few physical / calibration parameters (for their own optimiser group and learning rate)."""
        return [
            self.log_defocus,
            self.raw_bfactor,
            self.tilt_max,
            self.noise_log_profile,
            self.noise_wedge_logit,
            self.gain,
            self.offset,
            self.log_sigma,
        ]

    def refinement_parameters(self) -> list[nn.Parameter]:
        return [] if self.refine is None else list(self.refine.parameters())

    def transfer(self) -> torch.Tensor:
        """``CTF * wedge`` on the ``(N, N, N)`` FFT grid."""
        ctf = _ctf(self.freq, self.defocus_um, self.bfactor, self.wavelength, self.cs_mm, self.amplitude_contrast)
        return ctf * soft_wedge(self.angle, self.tilt_max, self.wedge_width_deg)

    def noise_filter(self) -> torch.Tensor:
        """Amplitude filter of the noise on the FFT grid (radial profile x partial wedge), normalised to unit
        mean power so that ``sigma`` stays the noise standard deviation."""
        prof = self.noise_log_profile
        radial = torch.exp(prof[self.shell_lo] * (1 - self.shell_frac) + prof[self.shell_lo + 1] * self.shell_frac)
        w = torch.sigmoid(self.noise_wedge_logit)
        filt = radial * ((1 - w) + w * soft_wedge(self.angle, self.tilt_max, self.wedge_width_deg))
        return filt / filt.pow(2).mean().clamp_min(1e-12).sqrt()

    def signal(self, x: torch.Tensor) -> torch.Tensor:
        """Noise-free, contrast-inverted ``-IFFT(FFT(m) * CTF * wedge)`` of the map ``m = (x + 1) / 2``."""
        m = (x.float() + 1.0) / 2.0
        return -torch.fft.ifftn(torch.fft.fftn(m, dim=[-3, -2, -1]) * self.transfer(), dim=[-3, -2, -1]).real

    def colour_noise(self, white: torch.Tensor) -> torch.Tensor:
        """Coloured, unit-power noise from white ``(B, 1, N, N, N)`` noise."""
        return torch.fft.ifftn(torch.fft.fftn(white, dim=[-3, -2, -1]) * self.noise_filter(), dim=[-3, -2, -1]).real

    # ------------------------------------------------------------------ calibration and forward
    @torch.no_grad()
    def calibrate_(
        self, maps: torch.Tensor | np.ndarray, snr: float, target_mean: float = 0.0, target_std: float = 1.0
    ) -> dict[str, float | list[float]]:
        """Set ``gain``, ``offset``, ``sigma`` to the fair traditional baseline's values.

        The baseline adds white noise of variance ``var(s_i) / snr`` to each simulated map ``s_i`` and z-scores the
        simulated training set; here ``sigma^2`` is the mean of those variances and gain/offset map the noisy
        simulation to mean ``target_mean`` and standard deviation ``target_std`` (z units of the real training
        subtomograms: 0 and 1).

        Parameters
        ----------
        maps
            ``(N, 1, B, B, B)`` training maps in the network range ``[-1, 1]``.
        snr
            The calibrated simulator SNR (:func:`emgan_monai.data.cryoet_calibration.calibrate_snr`).
        """
        if snr <= 0:
            raise ValueError(f"snr must be positive, got {snr}")
        x = torch.as_tensor(np.asarray(maps) if not isinstance(maps, torch.Tensor) else maps).float()
        s = self.signal(x)
        var_s = s.flatten(1).var(1, unbiased=False)
        noise_var = float((var_s / snr).mean())
        total_mean = float(s.mean())
        total_var = float(s.var(unbiased=False)) + noise_var
        gain = target_std / math.sqrt(total_var)
        self.gain.fill_(gain)
        self.offset.fill_(target_mean - gain * total_mean)
        self.log_sigma.fill_(math.log(gain * math.sqrt(noise_var)))
        return self.physics()

    def sample_noise(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The white noise volume of one call on ``x`` (pass it as ``noise=`` to fix it)."""
        return [torch.randn(x.shape, device=x.device, dtype=torch.float32)]

    def forward_z(
        self, x: torch.Tensor, noise: Optional[Union[torch.Tensor, List[torch.Tensor]]] = None
    ) -> torch.Tensor:
        """Subtomogram in z units (before the output scaling and clamp)."""
        n = self.box
        if x.dim() != 5 or x.shape[2] != n or x.shape[3] != n or x.shape[4] != n:
            raise ValueError(f"expected (B, 1, {n}, {n}, {n}) maps, got {x.shape}")
        if noise is None:
            white = self.sample_noise(x)[0]
        elif isinstance(noise, torch.Tensor):
            white = noise
        else:
            white = noise[0]
        if white.shape != x.shape:
            raise ValueError(f"noise must have the input's shape {x.shape}, got {white.shape}")
        s = self.signal(x)
        y = self.gain * s + self.offset + self.log_sigma.exp() * self.colour_noise(white.to(s))
        refine = self.refine
        if refine is not None:
            r = refine(torch.cat([y / self.z_scale, x.float()], dim=1))
            y = y + self.max_residual * torch.tanh(r)
        return y

    def forward(self, x: torch.Tensor, noise: Optional[Union[torch.Tensor, List[torch.Tensor]]] = None) -> torch.Tensor:
        """``(B, 1, N, N, N)`` map in ``[-1, 1]`` -> subtomogram ``clamp(z / z_scale, -1, 1)``; ``noise``: optional
        white ``(B, 1, N, N, N)`` volume, or the list of :meth:`sample_noise` (else drawn from the global torch
        generator). Scriptable (``torch.jit.script``), with the same outputs as the eager module."""
        return torch.clamp(self.forward_z(x, noise) / self.z_scale, -1.0, 1.0)


def build_subtomogram_generator(kind: str = "physics", **kwargs: Any) -> nn.Module:
    """The D -> S generator of the cryo-ET bundle by name.

    ``kind="physics"``: :class:`PhysicsInformedGenerator` (keys ``box``, ``voxel_size``, ``refine_channels``,
    ``dropout``, ...); ``kind="physics_residual"``: :class:`~emgan_monai.networks.PhysicsResidualGenerator`, the
    simulator plus a zero-initialised 3D ResNet (keys ``residual_channels``, ``residual_blocks``, ``residual_bound``,
    ``noise_channels``, ...), the working CycleGAN's ``G_ds``; ``kind="cyclegan"``: :class:`~emgan_monai.networks.CycleGANGenerator` (keys ``channels``,
    ``n_res_blocks``, ``noise_channels``, ``dropout``, ``decoder_noise``, ``input_noise_std``, ``norm``). Keys meant
    for the other kind are ignored, so one config can hold both sets.
    """
    import inspect

    from .cyclegan3d import CycleGANGenerator
    from .physics_residual import PhysicsResidualGenerator

    classes = {
        "physics": PhysicsInformedGenerator,
        "physics_residual": PhysicsResidualGenerator,
        "cyclegan": CycleGANGenerator,
    }
    if kind not in classes:
        raise ValueError(f"unknown generator kind {kind!r}; expected one of {sorted(classes)}")
    cls = classes[kind]
    accepted = set(inspect.signature(cls).parameters)  # the constructor's arguments
    return cls(**{k: v for k, v in kwargs.items() if k in accepted})
