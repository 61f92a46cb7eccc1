"""Texture-statistics losses: match how much detail an image has at each scale and how its values and edges are
distributed, not where they lie.

For conditional generators whose condition fixes the layout but not the realisation of the texture (a mask -> EM
generator with injected noise), a pixel loss averages the texture away; these losses compare statistics of the
prediction with those of the paired real image instead (cf. the spectrum and histogram losses of texture synthesis,
Portilla & Simoncelli 2000; Risser et al. 2017).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

__all__ = ["RadialSpectrumLoss", "TextureStatisticsLoss", "radial_power_spectrum", "sorted_values_distance"]


@functools.lru_cache(maxsize=16)
def _window_and_rings(h: int, w: int, n_bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """2D Hann window ``(h, w)`` and ring-averaging matrix ``(h * w, n_bins)`` (columns sum to 1; DC and the corners
    beyond 0.5 cycles / px in no ring), computed once per shape and device: the loss runs at every training step."""
    window = torch.outer(torch.hann_window(h, periodic=False, device=device),
                         torch.hann_window(w, periodic=False, device=device))  # fmt: skip
    fy = torch.fft.fftfreq(h, device=device)
    fx = torch.fft.fftfreq(w, device=device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    ring = torch.clamp((radius / 0.5 * n_bins).long(), max=n_bins)  # n_bins: corners beyond 0.5 cycles / px
    ring[0, 0] = n_bins  # DC out
    onehot = nn.functional.one_hot(ring.flatten(), n_bins + 1)[:, :n_bins].float()  # (h * w, n_bins)
    return window, onehot / onehot.sum(0).clamp_min(1.0)


def radial_power_spectrum(x: torch.Tensor, n_bins: int = 16, eps: float = 1e-8) -> torch.Tensor:
    """Log10 of the radially averaged power spectrum of every image and channel (differentiable).

    Each ``(H, W)`` image loses its mean, is weighted by a 2D Hann window and Fourier transformed; the power is
    averaged in ``n_bins`` equal rings of radial frequency from 0 to 0.5 cycles / px (the DC coefficient left out).

    Parameters
    ----------
    x
        ``(B, C, H, W)`` images, ``H, W >= 8``.
    n_bins
        Number of frequency rings.
    eps
        Added to the power before the logarithm.

    Returns
    -------
    torch.Tensor
        ``(B, C, n_bins)`` float32.
    """
    if x.ndim != 4 or min(x.shape[-2:]) < 8:
        raise ValueError(f"radial_power_spectrum: expected (B, C, H, W) with H, W >= 8, got {tuple(x.shape)}.")
    h, w = x.shape[-2:]
    x = x.float()
    window, rings = _window_and_rings(h, w, n_bins, x.device)
    spec = torch.fft.fft2((x - x.mean(dim=(-2, -1), keepdim=True)) * window)
    power = spec.real.square() + spec.imag.square()
    mean_power = power.flatten(-2) @ rings
    return torch.log10(mean_power + eps)


class RadialSpectrumLoss(nn.Module):
    """``mean |log10 P_pred(f) - log10 P_target(f)|`` over radial frequency rings, images and channels.

    A texture-statistics term for conditional generators whose condition fixes the layout but not the
    realisation of the texture (a mask -> EM generator with injected noise): it asks for as much power at every
    scale as the paired real image has, wherever it lies, so it rewards grain of the right size and contrast that
    a pixel loss would average away. Complements a low-passed pixel loss (layout) and an adversarial loss
    (everything else).

    Parameters
    ----------
    n_bins
        Number of frequency rings from 0 to 0.5 cycles / px.
    min_frequency
        Rings below this frequency (cycles / px) are left out (the layout is the pixel loss's job).

    Shapes: ``forward(pred, target)`` with ``(B, C, H, W)`` tensors of equal shape -> scalar.
    """

    def __init__(self, n_bins: int = 16, min_frequency: float = 0.0) -> None:
        super().__init__()
        if n_bins < 1 or not 0.0 <= min_frequency < 0.5:
            raise ValueError(f"RadialSpectrumLoss: n_bins >= 1 and 0 <= min_frequency < 0.5, got {n_bins}, {min_frequency}.")
        self.n_bins = int(n_bins)
        self.first = int(min_frequency / 0.5 * self.n_bins)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"RadialSpectrumLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ.")
        a = radial_power_spectrum(pred, self.n_bins)[..., self.first:]
        b = radial_power_spectrum(target, self.n_bins)[..., self.first:]
        return (a - b).abs().mean()


def sorted_values_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1-Wasserstein distance between the value distributions of every image: ``mean |sort(a) - sort(b)|``.

    ``a`` and ``b`` are ``(B, C, *S)`` of one shape; the values of each image and channel are sorted and compared
    rank by rank (differentiable through the sort). Returns a scalar (mean over images, channels and ranks).
    """
    if a.shape != b.shape:
        raise ValueError(f"sorted_values_distance: shapes {tuple(a.shape)} and {tuple(b.shape)} differ.")
    return (torch.sort(a.float().flatten(2), dim=-1).values - torch.sort(b.float().flatten(2), dim=-1).values).abs().mean()


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Forward-difference gradient magnitude of ``(B, C, H, W)`` images: ``(B, C, H - 1, W - 1)``."""
    gx = x[..., :-1, 1:] - x[..., :-1, :-1]
    gy = x[..., 1:, :-1] - x[..., :-1, :-1]
    return torch.sqrt(gx.square() + gy.square() + 1e-12)


class TextureStatisticsLoss(nn.Module):
    """``w_spectrum * spectrum + w_intensity * W1(values) + w_gradient * W1(gradient magnitudes)``, prediction vs target.

    - spectrum: :class:`RadialSpectrumLoss` (log power in radial frequency rings);
    - intensity: :func:`sorted_values_distance` of the grey values (the histogram, e.g. no saturated halos);
    - gradient: :func:`sorted_values_distance` of the gradient magnitudes (how many soft and sharp edges).

    All three ignore where things are, so a generator meets them with any realisation of the right texture.

    Parameters
    ----------
    n_bins, min_frequency
        Of the spectrum term (:class:`RadialSpectrumLoss`).
    w_spectrum, w_intensity, w_gradient
        Weights of the three terms (>= 0).

    Shapes: ``forward(pred, target)`` with ``(B, C, H, W)`` tensors of equal shape -> scalar.
    """

    def __init__(self, n_bins: int = 16, min_frequency: float = 0.0, w_spectrum: float = 1.0,
                 w_intensity: float = 10.0, w_gradient: float = 10.0) -> None:
        super().__init__()
        if min(w_spectrum, w_intensity, w_gradient) < 0:
            raise ValueError(f"TextureStatisticsLoss: weights must be >= 0, got {w_spectrum}, {w_intensity}, {w_gradient}.")
        self.spectrum = RadialSpectrumLoss(n_bins, min_frequency)
        self.weights = (float(w_spectrum), float(w_intensity), float(w_gradient))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w_s, w_i, w_g = self.weights
        loss = w_s * self.spectrum(pred, target)
        if w_i:
            loss = loss + w_i * sorted_values_distance(pred, target)
        if w_g:
            loss = loss + w_g * sorted_values_distance(gradient_magnitude(pred.float()), gradient_magnitude(target.float()))
        return loss
