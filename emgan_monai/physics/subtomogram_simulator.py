"""The traditional cryo-ET subtomogram simulator (the baseline of CryoETGAN-style experiments) and its Fourier steps.

One concept: a noise-free density map -> CTF x missing wedge in Fourier space -> Gaussian noise at a given SNR
(:func:`simulate_subtomogram`), with the steps it adds to the CTF of :mod:`emgan_monai.physics.ctf`: the
missing-wedge mask of a single-axis tilt series, white noise at an SNR, and a Fourier band-pass.

Conventions
-----------
* Volumes are ``numpy`` arrays indexed ``[z, y, x]`` (ZYX, as read by ``mrcfile``). Axis 0 is the
  electron-beam direction, axis 1 (``y``) the default tilt axis, axis 2 (``x``) the remaining one.
* Voxel sizes are in angstrom (A) per voxel, spatial frequencies in 1/A.
* Fourier-space masks (:func:`missing_wedge_mask`, and the CTFs of :mod:`emgan_monai.physics.ctf`) are in the
  *unshifted* layout of :func:`numpy.fft.fftn` (DC at index 0), ready to multiply ``np.fft.fftn(v)``.
  Apply :func:`numpy.fft.fftshift` for display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emgan_monai.physics.ctf import ctf_3d, frequency_magnitude

__all__ = ["add_noise_snr", "bandpass", "missing_wedge_mask", "simulate_subtomogram"]


def missing_wedge_mask(
    shape: Sequence[int], tilt_range: tuple[float, float] = (-60.0, 60.0), tilt_axis: str = "y"
) -> np.ndarray:
    """Binary Fourier mask of the frequencies sampled by a single-axis tilt series.

    The beam is along axis 0 (``z``) at zero tilt; the specimen is tilted about ``tilt_axis``
    (``"y"`` = axis 1, ``"x"`` = axis 2). The projection at tilt ``theta`` samples the central plane
    that contains the tilt axis and the in-plane direction at angle ``theta`` from the perpendicular
    axis (``k_perp cos(theta), k_z sin(theta)``). A frequency is kept when its angle
    ``atan2(k_z, k_perp)``, folded by Friedel symmetry to ``k_perp >= 0``, lies in ``tilt_range``.
    Frequencies on the tilt axis (``k_z = k_perp = 0``) are always kept. For ``(-60, 60)`` about one
    third of Fourier space is zero.

    Parameters
    ----------
    shape
        ``(D, H, W)`` volume shape.
    tilt_range
        ``(min, max)`` tilt angles in degrees, within [-90, 90].
    tilt_axis
        ``"y"`` or ``"x"``.

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 mask (1 = sampled, 0 = missing) in unshifted FFT layout.
    """
    if len(shape) != 3:
        raise ValueError(f"missing_wedge_mask expects a 3D shape, got {shape}")
    lo, hi = float(tilt_range[0]), float(tilt_range[1])
    if not -90.0 <= lo < hi <= 90.0:
        raise ValueError(f"tilt_range must satisfy -90 <= min < max <= 90, got {tilt_range}")
    axes = {"y": 1, "x": 2}
    if tilt_axis not in axes:
        raise ValueError(f"tilt_axis must be 'y' or 'x', got {tilt_axis!r}")
    perp_axis = 2 if tilt_axis == "y" else 1
    kz = np.fft.fftfreq(int(shape[0]))
    kp = np.fft.fftfreq(int(shape[perp_axis]))
    kz2, kp2 = np.meshgrid(kz, kp, indexing="ij")
    sign = np.where(kp2 < 0, -1.0, 1.0)  # Friedel fold onto k_perp >= 0
    angle = np.degrees(np.arctan2(sign * kz2, sign * kp2))
    angle = np.where((kp2 == 0) & (kz2 != 0), 90.0, angle)  # pure k_z: sampled only by a 90 degree tilt
    plane = (angle >= lo - 1e-9) & (angle <= hi + 1e-9)
    plane |= (kz2 == 0) & (kp2 == 0)
    # broadcast the (k_z, k_perp) plane along the tilt axis
    if tilt_axis == "y":
        mask = np.broadcast_to(plane[:, None, :], tuple(int(s) for s in shape))
    else:
        mask = np.broadcast_to(plane[:, :, None], tuple(int(s) for s in shape))
    return mask.astype(np.float32)


def add_noise_snr(volume: np.ndarray, snr: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Add white Gaussian noise with variance ``var(volume) / snr``.

    Parameters
    ----------
    volume
        Noise-free array of any shape.
    snr
        Target signal-to-noise ratio (variance ratio), > 0.
    rng
        ``numpy`` generator or seed.

    Returns
    -------
    np.ndarray
        float32 noisy array, same shape.
    """
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    volume = np.asarray(volume, dtype=np.float64)
    noise_std = np.sqrt(volume.var() / snr)
    noise = np.random.default_rng(rng).standard_normal(volume.shape) * noise_std
    return (volume + noise).astype(np.float32)


