"""emgan_monai: GAN-based synthesis and enhancement of microscopy images, built on MONAI.

Sub-packages
------------
io          MONAI ImageReader / ImageWriter for MRC and TIFF
transforms  dictionary transforms MONAI lacks (area-fraction crop, one-hot masks, percentile normalisation)
networks    generators and discriminators built from MONAI blocks
losses      adversarial, cycle and identity losses
engines     ignite/MONAI trainers for unconditional, paired and unpaired GANs
handlers    ignite handlers (TensorBoard image grids, progress bars)
metrics     pure metric functions (PRDC, Frechet/kernel distances, mask morphology)
physics     optics and cryo-ET simulators
data        dataset builders turning folders into MONAI datalists
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("io", "transforms", "networks", "losses", "engines", "handlers", "metrics", "physics", "data")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
