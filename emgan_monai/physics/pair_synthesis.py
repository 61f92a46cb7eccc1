"""Paired-image synthesis: wide-field (camera) and confocal images of one plane of a fluorophore volume.

One concept: rendering a training pair with the PSFs of :mod:`emgan_monai.physics.optics` -- the per-plane 3D
convolution, the camera noise model and the acquisition-parameter ranges drawn per pair.

Image formation
---------------
:func:`synthesize_pair` treats a (confocal) volume as the fluorophore density. The wide-field image of
plane ``z`` is the 3D convolution of the whole volume with the wide-field PSF evaluated at that plane
(:func:`convolve_plane`), i.e. every plane within the PSF's axial extent adds its defocused light;
then background, Poisson shot noise at the photon budget, Gaussian read noise and a camera offset are
applied. The target is the noise-free confocal image of the same plane. :class:`SimulationRanges`
holds the parameter ranges that are sampled per pair for robustness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft

from emgan_monai.physics.optics import PSFModel, check_optics, confocal_psf, widefield_psf

__all__ = ["SimulationRanges", "camera_noise", "convolve_plane", "synthesize_pair"]

_PADDING_MODES = ("reflect", "symmetric", "constant", "edge", "wrap")


def convolve_plane(
    volume_zyx: np.ndarray,
    psf: np.ndarray,
    z_index: int,
    lateral_padding: str = "reflect",
    axial_padding: str = "constant",
    chunk: int = 16,
) -> np.ndarray:
    """Plane ``z_index`` of the 3D convolution ``volume * psf`` (PSF centred at ``shape // 2``).

    Computes ``out[y, x] = sum_k sum_{j,i} psf[k, j, i] vol[z + cz - k, y + cy - j, x + cx - i]`` as a sum over object
    planes of 2D FFT convolutions with the matching defocus slice of the PSF, accumulated in Fourier space. This
    equals slicing ``scipy.signal.fftconvolve(padded_volume, psf)`` at plane ``z`` (checked in the tests) at a
    fraction of the memory and time, since only one output plane is needed.

    Parameters
    ----------
    volume_zyx : np.ndarray
        Object, shape ``(D, H, W)``.
    psf : np.ndarray
        PSF, shape ``(Zp, Yp, Xp)``; object planes farther than the PSF's axial half-extent do not contribute.
    z_index : int
        Output plane, ``0 <= z_index < D``.
    lateral_padding : str
        ``numpy.pad`` mode for the borders in y/x. ``"reflect"`` (default) assumes the specimen continues
        beyond the field of view, which avoids dark rims; ``"constant"`` pads with zeros.
    axial_padding : str
        How planes outside the stack are treated: ``"constant"`` (default, no fluorophores above/below the
        imaged stack) or any other ``numpy.pad`` mode applied to plane indices (e.g. ``"reflect"``).
    chunk : int
        Planes transformed at once (memory/speed trade-off).

    Returns
    -------
    np.ndarray
        ``(H, W)`` float64.
    """
    vol = np.asarray(volume_zyx)
    psf = np.asarray(psf, dtype=np.float64)
    if vol.ndim != 3 or psf.ndim != 3:
        raise ValueError(f"volume and psf must be 3D (Z, Y, X), got shapes {vol.shape} and {psf.shape}.")
    depth, height, width = vol.shape
    if not 0 <= z_index < depth:
        raise ValueError(f"z_index {z_index} is outside the volume's {depth} planes.")
    for mode in (lateral_padding, axial_padding):
        if mode not in _PADDING_MODES:
            raise ValueError(f"padding mode must be one of {_PADDING_MODES}, got {mode!r}.")
    zp, yp, xp = psf.shape
    cz, cy, cx = zp // 2, yp // 2, xp // 2
    # object plane feeding PSF slice k is z + cz - k
    planes = z_index + cz - np.arange(zp)
    if axial_padding == "constant":
        keep = (planes >= 0) & (planes < depth)
        ks, planes = np.nonzero(keep)[0], planes[keep]
    else:
        lo, hi = max(0, -int(planes.min())), max(0, int(planes.max()) - depth + 1)
        index_map = np.pad(np.arange(depth), (lo, hi), mode=axial_padding)  # type: ignore[call-overload]
        ks, planes = np.arange(zp), index_map[planes + lo]
    pad = ((yp - 1 - cy, cy), (xp - 1 - cx, cx))
    fft_shape = (
        scipy.fft.next_fast_len(height + 2 * (yp - 1), real=True),
        scipy.fft.next_fast_len(width + 2 * (xp - 1), real=True),
    )
    acc = np.zeros((fft_shape[0], fft_shape[1] // 2 + 1), dtype=np.complex128)
    for start in range(0, len(ks), max(1, int(chunk))):
        k_sel, p_sel = ks[start : start + chunk], planes[start : start + chunk]
        obj = np.pad(vol[p_sel].astype(np.float64), ((0, 0), *pad), mode=lateral_padding)  # type: ignore[call-overload]
        f_obj = scipy.fft.rfft2(obj, s=fft_shape, axes=(-2, -1))
        f_psf = scipy.fft.rfft2(psf[k_sel], s=fft_shape, axes=(-2, -1))
        acc += np.einsum("kyx,kyx->yx", f_obj, f_psf)
    full = scipy.fft.irfft2(acc, s=fft_shape, axes=(-2, -1))
    return full[yp - 1 : yp - 1 + height, xp - 1 : xp - 1 + width]


@dataclass(frozen=True)
class SimulationRanges:
    """Ranges of the acquisition parameters drawn independently for every synthesised pair.

    Ranges are closed intervals ``(low, high)``; equal bounds fix a parameter. ``photons`` is drawn
    log-uniformly (shot-noise SNR scales with its square root), the others uniformly.

    Attributes
    ----------
    na : tuple[float, float]
        Numerical aperture of the objective (water immersion by default).
    photons : tuple[float, float]
        Expected photo-electrons at the brightest pixel of the noise-free wide-field plane (photon budget).
    background : tuple[float, float]
        Uniform background (autofluorescence, stray light) in photo-electrons per pixel, added before shot noise.
    read_noise : tuple[float, float]
        Camera read-noise standard deviation in electrons (sCMOS 1-3 e-).
    offset : float
        Camera offset (bias) added to every pixel, in ADU (gain 1 ADU / e-).
    wavelength_ex_um, wavelength_em_um : float
        Excitation / emission wavelengths (GFP-like defaults, 488 nm laser, 520 nm emission).
    n_immersion : float
        Refractive index of the immersion medium.
    pinhole_au : float
        Confocal pinhole diameter in Airy units for the target.
    """

    na: tuple[float, float] = (1.1, 1.27)
    photons: tuple[float, float] = (50.0, 1000.0)
    background: tuple[float, float] = (0.0, 20.0)
    read_noise: tuple[float, float] = (1.0, 3.0)
    offset: float = 100.0
    wavelength_ex_um: float = 0.488
    wavelength_em_um: float = 0.52
    n_immersion: float = 1.33
    pinhole_au: float = 1.0

    def __post_init__(self) -> None:
        for name in ("na", "photons", "background", "read_noise"):
            low, high = getattr(self, name)
            if not (np.isfinite(low) and np.isfinite(high) and 0 <= low <= high):
                raise ValueError(f"SimulationRanges.{name} must be an interval 0 <= low <= high, got {(low, high)}.")
        if self.photons[0] <= 0:
            raise ValueError(f"SimulationRanges.photons must be positive, got {self.photons}.")
        check_optics(self.na[0], self.n_immersion, self.wavelength_ex_um, self.wavelength_em_um)
        check_optics(self.na[1], self.n_immersion)
        if self.pinhole_au < 0 or self.offset < 0:
            raise ValueError("SimulationRanges.pinhole_au and offset must be >= 0.")

    def sample(self, rng: np.random.Generator | int | None = None) -> dict[str, float]:
        """Draw one parameter set: ``{"na", "photons", "background", "read_noise", "offset"}``."""
        rng = np.random.default_rng(rng)
        log_p = rng.uniform(np.log(self.photons[0]), np.log(self.photons[1]))
        return {
            "na": float(rng.uniform(*self.na)),
            "photons": float(np.exp(log_p)),
            "background": float(rng.uniform(*self.background)),
            "read_noise": float(rng.uniform(*self.read_noise)),
            "offset": float(self.offset),
        }

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable view (for provenance records)."""
        return asdict(self)

    def psfs(
        self,
        na: float,
        shape_zyx: Sequence[int],
        spacing_zyx_um: Sequence[float],
        confocal_shape_zyx: Sequence[int] | None = None,
        model: PSFModel = "born_wolf",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Wide-field and confocal PSFs at ``na`` with these wavelengths, immersion and pinhole.

        Returns
        -------
        tuple[np.ndarray, np.ndarray]
            ``(psf_wf (shape_zyx), psf_conf (confocal_shape_zyx or shape_zyx))``, each summing to 1.
        """
        psf_wf = widefield_psf(
            shape_zyx,
            spacing_zyx_um,
            wavelength_em_um=self.wavelength_em_um,
            na=na,
            n_immersion=self.n_immersion,
            model=model,
        )
        psf_conf = confocal_psf(
            shape_zyx if confocal_shape_zyx is None else confocal_shape_zyx,
            spacing_zyx_um,
            wavelength_ex_um=self.wavelength_ex_um,
            wavelength_em_um=self.wavelength_em_um,
            pinhole_au=self.pinhole_au,
            na=na,
            n_immersion=self.n_immersion,
            model=model,
        )
        return psf_wf, psf_conf


def synthesize_pair(
    volume_zyx: np.ndarray,
    z_index: int,
    psf_wf: np.ndarray,
    psf_conf: np.ndarray,
    photons: float = 200.0,
    background: float = 10.0,
    read_noise: float = 2.0,
    offset: float = 100.0,
    rng: np.random.Generator | int | None = None,
    target_photons: float | None = None,
    lateral_padding: str = "reflect",
    axial_padding: str = "constant",
) -> tuple[np.ndarray, np.ndarray]:
    """Physically simulated (wide-field, confocal) images of plane ``z_index`` of a fluorophore volume.

    Wide-field (camera) model, in ADU with gain 1 ADU / e- and quantum efficiency folded into ``photons``::

        s  = convolve_plane(volume, psf_wf, z)           # in-focus light + out-of-focus haze of all planes
        e  = Poisson(photons * s / max(s) + background)  # shot noise
        wf = max(e + N(0, read_noise^2) + offset, 0)      # read noise, camera offset, ADC floor

    Target: the confocal image ``t = convolve_plane(volume, psf_conf, z)`` scaled to peak ``photons``,
    noise-free by default; with ``target_photons`` it gets Poisson noise at that (usually higher) budget
    and is rescaled back to the same peak-``photons`` units.

    Parameters
    ----------
    volume_zyx : np.ndarray
        Non-negative fluorophore density, shape ``(D, H, W)`` (any units).
    z_index : int
        Focal plane.
    psf_wf, psf_conf : np.ndarray
        PSFs from :func:`~emgan_monai.physics.optics.widefield_psf` / :func:`~emgan_monai.physics.optics.confocal_psf`,
        shape ``(Zp, Yp, Xp)``, same voxel size as the volume.
    photons, background, read_noise, offset : float
        See :class:`SimulationRanges`.
    rng : np.random.Generator | int | None
        Generator or seed; the same seed gives the same pair.
    target_photons : float | None
        Optional photon budget for a low-noise target.
    lateral_padding, axial_padding : str
        See :func:`convolve_plane`.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        ``(widefield, confocal)``, each ``(H, W)`` float32.
    """
    vol = np.asarray(volume_zyx)
    if vol.ndim != 3:
        raise ValueError(f"volume_zyx must be 3D (Z, Y, X), got shape {vol.shape}.")
    if not np.all(np.isfinite(vol)) or vol.min() < 0:
        raise ValueError("volume_zyx must be finite and non-negative (a fluorophore density).")
    if not photons > 0 or background < 0 or read_noise < 0 or offset < 0:
        raise ValueError(
            f"need photons > 0 and background, read_noise, offset >= 0; got {photons}, {background}, {read_noise}, "
            f"{offset}."
        )
    if target_photons is not None and not target_photons > 0:
        raise ValueError(f"target_photons must be positive or None, got {target_photons}.")
    rng = np.random.default_rng(rng)
    signal = np.clip(convolve_plane(vol, psf_wf, z_index, lateral_padding, axial_padding), 0.0, None)
    target = np.clip(convolve_plane(vol, psf_conf, z_index, lateral_padding, axial_padding), 0.0, None)
    t_max = float(target.max())
    widefield = camera_noise(signal, photons, background, read_noise, offset, rng)
    target = photons * target / t_max if t_max > 0 else target
    if target_photons is not None:
        target = rng.poisson(target * (target_photons / photons)).astype(np.float64) * (photons / target_photons)
    return widefield, target.astype(np.float32)


def camera_noise(
    signal: np.ndarray,
    photons: float,
    background: float,
    read_noise: float,
    offset: float,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Camera image of a noise-free signal: photon budget, background, shot noise, read noise, offset, ADC floor.

    ``wf = max(Poisson(photons * s / max(s) + background) + N(0, read_noise^2) + offset, 0)`` in ADU (gain 1 ADU/e-).

    Parameters
    ----------
    signal : np.ndarray
        Non-negative noise-free image, any shape (e.g. ``(H, W)`` or ``(1, H, W)``), any scale.
    photons, background, read_noise, offset : float
        See :class:`SimulationRanges`.
    rng : np.random.Generator | int | None
        Generator or seed.

    Returns
    -------
    np.ndarray
        Same shape as ``signal``, float32.
    """
    rng = np.random.default_rng(rng)
    signal = np.asarray(signal, dtype=np.float64)
    s_max = float(signal.max())
    expected = background + (photons * signal / s_max if s_max > 0 else signal)
    electrons = rng.poisson(np.clip(expected, 0.0, None)).astype(np.float64)
    return np.clip(electrons + rng.normal(0.0, read_noise, size=electrons.shape) + offset, 0.0, None).astype(np.float32)
