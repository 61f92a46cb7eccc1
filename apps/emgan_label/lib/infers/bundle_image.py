"""Image -> image inference of an emgan_monai bundle through monailabel's ``BundleInferTask``.

The bundle config must define ``network_def``, ``preprocessing`` (input key ``image``), ``inferer`` and
``postprocessing`` (output key ``pred``), as ``drosophila_skip_patch/configs/inference_mask2em.json`` does.
``BundleInferTask`` reads only ``configs/inference.json`` and ``models/model.pt`` by default;
:class:`BundleConfigConstants` (monailabel's public constants interface) points it to another standalone config
of the bundle and its weight file instead (``inference_mask2em.json`` + ``models/em_generator.pt`` for the
Drosophila stage 2). Bundles whose ``inference.json`` is image -> image (``confocal_enhance``) are served by the stock
``BundleInferTask`` itself (``main.py``). The bundle's own savers (``SaveImaged`` and subclasses such as
``emgan_monai.io.SafeSaveImaged``) are removed from ``postprocessing``; the result is written by
:func:`~lib.infers.writer.write_result` as TIFF (default), NIfTI or MRC with the bundle's output dtype
(``output_dtype`` of the config, e.g. uint16 for EM) and the input image's voxel size.

Request parameters (``params`` of ``/infer/<model>``): ``result_extension`` (``.tif``, ``.nii.gz``, ``.mrc``);
``seed`` (int) for networks that draw noise inside ``forward`` (the Drosophila mask -> EM generator gives a new
section at every call): torch's global generator is seeded with it for the request (default: CRC-32 of the image
id), so the same image and seed give the same result.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import SaveImaged
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleConstants, BundleInferTask

from .writer import write_result

logger = logging.getLogger(__name__)


class BundleConfigConstants(BundleConstants):
    """``BundleConstants`` reading the given standalone inference config and weight file instead of
    ``inference.json`` and ``model.pt``."""

    def __init__(self, configs: Sequence[str], model_file: str = "model.pt") -> None:
        self._configs = list(configs)
        self._model_file = model_file

    def configs(self) -> Sequence[str]:
        return self._configs

    def model_pytorch(self) -> str:
        return self._model_file


class BundleImageInferTask(BundleInferTask):
    """Serve a bundle's image -> image network (e.g. Drosophila mask -> EM) as a MONAI Label model.

    Parameters
    ----------
    path
        Bundle folder.
    conf
        App configuration (``--conf`` pairs).
    config_name
        Standalone inference config inside ``<path>/configs`` (``inference_mask2em.json``, ``inference.json``).
    model_file
        Weights of its ``network_def`` inside ``<path>/models``.
    default_extension
        Result format when the request does not give ``result_extension``.
    description
        Text shown in ``/info`` (default: the bundle metadata's ``description``).
    kwargs
        Passed to ``BundleInferTask`` (e.g. ``description``).
    """

    def __init__(
        self,
        path: str,
        conf: dict[str, str],
        config_name: str = "inference.json",
        model_file: str = "model.pt",
        default_extension: str = ".tif",
        description: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            path,
            conf,
            const=BundleConfigConstants([config_name], model_file),
            type=InferType.OTHERS,
            post_filter=[SaveImaged],
            load_strict=True,
            **kwargs,
        )
        self.default_extension = default_extension
        self.output_dtype: str | None = None
        if self.valid and self.bundle_config.get("output_dtype") is not None:
            self.output_dtype = np.dtype(self.bundle_config.get_parsed_content("output_dtype")).name
        if self.valid:
            # BundleInferTask offers every models/*.pt as a choice; only model.pt belongs to network_def
            self._config.pop("model_filename", None)
            self._config.update({"result_extension": default_extension, "seed": ""})
            if description:
                self.description = description
            logger.info(f"{os.path.basename(path)}/{config_name}: output dtype {self.output_dtype or 'float32'}")

    def __call__(self, request: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Run the request with torch's global generator seeded by ``seed`` (default: CRC-32 of the image id)."""
        seed = request.get("seed", self._config.get("seed"))
        seed = int(seed) if seed not in (None, "") else zlib.crc32(str(request.get("image", "")).encode())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return super().__call__(request, *args, **kwargs)

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """Write ``data["pred"]`` with the input image's voxel size; see :func:`~lib.infers.writer.write_result`."""
        image = data.get(self.key_image)
        meta = image.meta if isinstance(image, MetaTensor) else data.get(f"{self.key_image}_meta_dict", {})
        path, info = write_result(
            data[self.key_pred],
            meta,
            extension=extension or data.get("result_extension"),
            dtype=dtype or self.output_dtype or "float32",
            default_extension=self.default_extension,
        )
        return path, info
