"""Run records of the cryo-ET generator's inference: what was written, from which map, and a picture of it.

:class:`SynthesisRecord` (``inference.json``) and :class:`UncertaintyRecord` (``inference_uncertainty.json``) are
ignite handlers of the evaluator that runs the generator. After every iteration they note, per map, the files the
postprocessing's ``SaveImaged`` wrote (``saved_to`` in the images' metadata: pass ``savepath_in_metadict=true``);
when the run completes they write the record (``synthesis.json`` / ``uncertainty.json``: files, settings, the inputs
that failed) and a montage of central slices read back from those files. The record describes the latest run and is
rewritten by each run; the volumes themselves are never overwritten unless the saver is told to.

Volumes are read in MRC file order ``(Z, Y, X)`` (the beam axis first); the montage shows, for each volume, the central
slice across axis 0 and across axis 1 (the latter shows the missing wedge).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from monai.data import MetaTensor

from emgan_monai.bundle_utils import save_json
from emgan_monai.io import read_image, write_image
from emgan_monai.transforms.cryoet_value_range import SUBTOMO_SCALE
from emgan_monai.visualize import central_slices, montage

if TYPE_CHECKING:
    from ignite.engine import Engine
    from monai.engines import SupervisedEvaluator

__all__ = ["SynthesisRecord", "UncertaintyRecord"]

logger = logging.getLogger(__name__)


def padded_montage(tiles: list[np.ndarray], ncols: int) -> np.ndarray:
    """:func:`~emgan_monai.visualize.montage` of tiles padded (white) to a common size (maps may differ in size)."""
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    padded = [
        np.pad(t, [(0, h - t.shape[0]), (0, w - t.shape[1])] + [(0, 0)] * (t.ndim - 2), constant_values=255)
        for t in tiles
    ]
    return montage(padded, ncols=ncols, pad=2)


def _saved_to(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.meta.get("saved_to") if isinstance(value, MetaTensor) else None


class _Record:
    """Collects, per map (``name_key`` of the items), the files saved from ``keys``; subclasses write the record."""

    keys: tuple[str, ...] = ()

    def __init__(
        self, output_dir: str, dataset: Any = None, settings: Mapping[str, Any] | None = None, name_key: str = "name"
    ) -> None:
        self.output_dir = Path(output_dir)
        self.dataset = dataset
        self.settings = dict(settings or {})
        self.name_key = name_key
        self.maps: dict[str, dict[str, Any]] = {}

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.maps = {}

    def _collect(self, engine: Engine) -> None:
        batch, output = cast(Any, engine.state.batch), cast(Any, engine.state.output)  # ignite types them loosely
        if isinstance(batch, Mapping):  # not decollated: one item
            batch, output = [batch], [output]
        for b, o in zip(batch, output):
            item = {**b, **o}
            entry = self.maps.setdefault(str(item[self.name_key]), {})
            for key in self.keys:
                path = _saved_to(item, key)
                if path is not None:
                    entry.setdefault(key, []).append(path)

    def _failed(self) -> list[dict[str, str]]:
        return [{"file": f, "reason": r} for f, r in getattr(self.dataset, "failures", [])]

    def _write(self, engine: Engine) -> None:
        raise NotImplementedError


class SynthesisRecord(_Record):
    """``synthesis.json`` and ``montage.png`` of ``inference.json`` (``n_samples`` subtomograms per map).

    Parameters
    ----------
    output_dir
        Folder of the outputs and the record.
    dataset
        The :class:`~emgan_monai.data.batch.TolerantDataset` whose failed inputs the record lists.
    settings
        Entries copied into the record (e.g. ``n_samples``, ``box``, ``voxel_size_A``).
    name_key
        Item key holding the map's name.
    input_key, output_key
        Keys of the saved input shape map (first draw only) and of the saved subtomogram.

    Record: ``files`` = ``[{"map", "input", "samples": [file names]}]`` in input order, ``n_maps``, ``failed``; montage
    rows = maps, columns = the input (scaled from ``[0, 1]``) then each sample (``[-3, 3]`` z units).
    """

    def __init__(
        self,
        output_dir: str,
        dataset: Any = None,
        settings: Mapping[str, Any] | None = None,
        name_key: str = "name",
        input_key: str = "input",
        output_key: str = "pred",
    ) -> None:
        super().__init__(output_dir, dataset, settings, name_key)
        self.input_key, self.output_key = input_key, output_key
        self.keys = (input_key, output_key)

    def _write(self, engine: Engine) -> None:
        files, rows = [], []
        for name, saved in self.maps.items():
            inputs, samples = saved.get(self.input_key, []), saved.get(self.output_key, [])
            files.append(
                {
                    "map": name,
                    "input": Path(inputs[0]).name if inputs else None,
                    "samples": [Path(p).name for p in samples],
                }
            )
            tiles = central_slices(read_image(inputs[0])[0], 0.0, 1.0) if inputs else []
            for p in samples:
                tiles += central_slices(read_image(p)[0], -SUBTOMO_SCALE, SUBTOMO_SCALE)
            rows.append(tiles)
        if rows and rows[0]:
            png = padded_montage([t for row in rows for t in row], ncols=len(rows[0]))
            write_image(self.output_dir / "montage.png", png, overwrite=True)
        summary = {
            "generator": "D -> S (density map -> subtomogram)",
            "n_maps": len(files),
            **self.settings,
            "value_units": "z-score of the training subtomograms (dark = dense)",
            "montage": "rows: maps; columns: input, then samples; each as (central slice across axis 0, across axis 1)",
            "files": files,
            "failed": self._failed(),
        }
        save_json(summary, self.output_dir / "synthesis.json", overwrite=True)
        logger.info("wrote %d maps' subtomograms and synthesis.json to %s", len(files), self.output_dir)


class UncertaintyRecord(_Record):
    """``uncertainty.json`` and ``uncertainty.png`` of ``inference_uncertainty.json`` (MC-dropout mean and std).

    The evaluator's inferer must be a :class:`~emgan_monai.inferers.mc_dropout.MCDropoutInferer` (``k`` and whether
    the noise was fixed are read from it). Parameters as :class:`SynthesisRecord`, with ``mean_key`` / ``std_key`` the
    keys of the saved mean and std volumes (z units).

    Record: ``files`` = ``[{"map", "input", "mean", "std", "mean_std", "max_std"}]``, ``k``, ``fix_noise``,
    ``std_source``, ``std_display_max`` (the largest std of all maps, the top of the std columns' grey scale).
    Montage: rows = maps; columns = input, mean, std, each as two central slices.
    """

    def __init__(
        self,
        output_dir: str,
        dataset: Any = None,
        settings: Mapping[str, Any] | None = None,
        name_key: str = "name",
        input_key: str = "input",
        mean_key: str = "pred_mean",
        std_key: str = "pred_std",
    ) -> None:
        super().__init__(output_dir, dataset, settings, name_key)
        self.input_key, self.mean_key, self.std_key = input_key, mean_key, std_key
        self.keys = (input_key, mean_key, std_key)

    def _write(self, engine: Engine) -> None:
        from emgan_monai.inferers.mc_dropout import has_dropout

        evaluator = cast("SupervisedEvaluator", engine)  # the records attach to the evaluator that ran the maps
        inferer, network = evaluator.inferer, evaluator.network
        dropout = has_dropout(network)
        files, volumes = [], []
        for name, saved in self.maps.items():
            m = read_image(saved[self.input_key][0])[0] if self.input_key in saved else None
            mean_z = read_image(saved[self.mean_key][0])[0]
            std_z = read_image(saved[self.std_key][0])[0]
            files.append(
                {
                    "map": name,
                    "input": Path(saved[self.input_key][0]).name if m is not None else None,
                    "mean": Path(saved[self.mean_key][0]).name,
                    "std": Path(saved[self.std_key][0]).name,
                    "mean_std": float(std_z.mean()),
                    "max_std": float(std_z.max()),
                }
            )
            volumes.append((m, mean_z, std_z))
        std_hi = max((float(v[2].max()) for v in volumes), default=0.0) or 1.0
        tiles = []
        for m, mean_z, std_z in volumes:
            tiles += central_slices(m, 0.0, 1.0) if m is not None else []
            tiles += central_slices(mean_z, -SUBTOMO_SCALE, SUBTOMO_SCALE)
            tiles += central_slices(std_z, 0.0, std_hi)
        if tiles:
            write_image(self.output_dir / "uncertainty.png", padded_montage(tiles, ncols=6), overwrite=True)
        fix = bool(getattr(inferer, "fix_noise", False))
        summary = {
            "k": int(getattr(inferer, "k", 0)),
            "fix_noise": fix and dropout,
            **self.settings,
            "std_display_max": std_hi,
            "std_source": ("mc_dropout" + (" (noise fixed)" if fix else " + generator noise"))
            if dropout
            else "generator_noise (the generator has no dropout layers)",
            "files": files,
            "failed": self._failed(),
        }
        save_json(summary, self.output_dir / "uncertainty.json", overwrite=True)
        logger.info("wrote the MC-dropout mean/std of %d maps and uncertainty.json to %s", len(files), self.output_dir)
