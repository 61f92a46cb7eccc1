"""emgan_monai.transforms: MONAI transforms the GAN pipelines need and MONAI lacks.

- :class:`RandAreaCrop` / :class:`RandAreaCropd`: random crop of a given area fraction keeping the aspect
  ratio, resized back (one box shared by all keys, per-key resize mode).
- :class:`RandFlipsd`: independent random flips per axis, jointly for all keys (a Compose of ``RandFlipd``).
- :class:`MaskToOneHot` / :class:`MaskToOneHotd`: binary masks in priority order -> one-hot classes
  (mitochondria / membrane / background); :class:`OneHotToRGB` / :class:`OneHotToRGBd` for display.
- :class:`OneHotToDistanceMap` / :class:`OneHotToDistanceMapd` / :class:`DistanceMapToOneHot`: class masks <->
  smooth signed-distance maps (what the stage-1 mask generator draws), with optional watershed closing of outlines.
- :class:`RandCameraNoised`: noise-free signal -> camera image with a fresh photon budget, background, shot and
  read noise per sample.
- :class:`ScalePercentile` / :class:`ScalePercentiled`: CARE percentile normalisation that records its
  parameters; :class:`InvertPercentile` / :class:`InvertPercentiled` map outputs back to the original
  range and dtype.
- :class:`PixelSized`: an image (intensities or one-hot masks; lateral axes or all, nm or um) to the pixel size a
  network was trained at, with its refusals (rescale, memory), inverted back onto the input's grid by MONAI's
  ``Invertd``; :func:`stated_pixel_size` reads a loaded image's calibration.
- :class:`InvertToInputDtyped`: a prediction back to the input file's intensity range and dtype;
  :class:`PreviewPNGd`: ``input | output`` PNG previews beside the outputs.
- :data:`SUBTOMO_SCALE`, :func:`density_to_network`, :func:`subtomo_to_network`, :func:`network_to_subtomo`: the
  cryo-ET GAN's value ranges, shape maps and z-scored subtomograms <-> the generators' ``[-1, 1]``.
- :class:`DensityMapInputd`: the cryo-ET inference configs' input contract (3D, finite, voxel size, memory), checked
  before resampling; :class:`ResampleMapd` / :class:`ShapeMapd` / :class:`FitToBoxd` / :class:`SampleIndexd` /
  :class:`OutputNamed`: density maps -> the cryo-ET generator's shape-map inputs, one datalist item per draw, one
  output name per input file.
"""

from .camera_noise import RandCameraNoised
from .crop import RandAreaCrop, RandAreaCropd, RandFlipsd, area_crop_size
from .cryoet_value_range import SUBTOMO_SCALE, density_to_network, network_to_subtomo, subtomo_to_network
from .density_map_input import DensityMapInputd
from .density_maps import FitToBoxd, OutputNamed, ResampleMapd, SampleIndexd, ShapeMapd
from .intensity import PERCENTILE_KEY, InvertPercentile, InvertPercentiled, ScalePercentile, ScalePercentiled
from .mask_distance import DistanceMapToOneHot, OneHotToDistanceMap, OneHotToDistanceMapd
from .masks import (
    DEFAULT_COLORS,
    ColorMaskToOneHot,
    ColorMaskToOneHotd,
    MaskToOneHot,
    MaskToOneHotd,
    OneHotToRGB,
    OneHotToRGBd,
)
from .output import InvertToInputDtyped, PreviewPNGd
from .pixel_size import PixelSized, stated_pixel_size

__all__ = [
    "DEFAULT_COLORS",
    "DistanceMapToOneHot",
    "DensityMapInputd",
    "FitToBoxd",
    "OutputNamed",
    "ResampleMapd",
    "SampleIndexd",
    "ShapeMapd",
    "OneHotToDistanceMap",
    "OneHotToDistanceMapd",
    "ColorMaskToOneHot",
    "ColorMaskToOneHotd",
    "PERCENTILE_KEY",
    "InvertPercentile",
    "InvertPercentiled",
    "InvertToInputDtyped",
    "MaskToOneHot",
    "MaskToOneHotd",
    "OneHotToRGB",
    "OneHotToRGBd",
    "PixelSized",
    "PreviewPNGd",
    "RandAreaCrop",
    "RandAreaCropd",
    "RandCameraNoised",
    "RandFlipsd",
    "SUBTOMO_SCALE",
    "ScalePercentile",
    "ScalePercentiled",
    "area_crop_size",
    "density_to_network",
    "network_to_subtomo",
    "stated_pixel_size",
    "subtomo_to_network",
]
