"""MONAI Label app serving the emgan_monai bundles.

Start (binds to the loopback interface; see ``docs/MONAI_LABEL.md``)::

    monailabel start_server --app apps/emgan_label --studies <folder of images> --conf models all \\
        --host 127.0.0.1 --port 8000

or ``python apps/emgan_label/serve.py --studies <folder>`` (same, with ``--host 127.0.0.1`` as default).

``--conf`` keys:

- ``models``: ``all`` (default) or a comma-separated list of the model names below.
- ``bundles``: folder holding the bundles (default: ``bundles/`` of the repository this app is in).

Models (each served only when its bundle and weights exist):

- ``drosophila_mask2em``: mask image (RGB drawing: mitochondria red, membrane green, background blue; or a label
  map 0/1/2) -> synthetic EM, uint16, through ``BundleInferTask`` on the standalone ``inference_mask2em.json`` and
  the stage-2 weights ``models/em_generator.pt`` (``models/model.pt`` is the whole noise -> mask -> EM generator).
- ``drosophila_generator``: noise -> mask + EM, no input image read (see ``lib/infers/drosophila_generator.py``).
- ``cryoet_generator``: density map (MRC) -> simulated subtomogram, optional MC-dropout mean/std
  (see ``lib/infers/cryoet_generator.py``).
- ``<bundle>`` for every other bundle whose ``configs/inference.json`` defines ``network_def``, ``preprocessing``,
  ``inferer`` and ``postprocessing`` (``confocal_enhance``: wide-field -> confocal-like image), served by
  monailabel's stock ``BundleInferTask`` as it is (``configs/inference.json`` + ``models/model.pt``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import monailabel
from lib.infers import BundleImageInferTask, CryoETGeneratorInferTask, DrosophilaGeneratorInferTask
from monai.transforms import SaveImaged
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType
from monailabel.tasks.infer.bundle import BundleInferTask

logger = logging.getLogger(__name__)

#: Image files the studies folder may hold, beyond MONAI Label's defaults.
STUDY_EXTENSIONS = ("*.tif", "*.tiff", "*.png", "*.nii.gz", "*.nii", "*.mrc", "*.map")


def _default_bundles_dir(app_dir: str) -> Path:
    here = Path(app_dir).resolve().parents[1] / "bundles"
    if here.is_dir():
        return here
    import emgan_monai.bundle_utils as bu

    return Path(bu.__file__).resolve().parents[1] / "bundles"


def _stock_servable(bundle: Path) -> bool:
    """Whether monailabel's stock ``BundleInferTask`` can serve the bundle: its standalone ``configs/inference.json``
    defines ``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing``."""
    try:
        with open(bundle / "configs" / "inference.json", encoding="utf-8") as f:
            keys = json.load(f)
    except (OSError, ValueError):
        return False
    return all(k in keys for k in ("network_def", "preprocessing", "inferer", "postprocessing"))


class EMGANLabelApp(MONAILabelApp):
    """MONAI Label app for the emgan_monai bundles (image -> image models and unconditional generators)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles_dir = Path(conf.get("bundles") or _default_bundles_dir(app_dir)).resolve()
        selected = conf.get("models", "all").strip()
        self.selected = None if selected in ("", "all") else {m.strip() for m in selected.split(",") if m.strip()}
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="emgan_monai",
            description="GAN synthesis and enhancement of microscopy images (emgan_monai bundles)",
            version=monailabel.__version__,
        )

    def init_datastore(self) -> Datastore:
        extensions = list(dict.fromkeys([*settings.MONAI_LABEL_DATASTORE_FILE_EXT, *STUDY_EXTENSIONS]))
        return LocalDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def _wanted(self, name: str) -> bool:
        return self.selected is None or name in self.selected

    def _candidates(self) -> dict[str, Callable[[], InferTask]]:
        """Model name -> task factory, for every bundle that can be served."""
        out: dict[str, Callable[[], InferTask]] = {}
        for bundle in sorted(p for p in self.bundles_dir.iterdir() if (p / "configs" / "metadata.json").is_file()):
            path = str(bundle)
            if bundle.name == "drosophila_skip_patch":
                out["drosophila_mask2em"] = partial(
                    BundleImageInferTask,
                    path,
                    self.conf,
                    config_name="inference_mask2em.json",
                    model_file="em_generator.pt",
                    description="Drosophila ssTEM: mask (RGB mitochondria red / membrane green / background blue, "
                    "or labels 0/1/2) -> synthetic EM image, uint16",
                )
                out["drosophila_generator"] = partial(DrosophilaGeneratorInferTask, path, self.conf)
                continue
            if bundle.name == "cryoet_gan":
                out["cryoet_generator"] = partial(CryoETGeneratorInferTask, path, self.conf)
                continue
            if _stock_servable(bundle):
                # the stock task, unchanged: its savers (SaveImaged and subclasses) are left out of postprocessing
                out[bundle.name] = partial(
                    BundleInferTask, path, self.conf, type=InferType.OTHERS, post_filter=[SaveImaged], load_strict=True
                )
        return out

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        candidates = self._candidates()
        for name, factory in candidates.items():
            if not self._wanted(name):
                continue
            try:
                task = factory()
            except Exception:  # a broken bundle must not take the other models down
                logger.exception(f"model {name}: cannot be loaded, not served")
                continue
            if task.is_valid():
                infers[name] = task
            else:
                logger.warning(f"model {name}: weights missing, not served")
        if self.selected:
            unknown = sorted(self.selected - set(candidates))
            if unknown:
                logger.warning(f"--conf models: unknown {unknown}; known: {sorted(candidates)}")
        logger.info(f"Bundles from {self.bundles_dir}: serving {sorted(infers)}")
        return infers

    def init_trainers(self) -> dict:
        return {}  # training runs through the bundles' train.json, not MONAI Label

    def init_strategies(self) -> dict:
        from monailabel.tasks.activelearning.first import First
        from monailabel.tasks.activelearning.random import Random

        return {"random": Random(), "first": First()}
