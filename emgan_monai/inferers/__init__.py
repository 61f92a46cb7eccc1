"""emgan_monai.inferers: MONAI inferers MONAI lacks.

- :class:`PlanewiseInferer`: a 2D network over any-size 2D images (sliding window) and 3D stacks (plane by plane).
"""

from .planewise import PlanewiseInferer

__all__ = ["PlanewiseInferer"]
