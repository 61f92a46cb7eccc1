"""Density map -> simulated cryo-ET subtomogram (``cryoet_gan``'s generator G_ds) as a MONAI Label model.

The request's image is a density map (``.mrc``/``.map``, any voxel size) or an atomic model (``.pdb``, ``.cif``). It
goes through the ``preprocessing`` of the bundle's standalone ``configs/inference.json`` (read, resampled to
``voxel_size``, shape map, centred in the ``map_box``; a molecule larger than the box is refused, not tiled), then
through that config's ``network_def`` with the weights at ``model_path``. The result is the generated subtomogram in
z-score units, float32, with the bundle's voxel size (A).

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

from emgan_monai.networks import mc_dropout
from emgan_monai.transforms.cryoet_value_range import network_to_subtomo

from .writer import write_result

logger = logging.getLogger(__name__)


class CryoETGeneratorInferTask(InferTask):
    """Serve ``cryoet_gan``'s density -> subtomogram generator.

    Parameters
    ----------
    path
        Bundle folder (``configs/inference.json``, ``models/model.pt``).
    conf
        App configuration (unused).
    config_name
        Standalone bundle config giving ``preprocessing``, ``network_def`` and ``model_path``.
    """

    def __init__(self, path: str, conf: dict[str, str], config_name: str = "inference.json") -> None:
        parser = ConfigParser()
        parser.read_config(os.path.join(path, "configs", config_name))
        parser["bundle_root"] = path
        parser["tile_large_maps"] = False  # one forward pass of the box-sized generator per request
        self.parser = parser
        self.voxel_size = float(parser.get_parsed_content("voxel_size"))
        self.weights = parser.get_parsed_content("model_path")
        self._preprocessing = None
        self.valid = os.path.isfile(self.weights)
        self._net: torch.nn.Module | None = None
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description="cryo-ET: density map (MRC) -> simulated subtomogram (z units), optional MC-dropout mean/std",
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

    def _input(self, path: str) -> torch.Tensor:
        """``(1, 1, B, B, B)`` generator input in ``[-1, 1]`` from the config's ``preprocessing``."""
        if self._preprocessing is None:
            self._preprocessing = self.parser.get_parsed_content("preprocessing", instantiate=True)
        item = self._preprocessing({"image": path, "name": os.path.basename(path), "sample": 0})
        image = item["image"]
        return (image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image))[None].float()

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        req = {**self._config, **request}
        x = self._input(req["image"])
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
        path, info = write_result(
            torch.from_numpy(vol), {"affine": affine, "unit": "angstrom"}, extension=ext, dtype="float32"
        )
        info.update({"voxel_size_A": self.voxel_size, "channels": ["mean", "std"] if uncertainty else ["subtomogram"]})
        if uncertainty:
            info["std_source"] = "mc_dropout" if has_dropout else "generator_noise"
        return path, info
