"""Contrast transfer function (CTF) of a transmission electron microscope: electron wavelength, 1D / 2D / 3D CTF.

One concept: the CTF formula (defocus, spherical aberration, amplitude contrast, B-factor envelope) evaluated at a
frequency, on an image's or a volume's FFT grid, and its first zero.

Conventions
-----------
* Spatial frequencies are in 1/A, voxel sizes in angstrom (A) per voxel, defocus in micrometres (positive =
  underfocus), Cs in mm.
* Volumes are indexed ``[z, y, x]``; axis 0 is the electron-beam direction.
* Fourier-space arrays (:func:`ctf_2d`, :func:`ctf_3d`, :func:`frequency_magnitude`) are in the *unshifted* layout
  of :func:`numpy.fft.fftn` (DC at index 0), ready to multiply ``np.fft.fftn(v)``. Apply :func:`numpy.fft.fftshift`
  for display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ctf_1d", "ctf_2d", "ctf_3d", "ctf_first_zero", "electron_wavelength", "frequency_magnitude"]


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in A: ``h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))``.

    300 kV gives 0.01969 A, 200 kV 0.02508 A.
    """
    if voltage_kv <= 0:
        raise ValueError(f"voltage_kv must be positive, got {voltage_kv}")
    h, m0, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 2.99792458e8
    volts = voltage_kv * 1e3
    lam_m = h / np.sqrt(2.0 * m0 * e * volts * (1.0 + e * volts / (2.0 * m0 * c**2)))
    return float(lam_m * 1e10)


def ctf_1d(
    freq: np.ndarray | float,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> np.ndarray:
    """Contrast transfer function at spatial frequency magnitude ``freq`` (1/A).

    ``chi(k) = pi * lambda * dz * k^2 - pi / 2 * Cs * lambda^3 * k^4`` with ``dz > 0`` for underfocus,
    ``CTF(k) = [sqrt(1 - A^2) sin(chi) + A cos(chi)] * exp(-B k^2 / 4)``.

    Sign convention: this CTF is *positive* at low frequency (``CTF(0) = A``), i.e. it transfers the
    projected density with a positive sign. Real bright-field images of an underfocused specimen
    show the opposite contrast (dense = dark);
    :func:`~emgan_monai.physics.subtomogram_simulator.simulate_subtomogram` applies that inversion as a separate,
    explicit step.

    Parameters
    ----------
    freq
        Spatial frequency magnitudes in 1/A (any shape).
    defocus_um
        Defocus in micrometres, positive = underfocus.
    voltage_kv
        Acceleration voltage in kV (sets the relativistic wavelength).
    cs_mm
        Spherical aberration in mm.
    amplitude_contrast
        Amplitude contrast fraction ``A`` in [0, 1).
    bfactor
        B-factor of the Gaussian envelope ``exp(-B k^2 / 4)`` in A^2 (0 = no envelope).

    Returns
    -------
    np.ndarray
        CTF values, same shape as ``freq``, float64.
    """
    if not 0.0 <= amplitude_contrast < 1.0:
        raise ValueError(f"amplitude_contrast must be in [0, 1), got {amplitude_contrast}")
    k2 = np.asarray(freq, dtype=np.float64) ** 2
    lam = electron_wavelength(voltage_kv)
    dz = defocus_um * 1e4  # um -> A
    cs = cs_mm * 1e7  # mm -> A
    chi = np.pi * lam * dz * k2 - 0.5 * np.pi * cs * lam**3 * k2**2
    ctf = np.sqrt(1.0 - amplitude_contrast**2) * np.sin(chi) + amplitude_contrast * np.cos(chi)
    if bfactor:
        ctf = ctf * np.exp(-bfactor * k2 / 4.0)
    return ctf


def ctf_first_zero(
    defocus_um: float = 3.0, voltage_kv: float = 300.0, cs_mm: float = 2.7, amplitude_contrast: float = 0.07
) -> float:
    """Analytic spatial frequency (1/A) of the first CTF zero of :func:`ctf_1d`.

    Solves ``chi(k) = pi - arctan(A / sqrt(1 - A^2))`` as a quadratic in ``k^2``.
    """
    lam = electron_wavelength(voltage_kv)
    dz, cs = defocus_um * 1e4, cs_mm * 1e7
    target = np.pi - np.arctan2(amplitude_contrast, np.sqrt(1.0 - amplitude_contrast**2))
    a, b = 0.5 * np.pi * cs * lam**3, np.pi * lam * dz
    if a == 0:
        return float(np.sqrt(target / b))
    disc = b * b - 4.0 * a * target
    if disc < 0:
        raise ValueError("the CTF phase never reaches its first zero for these parameters")
    return float(np.sqrt((b - np.sqrt(disc)) / (2.0 * a)))


def frequency_magnitude(shape: Sequence[int], voxel_size: float) -> np.ndarray:
    """Spatial frequency magnitude (1/A) on the unshifted FFT grid of ``shape`` (sparse-broadcast float64 array)."""
    grids = np.meshgrid(*[np.fft.fftfreq(int(n), d=voxel_size) for n in shape], indexing="ij", sparse=True)
    return np.sqrt(sum(g**2 for g in grids))


def _ctf_on_grid(shape: Sequence[int], voxel_size: float, *ctf_args: float) -> np.ndarray:
    """:func:`ctf_1d` of the frequency magnitude on the unshifted FFT grid of ``shape``, float32."""
    return ctf_1d(frequency_magnitude(shape, voxel_size), *ctf_args).astype(np.float32)


def ctf_2d(
    shape: Sequence[int],
    voxel_size: float,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> np.ndarray:
    """2D (projection-image) CTF on the FFT grid of an ``(H, W)`` image, no astigmatism.

    See :func:`ctf_1d` for the formula and sign convention. Returns an ``(H, W)`` float32 array in
    unshifted FFT layout (multiply ``np.fft.fft2(image)``).
    """
    if len(shape) != 2:
        raise ValueError(f"ctf_2d expects a 2D shape, got {shape}")
    return _ctf_on_grid(shape, voxel_size, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor)


def ctf_3d(
    shape: Sequence[int],
    voxel_size: float,
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> np.ndarray:
    """Radially symmetric 3D CTF on the FFT grid of a ``(D, H, W)`` volume.

    The subtomogram-averaging approximation: the CTF of every tilt is taken as the same function of
    the 3D frequency magnitude (defocus gradient across tilts ignored). See :func:`ctf_1d` for the
    formula and sign convention. Returns ``(D, H, W)`` float32 in unshifted FFT layout.
    """
    if len(shape) != 3:
        raise ValueError(f"ctf_3d expects a 3D shape, got {shape}")
    return _ctf_on_grid(shape, voxel_size, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor)
