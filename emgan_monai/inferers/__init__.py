"""emgan_monai.inferers: MONAI inferers MONAI lacks.

- :class:`PlanewiseInferer`: a 2D network over any-size 2D images (sliding window) and 3D stacks (plane by plane).
- :class:`MCDropoutInferer`: mean and per-voxel std of ``k`` passes of a generator with its dropout active (the
  cryo-ET bundle's ``inference_uncertainty.json``).
"""

from .mc_dropout import MCDropoutInferer
from .planewise import PlanewiseInferer

__all__ = ["MCDropoutInferer", "PlanewiseInferer"]