def bandpass(
    volume: np.ndarray, voxel_size: float, low_A: float | None = None, high_A: float | None = None
) -> np.ndarray:
    """Hard Fourier band-pass keeping feature sizes between ``high_A`` and ``low_A`` angstrom.

    Frequencies ``1 / low_A <= |k| <= 1 / high_A`` (1/A) are kept. ``low_A=None`` keeps everything
    down to DC (low-pass only), ``high_A=None`` everything up to Nyquist (high-pass only).

    Parameters
    ----------
    volume
        2D or 3D array.
    voxel_size
        Voxel size in A.
    low_A
        Largest kept length scale in A (low-frequency cut-off), e.g. 200.
    high_A
        Smallest kept length scale in A (high-frequency cut-off), e.g. 20 (>= 2 * voxel_size to matter).

    Returns
    -------
    np.ndarray
        float32 filtered array, same shape.
    """
    if low_A is not None and high_A is not None and low_A <= high_A:
        raise ValueError(f"low_A ({low_A}) must be larger than high_A ({high_A})")
    volume = np.asarray(volume, dtype=np.float32)
    k = frequency_magnitude(volume.shape, voxel_size)
    keep = np.ones(k.shape, dtype=bool)
    if low_A is not None:
        keep &= k >= 1.0 / low_A
    if high_A is not None:
        keep &= k <= 1.0 / high_A
    return np.fft.ifftn(np.fft.fftn(volume) * keep).real.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# traditional simulator
# ----------------------------------------------------------------------------------------------
def simulate_subtomogram(
    density: np.ndarray,
    voxel_size: float,
    snr: float | None = 0.1,
    tilt_range: tuple[float, float] = (-60.0, 60.0),
    tilt_axis: str = "y",
    defocus_um: float = 3.0,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
    invert_contrast: bool = True,
    rng: np.random.Generator | int | None = None,
    noise_in_wedge: bool = False,
) -> np.ndarray:
    """Traditional cryo-ET subtomogram simulation from a noise-free density map.

    ``s = -IFFT(FFT(density) * CTF_3d * wedge)`` followed by additive white Gaussian noise with
    variance ``var(s) / snr`` (:func:`add_noise_snr`). The leading minus sign (``invert_contrast``)
    reproduces the negative phase contrast of underfocused cryo-EM images: protein density
    appears *dark* on a brighter background, as in raw tomograms. Set ``invert_contrast=False``
    to keep density positive (e.g. to compare with inverted/"white-protein" data).

    Parameters
    ----------
    density
        ``(D, H, W)`` noise-free density map, beam along axis 0.
    voxel_size
        Voxel size in A.
    snr
        Signal-to-noise ratio (variance ratio) of the output; ``None`` for no noise.
    tilt_range, tilt_axis
        Missing-wedge geometry, see :func:`missing_wedge_mask`.
    defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor
        CTF parameters, see :func:`~emgan_monai.physics.ctf.ctf_1d`.
    invert_contrast
        Multiply the noise-free signal by -1 (dark protein).
    rng
        ``numpy`` generator or seed for the noise.
    noise_in_wedge
        Pass the noise through the missing-wedge mask too (rescaled to the same variance): noise reconstructed from
        a tilt series lacks the wedge's frequencies, noise added after the reconstruction does not.

    Returns
    -------
    np.ndarray
        ``(D, H, W)`` float32 simulated subtomogram.
    """
    density = np.asarray(density, dtype=np.float32)
    if density.ndim != 3:
        raise ValueError(f"density must be a 3D (D, H, W) array, got shape {density.shape}")
    transfer = ctf_3d(density.shape, voxel_size, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor)
    wedge = missing_wedge_mask(density.shape, tilt_range, tilt_axis)
    signal = np.fft.ifftn(np.fft.fftn(density) * transfer * wedge).real
    if invert_contrast:
        signal = -signal
    if snr is None:
        return signal.astype(np.float32)
    if not noise_in_wedge:
        return add_noise_snr(signal, snr, rng)
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}")
    noise = np.fft.ifftn(np.fft.fftn(np.random.default_rng(rng).standard_normal(density.shape)) * wedge).real
    noise *= np.sqrt(signal.var() / snr) / max(float(noise.std()), 1e-12)
    return (signal + noise).astype(np.float32)
