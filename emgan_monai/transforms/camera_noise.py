"""Fresh camera noise for every training sample of a restoration network.

A denoiser trained on a fixed set of noisy images sees each noise realisation again and again and can memorise
it. :class:`RandCameraNoised` instead keeps the *noise-free* wide-field signal and draws the acquisition (photon
budget, background, shot noise, read noise) anew every time a sample is loaded, with the camera model of
:func:`emgan_monai.physics.pair_synthesis.camera_noise`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform

from ..physics.pair_synthesis import camera_noise

__all__ = ["RandCameraNoised"]


class RandCameraNoised(RandomizableTransform, MapTransform):
    """Noise-free signal ``d[key]`` -> camera image ``d[output_key]`` with freshly drawn acquisition parameters.

    Parameters
    ----------
    keys : KeysCollection
        Key(s) of the noise-free signal, array or tensor of any shape (e.g. ``(1, H, W)``), non-negative.
    output_keys : str | Sequence[str] | None
        Where the noisy images go, one per key (default: replace the signal).
    photons : tuple[float, float]
        Expected photo-electrons at the brightest pixel, drawn log-uniformly.
    background : tuple[float, float]
        Uniform background in electrons per pixel, drawn uniformly.
    read_noise : tuple[float, float]
        Read-noise standard deviation in electrons, drawn uniformly.
    offset : float
        Camera offset in ADU.
    prob : float
        Probability to apply the noise (otherwise the signal is copied unchanged).
    allow_missing_keys : bool
        Skip missing keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_keys: str | Sequence[str] | None = None,
        photons: tuple[float, float] = (50.0, 1000.0),
        background: tuple[float, float] = (0.0, 20.0),
        read_noise: tuple[float, float] = (1.0, 3.0),
        offset: float = 100.0,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if output_keys is None:
            self.output_keys = tuple(self.keys)
        else:
            self.output_keys = (output_keys,) if isinstance(output_keys, str) else tuple(output_keys)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"need one output key per key, got {self.keys} -> {self.output_keys}.")
        for name, (low, high) in (("photons", photons), ("background", background), ("read_noise", read_noise)):
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be an interval 0 <= low <= high, got {(low, high)}.")
        if photons[0] <= 0:
            raise ValueError(f"photons must be positive, got {photons}.")
        self.photons, self.background, self.read_noise = tuple(photons), tuple(background), tuple(read_noise)
        self.offset = float(offset)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            self.randomize(None)
            signal = d[key]
            as_tensor = isinstance(signal, torch.Tensor)
            arr = signal.detach().cpu().numpy() if as_tensor else np.asarray(signal)
            if self._do_transform:
                params = {
                    "photons": float(np.exp(self.R.uniform(*np.log(self.photons)))),
                    "background": float(self.R.uniform(self.background[0], self.background[1])),
                    "read_noise": float(self.R.uniform(self.read_noise[0], self.read_noise[1])),
                }
                seed = int(self.R.randint(0, 2**31 - 1))
                noisy = camera_noise(np.clip(arr, 0.0, None), offset=self.offset, rng=seed, **params)
            else:
                noisy = arr.astype(np.float32, copy=True)
            d[out_key] = torch.as_tensor(noisy) if as_tensor else noisy
        return d
