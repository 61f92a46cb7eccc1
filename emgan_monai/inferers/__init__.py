"""emgan_monai.inferers: MONAI inferers MONAI lacks.

- :class:`PlanewiseInferer`: a 2D network over any-size 2D images (sliding window) and 3D stacks (plane by plane).

Synthesis with the generator bundles (import the module; not re-exported, so importing this package stays light):

- :mod:`emgan_monai.inferers.drosophila_synthesis`: noise -> mask -> EM pairs (``synthesize_pairs``, ``generate``);
- :mod:`emgan_monai.inferers.cryoet_synthesis`: density maps -> subtomograms (``synthesize_subtomograms``), their
  MC-dropout uncertainty (``mc_dropout_subtomograms``) and in-memory samples (``generate_subtomograms``).
"""

from .planewise import PlanewiseInferer

__all__ = ["PlanewiseInferer"]
