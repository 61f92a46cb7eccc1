"""Density map -> simulated cryo-ET subtomogram (``cryoet_gan``'s generator G_ds) as a MONAI Label model.

The request's image is a density map (``.mrc``/``.map``, any voxel size: it is resampled to the bundle's
``voxel_size`` and centre-padded/cropped to its ``map_box``, as ``configs/inference.json`` does). The result is the
generated subtomogram in z-score units, float32, with the bundle's voxel size (A).

Request parameters (``params``):

- ``seed`` (int): seed of the injected noise; default 0, so a map gives the same subtomogram every time.
- ``uncertainty`` (bool): Monte-Carlo dropout (``k`` passes, default 20, noise fixed): the result has 2 channels,
  the per-voxel mean and standard deviation (written as TIFF, since MRC holds one channel).
- ``k`` (int): number of MC-dropout passes.
- ``result_extension`` (``.mrc`` default for one channel, ``.tif``, ``.nii.gz``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from emgan_monai.bundle_utils import config_files
from emgan_monai.networks import mc_dropout
from emgan_monai.data.cryoet_density_inputs import density_input
from emgan_monai.transforms.cryoet_value_range import density_to_network, network_to_subtomo

from .writer import write_result

logger = logging.getLogger(__name__)


class CryoETGeneratorInferTask(InferTask):
    """Serve ``cryoet_gan``'s density -> subtomogram generator.

    Parameters
    ----------
    path
        Bundle folder (``configs/common.json`` + ``configs/inference.json``, ``models/model.pt``).
    conf
        App configuration (unused).
    """

    def __init__(self, path: str, conf: dict[str, str], config_name: str = "inference.json") -> None:
        parser = ConfigParser()
        parser.read_config(config_files(path, config_name))  # configs/common.json first
        parser["bundle_root"] = path
        self.parser = parser
        self.voxel_size = float(parser.get_parsed_content("voxel_size"))
        self.box = int(parser.get_parsed_content("map_box"))
        self.iso = float(parser.get_parsed_content("iso"))
        self.sigma = float(parser.get_parsed_content("shape_sigma"))
        self.weights = parser.get_parsed_content("model_path")
        self.valid = os.path.isfile(self.weights)
        self._net: torch.nn.Module | None = None
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description="cryo-ET: density map (MRC) -> simulated subtomogram (z units), optional MC-dropout "
            "mean/std",
            config={"seed": 0, "uncertainty": False, "k": 20, "result_extension": ".mrc"},
        )
        if not self.valid:
            logger.warning(f"{path}: weights {self.weights} not found; model not served")

    def is_valid(self) -> bool:
        return self.valid

    def _network(self) -> torch.nn.Module:
        if self._net is None:
            net = self.parser.get_parsed_content("network_def", instantiate=True, lazy=False)
            net.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
            self._net = net.eval()
        return self._net

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        req = {**self._config, **request}
        shape = density_input(req["image"], self.voxel_size, self.box, self.iso, self.sigma)
        x = torch.from_numpy(density_to_network(shape))[None, None]
        net = self._network()
        torch.manual_seed(int(req.get("seed") or 0))
        # with dropout: MC-dropout spread with every noise tensor fixed; without dropout (the shipped physics-informed
        # generator) the spread of k stochastic samples, i.e. the generator's own noise
        has_dropout = any(isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in net.modules())
        noise = net.sample_noise(x) if has_dropout else None
        uncertainty = str(req.get("uncertainty", False)).lower() in ("1", "true", "yes")
        with torch.no_grad():
            if uncertainty:
                mean, std = mc_dropout(net, x, k=int(req.get("k") or 20), noise=noise)
                channels = [network_to_subtomo(mean[0]), 3.0 * std[0].numpy()]
            else:
                channels = [network_to_subtomo(net(x, noise=noise)[0])]
        # (Z, Y, X) volumes in file order; MONAI order is (X, Y, Z)
        vol = np.concatenate([np.ascontiguousarray(c.transpose(0, 3, 2, 1)) for c in channels], 0).astype(np.float32)
        ext = req.get("result_extension") or ".mrc"
        if vol.shape[0] > 1 and ext == ".mrc":
            ext = ".tif"
        affine = np.diag([self.voxel_size, self.voxel_size, self.voxel_size, 1.0])
        path, info = write_result(torch.from_numpy(vol), {"affine": affine, "unit": "angstrom"}, extension=ext,
                                  dtype="float32")
        info.update({"voxel_size_A": self.voxel_size, "channels": ["mean", "std"] if uncertainty else ["subtomogram"]})
        if uncertainty:
            info["std_source"] = "mc_dropout" if has_dropout else "generator_noise"
        return path, info
