"""Noise -> mask -> EM synthesis of ``drosophila_skip_patch`` as a MONAI Label model (no input image needed).

MONAI Label's ``/infer/<model>`` always names an image (or uploads one). This task does not read it: the image id
only seeds the random generator when the request gives no ``seed``, so the same image gives the same sample and
different images different samples. The generator is the bundle's standalone ``configs/inference.json``:
``network_def`` (``TwoStageGenerator``, both stages in one module) with the weights at ``ckpt_path``
(``models/model.pt``); sampling is that config's: the latent grid from ``seed``, the injected noise and the random
symmetry of the square under ``torch.manual_seed(seed)``.

Request parameters (``params``):

- ``seed`` (int): latent seed; default: CRC-32 of the image id.
- ``size`` (int): side of the square result in pixels, a multiple of the stage-2 network's ``size_multiple``
  (8 for the shipped NoiseUNet) and of the stage-1 latent stride (16); default the bundle's ``resolution``. Larger
  sizes are a larger field of view at the same pixel size (both generators are fully convolutional).
- ``output`` (``"both"``, ``"em"``, ``"mask"``): ``both`` (default) gives 2 channels, EM then the mask label
  map (0 mitochondria, 1 membrane, 2 background: the label convention of ``ColorMaskToOneHotd``).
- ``result_extension`` (``.tif`` default, ``.nii.gz``, ``.mrc`` for a single channel).

The result is uint16: EM intensity in ``[0, 65535]`` and labels as they are. Its pixel size is that of the
training data at the bundle's resolution: the 1024 px sections of the Drosophila VNC stack have 4.6 nm pixels, and
the bundle resizes them to ``resolution`` px, so one pixel is ``4.6 * 1024 / resolution`` nm (18.4 nm at 256).
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.utils.others.generic import name_to_device

from .writer import write_result

logger = logging.getLogger(__name__)

#: Pixel size of the Drosophila VNC ssTEM sections at full resolution (nm) and their side (px).
SOURCE_PIXEL_NM = 4.6
SOURCE_SIDE_PX = 1024


class DrosophilaGeneratorInferTask(InferTask):
    """Sample a synthetic mask and EM image from the two generators of ``drosophila_skip_patch``.

    Parameters
    ----------
    path
        Bundle folder (``configs/inference.json``, ``models/model.pt``).
    conf
        App configuration (unused keys are ignored).
    config_name
        Standalone bundle config whose ``network_def`` is the two-stage generator.
    """

    def __init__(self, path: str, conf: dict[str, str], config_name: str = "inference.json") -> None:
        self.bundle_path = path
        self.valid = False
        parser = ConfigParser()
        parser.read_config(os.path.join(path, "configs", config_name))
        parser["bundle_root"] = path
        self.parser = parser
        self.resolution = int(parser.get_parsed_content("resolution"))
        self.latent_channels = int(parser.get_parsed_content("latent_channels"))
        self.ckpt_path = parser.get_parsed_content("ckpt_path")
        missing = [w for w in (self.ckpt_path,) if not os.path.isfile(w)]
        super().__init__(
            type=InferType.OTHERS,
            labels={"mitochondria": 0, "membrane": 1, "background": 2},
            dimension=2,
            description="Drosophila ssTEM synthesis: noise -> mitochondria/membrane mask -> EM (the input image "
            "is not read; its id seeds the sample unless 'seed' is given)",
            config={"seed": "", "size": self.resolution, "output": "both", "result_extension": ".tif"},
        )
        if missing:
            logger.warning(f"{path}: {config_name} weights {missing} not found; model not served")
            return
        self._nets: dict[str, torch.nn.Module] = {}
        self.valid = True

    def is_valid(self) -> bool:
        return self.valid

    def _network(self, device: torch.device) -> torch.nn.Module:
        """``network_def`` with ``ckpt_path`` loaded: latent ``(B, C, s, s)`` -> ``(B, 4, H, W)`` (EM, one-hot mask)."""
        key = str(device)
        if key not in self._nets:
            net = self.parser.get_parsed_content("network_def", instantiate=True, lazy=False)
            net.load_state_dict(torch.load(self.ckpt_path, map_location="cpu", weights_only=True))
            self._nets[key] = net.to(device).eval()
        return self._nets[key]

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        req = {**self._config, **request}
        device = torch.device(name_to_device(req.get("device", "cuda")))
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        net = self._network(device)
        size = int(req.get("size") or self.resolution)
        factor = int(getattr(net.mask_generator, "upsampling_factor", 64))
        multiple = math.lcm(int(getattr(net.em_generator, "size_multiple", 1)), factor)
        if size <= 0 or size % multiple:
            raise ValueError(f"size must be a positive multiple of {multiple} for this model, got {size}")
        seed_param = req.get("seed")
        seed = int(seed_param) if seed_param not in (None, "") else zlib.crc32(str(req.get("image", "")).encode())
        output = str(req.get("output", "both")).lower()
        if output not in ("both", "em", "mask"):
            raise ValueError(f"output must be 'both', 'em' or 'mask', got {output!r}")

        g = torch.Generator().manual_seed(seed)
        z = torch.randn((1, self.latent_channels, size // factor, size // factor), generator=g).to(device)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the generators' injected noise and the symmetry: same seed, same sample
            pred = net(z)  # (1, 4, H, W): EM in [0, 1], then the one-hot mask under a random symmetry of the square
        # (1, C, H, W) tensors are in file order (rows, columns); MONAI order is (C, X, Y): swap the spatial axes
        em_u16 = (pred[0, :1] * 65535.0).round().transpose(-1, -2)
        labels = pred[:, 1:].argmax(1).to(torch.float32).transpose(-1, -2)
        channels = {"both": [em_u16, labels], "em": [em_u16], "mask": [labels]}[output]
        # the generators are fully convolutional: a larger ``size`` is a larger field of view at the same scale
        pixel_nm = SOURCE_PIXEL_NM * SOURCE_SIDE_PX / self.resolution
        affine = np.diag([pixel_nm, pixel_nm, 1.0])
        path, info = write_result(
            torch.cat(channels, 0).cpu(),
            {"affine": affine, "unit": "nm"},
            extension=req.get("result_extension"),
            dtype="uint16",
        )
        info.update({"seed": seed, "channels": {"both": ["em", "mask"], "em": ["em"], "mask": ["mask"]}[output]})
        return path, info
