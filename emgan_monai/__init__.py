"""emgan_monai: GAN-based synthesis and enhancement of microscopy images, built on MONAI.

Sub-packages
------------
io          MONAI ImageReader / ImageWriter for MRC and TIFF
transforms  dictionary transforms MONAI lacks (area-fraction crop, one-hot masks, percentile normalisation),
            cryo-ET value ranges, DiffAugment, camera noise
networks    generators and discriminators built from MONAI blocks; the physics-informed subtomogram generator
losses      adversarial, few-shot (hinge + R1), cycle, identity, pixel (L1 + SSIM) and texture losses
engines     ignite/MONAI trainers for unconditional, paired and unpaired GANs; cryo-ET GAN modes and optimisers
handlers    ignite handlers (checkpoints and resuming, EMA, snapshots, non-finite guards, image grids, progress)
metrics     pure metric functions (PRDC, Frechet/kernel distances, mask morphology, FCN-score, image quality,
            sharpness, texture, accuracy)
physics     fluorescence PSFs and pair synthesis; cryo-ET atomic models, volume geometry, CTF, the traditional
            subtomogram simulator, tomography; SNR calibration of the traditional baseline
data        dataset builders turning folders into MONAI datalists; cryo-ET domains and density-map inputs
inferers    MONAI inferers MONAI lacks; synthesis with the generator bundles (Drosophila, cryo-ET)
evaluation  one module per bundle: its model against its baselines on held-out data
export      TorchScript, zoo zips, bioimage.io packages

Modules: ``errors`` (the package's error types), ``bundle_utils`` (helpers bundle configs call), ``visualize``
(tensors -> viewable images).
"""

import importlib

#: the single source of the package version (pyproject.toml reads it); bundles name it in
#: ``metadata.json["required_packages_version"]["emgan_monai"]``
__version__ = "0.2.0"

_SUBMODULES = (
    "io",
    "transforms",
    "networks",
    "losses",
    "engines",
    "handlers",
    "metrics",
    "physics",
    "data",
    "inferers",
    "evaluation",
    "export",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
