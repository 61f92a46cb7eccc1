"""Value ranges of the cryo-ET GAN: data units <-> the generators' ``tanh`` range ``[-1, 1]``.

- :data:`SUBTOMO_SCALE`: z-scored subtomograms are divided by it before entering the generators;
- :func:`density_to_network`: D-domain shape map in ``[0, 1]`` -> ``2 m - 1``;
- :func:`subtomo_to_network`: z-scored S-domain subtomogram -> ``clip(z / SUBTOMO_SCALE, -1, 1)``;
- :func:`network_to_subtomo`: generator output in ``(-1, 1)`` -> z units (``SUBTOMO_SCALE * y``).

Element-wise, any shape: ``(D, H, W)`` volumes, ``(N, D, H, W)`` stacks or ``(B, 1, D, H, W)`` batches keep their
shape. The z-scoring itself is :func:`emgan_monai.data.cryoet.zscore`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SUBTOMO_SCALE", "density_to_network", "network_to_subtomo", "subtomo_to_network"]


#: z-scored subtomograms are divided by this before entering the tanh generators (about 0.3 % of voxels clip).
SUBTOMO_SCALE: float = 3.0


def density_to_network(m: np.ndarray) -> np.ndarray:
    """``[0, 1]`` shape map -> ``[-1, 1]`` generator input (float32, same shape)."""
    return (2.0 * np.asarray(m, dtype=np.float32) - 1.0).astype(np.float32)


def subtomo_to_network(z: np.ndarray) -> np.ndarray:
    """z-scored subtomogram -> ``clip(z / SUBTOMO_SCALE, -1, 1)`` (float32, same shape)."""
    return np.clip(np.asarray(z, dtype=np.float32) / SUBTOMO_SCALE, -1.0, 1.0).astype(np.float32)


def network_to_subtomo(y: np.ndarray | torch.Tensor) -> np.ndarray:
    """Generator output in ``(-1, 1)`` -> z units (``SUBTOMO_SCALE * y``), float32 numpy."""
    if isinstance(y, torch.Tensor):
        y = y.detach().float().cpu().numpy()
    return (SUBTOMO_SCALE * np.asarray(y, dtype=np.float32)).astype(np.float32)
