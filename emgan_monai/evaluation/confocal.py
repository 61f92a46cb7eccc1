"""Evaluation of the ``confocal_enhance`` bundle: networks against Richardson-Lucy on held-out pairs.

Three named steps, each a component of ``configs/evaluate.json``:

* :class:`RichardsonLucyBaseline`: the classical baseline, Richardson-Lucy deconvolution with each pair's *true*
  wide-field PSF (from the pair's ``pairs.json`` record, or ``optics`` for real pairs), its iteration count tuned
  on validation pairs;
* :class:`HeldOutComparison`: scores the wide-field input (a trivial method), the baseline and any number of
  networks on one or several named held-out sets. Every output is compared with the noise-free confocal target
  after :func:`~emgan_monai.metrics.image_quality.normalize_pair` with SSIM / PSNR / MSE / NRMSE
  (:func:`~emgan_monai.metrics.image_quality.image_quality`, fidelity) and the FRC cutoff and high-frequency power
  relative to the target (:mod:`emgan_monai.metrics.sharpness`, sharpness, so that detail SSIM penalises is
  visible);
* :class:`MetricsReport`: writes ``metrics.json`` (per image, mean / std per set and method, the Richardson-Lucy
  tuning) and ``metrics.md`` (one table per set), never over existing files unless asked to.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile
import torch
from monai.inferers import Inferer
from monai.utils import convert_to_tensor
from torch import nn

from ..metrics.image_quality import image_quality, normalize_pair, richardson_lucy_baseline, tune_rl_iterations
from ..metrics.sharpness import frc_cutoff, high_frequency_power_ratio
from ..physics.optics import widefield_psf
from ..transforms import ScalePercentile

__all__ = ["METRICS", "HeldOutComparison", "MetricsReport", "RichardsonLucyBaseline"]

logger = logging.getLogger(__name__)

#: per-image scores of the table: fidelity, then sharpness
METRICS = ("ssim", "psnr", "mse", "nrmse", "frc", "hf_power")


def _pair_records(datalist: Sequence[Mapping[str, str]]) -> list[dict[str, Any] | None]:
    """The ``pairs.json`` record (na, photons, ...) of each synthesised pair, ``None`` for real pairs."""
    cache: dict[Path, dict[str, dict[str, Any]]] = {}
    records: list[dict[str, Any] | None] = []
    for item in datalist:
        root = Path(item["image"]).parent.parent
        if root not in cache:
            meta_file = root / "pairs.json"
            cache[root] = {}
            if meta_file.is_file():
                meta = json.loads(meta_file.read_text())
                for rec in meta.get("pairs", []):
                    cache[root][Path(rec["image"]).name] = {**rec, "_meta": meta}
        records.append(cache[root].get(Path(item["image"]).name))
    return records


def _wf_psf_2d(
    record: Mapping[str, Any] | None, optics: Mapping[str, Any], psf_shape: Sequence[int] | None
) -> np.ndarray:
    """z-projected true wide-field PSF of a pair (its NA and grid from ``pairs.json``), or from ``optics``."""
    if record is not None:
        meta = record["_meta"]
        psf_shape = meta["psf_shape"] if psf_shape is None else psf_shape
        ranges = meta["ranges"]
        params = {
            "na": record["na"],
            "wavelength_em_um": ranges["wavelength_em_um"],
            "n_immersion": ranges["n_immersion"],
            "spacing_zyx_um": meta["spacing_zyx_um"],
            "model": meta["psf_model"],
        }
    else:
        params = dict(optics)
        psf_shape = params.pop("psf_shape", psf_shape)
    if psf_shape is None:
        raise ValueError("rl_psf_shape (or optics['psf_shape']) is needed for the Richardson-Lucy PSF of real pairs.")
    spacing = params.pop("spacing_zyx_um")
    return widefield_psf(psf_shape, spacing, **params).sum(axis=0)


def _load_plane(path: str) -> np.ndarray:
    arr = np.squeeze(tifffile.imread(path))
    if arr.ndim != 2:
        raise ValueError(f"{path}: evaluation expects 2D images, got shape {arr.shape}.")
    return arr.astype(np.float32)


@torch.no_grad()
def _predict(network: nn.Module, inferer: Inferer, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Network output for a 2D image ``(H, W)`` in the units of the percentile-normalised target."""
    scaled = convert_to_tensor(ScalePercentile()(torch.from_numpy(image)[None]), track_meta=False)  # plain tensor
    x = scaled[None].to(device)  # (1, 1, H, W)
    network.eval()
    return inferer(x, network)[0, 0].float().cpu().numpy()


def _scores(pred: np.ndarray, target: np.ndarray, data_range: float, normalize: str) -> dict[str, float]:
    scores = image_quality(pred, target, data_range=data_range, normalize=normalize)  # type: ignore[arg-type]
    p, t = normalize_pair(pred, target, normalize)  # type: ignore[arg-type]
    scores["frc"] = frc_cutoff(p, t)
    scores["hf_power"] = high_frequency_power_ratio(p, t)
    return scores


class RichardsonLucyBaseline:
    """Richardson-Lucy deconvolution with each pair's true wide-field PSF, iterations tuned on validation pairs.

    Parameters
    ----------
    val_pairs : Sequence[Mapping[str, str]]
        ``[{"image": wf, "label": confocal}, ...]`` 2D validation pairs; only tune the iteration count.
    candidates : Sequence[int]
        Iteration counts tried on ``val_pairs``; the best mean SSIM wins (ties: the fewest iterations).
    psf_shape : Sequence[int] | None
        Grid ``(Z, Y, X)`` of the wide-field PSF (z-projected for 2D deconvolution); ``None`` uses the grid the pairs
        were synthesised with (from ``pairs.json``), i.e. exactly the true PSF.
    optics : Mapping[str, Any] | None
        For real pairs (no ``pairs.json``): ``widefield_psf`` arguments ``na``, ``wavelength_em_um``,
        ``n_immersion``, ``spacing_zyx_um`` (and optionally ``psf_shape``); without it the baseline does not apply
        to them.
    normalize : {"percentile", "minmse"}
        Normalisation of the tuning score (as in the comparison).
    max_val_pairs : int | None
        Validation pairs used for tuning (evenly spaced; ``None`` = all).
    """

    def __init__(
        self,
        val_pairs: Sequence[Mapping[str, str]],
        candidates: Sequence[int] = (1, 2, 3, 5, 8, 12, 20, 30),
        psf_shape: Sequence[int] | None = None,
        optics: Mapping[str, Any] | None = None,
        normalize: Literal["percentile", "minmse"] = "minmse",
        max_val_pairs: int | None = 12,
    ) -> None:
        self.val_pairs = list(val_pairs)
        self.candidates = [int(c) for c in candidates]
        self.psf_shape = psf_shape
        self.optics = dict(optics or {})
        self.normalize = normalize
        self.max_val_pairs = max_val_pairs
        self._val_records = _pair_records(self.val_pairs)
        self._info: dict[str, Any] | None = None

    def applies_to(self, records: Sequence[Mapping[str, Any] | None]) -> bool:
        """Whether a true PSF is known for every validation pair and every pair of ``records``."""
        known = all(r is not None for r in [*self._val_records, *records])
        return bool(self.val_pairs) and (known or bool(self.optics))

    @property
    def info(self) -> dict[str, Any]:
        """``{"iterations", "val_ssim_by_iterations", "val_pairs"}``, tuned on first use."""
        if self._info is None:
            items = list(zip(self.val_pairs, self._val_records))
            if self.max_val_pairs is not None and len(items) > self.max_val_pairs:
                idx = np.linspace(0, len(items) - 1, self.max_val_pairs).round().astype(int)
                items = [items[i] for i in idx]
            scores: dict[int, list[float]] = {c: [] for c in self.candidates}
            for item, rec in items:
                psf = _wf_psf_2d(rec, self.optics, self.psf_shape)
                pair = [(_load_plane(item["image"]), _load_plane(item["label"]))]
                _, s = tune_rl_iterations(pair, psf, candidates=self.candidates, normalize=self.normalize,
                                          return_scores=True)  # fmt: skip
                for c, v in s.items():
                    scores[c].append(v)
            mean_scores = {c: float(np.mean(v)) for c, v in scores.items()}
            best = max(mean_scores, key=lambda c: (mean_scores[c], -c))
            self._info = {"iterations": best, "val_ssim_by_iterations": mean_scores, "val_pairs": len(items)}
        return self._info

    @property
    def name(self) -> str:
        """Row name of the table, e.g. ``"Richardson-Lucy (30 it., true PSF)"``."""
        return f"Richardson-Lucy ({self.info['iterations']} it., true PSF)"

    def __call__(self, image: np.ndarray, record: Mapping[str, Any] | None) -> np.ndarray:
        """Deconvolve a wide-field image ``(H, W)`` with the PSF of its pair record (or ``optics``)."""
        psf = _wf_psf_2d(record, self.optics, self.psf_shape)
        return richardson_lucy_baseline(image, psf, self.info["iterations"])


class HeldOutComparison:
    """Score the wide-field input, a baseline and networks against the confocal targets of named held-out sets.

    Parameters
    ----------
    networks : Mapping[str, nn.Module]
        Row name -> 2D network ``(B, 1, H, W) -> (B, 1, H, W)`` on percentile-normalised input.
    inferer : Inferer
        How networks are applied (e.g. :class:`~emgan_monai.inferers.PlanewiseInferer`).
    baseline : RichardsonLucyBaseline | None
        Classical baseline row, left out for sets where it does not apply (no PSF known).
    normalize : {"percentile", "minmse"}
        Intensity normalisation before scoring.
    data_range : float
        Range for SSIM/PSNR on the normalised images.
    device : str | torch.device
        Device of the networks.
    """

    def __init__(
        self,
        networks: Mapping[str, nn.Module],
        inferer: Inferer,
        baseline: RichardsonLucyBaseline | None = None,
        normalize: Literal["percentile", "minmse"] = "minmse",
        data_range: float = 1.0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.networks = dict(networks)
        self.inferer = inferer
        self.baseline = baseline
        self.normalize = normalize
        self.data_range = data_range
        self.device = torch.device(device)

    def __call__(self, held_out_sets: Mapping[str, Sequence[Mapping[str, str]]]) -> dict[str, Any]:
        """Score every method on every set.

        Parameters
        ----------
        held_out_sets : Mapping[str, Sequence[Mapping[str, str]]]
            Set name -> ``[{"image": wf, "label": confocal}, ...]`` 2D pairs; one table each.

        Returns
        -------
        dict[str, Any]
            ``{"normalize", "data_range", "rl", "sets": {set: {"n", "summary": {method: {metric: {"mean", "std"}}},
            "per_image": {method: [...]}}}}``; ``"rl"`` is the baseline's tuning or ``None``.
        """
        sets = dict(held_out_sets)
        if not sets or not all(sets.values()):
            sizes = [len(v) for v in sets.values()]
            raise ValueError(f"the comparison needs at least one pair per held-out set, got {sizes}.")
        records = {name: _pair_records(items) for name, items in sets.items()}
        baseline = self.baseline
        if baseline is not None and not baseline.applies_to([r for recs in records.values() for r in recs]):
            baseline = None
        result: dict[str, Any] = {"normalize": self.normalize, "data_range": self.data_range,
                                  "rl": baseline.info if baseline else None, "sets": {}}  # fmt: skip
        for set_name, items in sets.items():
            methods = ["wide-field input", *([baseline.name] if baseline else []), *self.networks]
            per_image: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
            for item, rec in zip(items, records[set_name]):
                wf, target = _load_plane(item["image"]), _load_plane(item["label"])
                preds = {"wide-field input": wf}
                if baseline:
                    preds[baseline.name] = baseline(wf, rec)
                for name, net in self.networks.items():
                    preds[name] = _predict(net, self.inferer, wf, self.device)
                extra: dict[str, Any] = {"image": item["image"]}
                if rec is not None:
                    extra.update({k: rec[k] for k in ("specimen", "plane", "na", "photons", "background", "read_noise")
                                  if k in rec})  # fmt: skip
                for name, pred in preds.items():
                    per_image[name].append({**extra, **_scores(pred, target, self.data_range, self.normalize)})
            summary = {
                name: {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))}
                       for k in METRICS}
                for name, rows in per_image.items()
            }  # fmt: skip
            result["sets"][set_name] = {"n": len(items), "summary": summary, "per_image": per_image}
        return result


def _table(name: str, n: int, summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> list[str]:
    lines = [
        f"### {name} ({n} pairs)",
        "",
        "| method | SSIM | PSNR (dB) | MSE | NRMSE | FRC cutoff (1/px) | HF power / target |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {s['ssim']['mean']:.4f} +- {s['ssim']['std']:.4f} | {s['psnr']['mean']:.2f} +- "
            f"{s['psnr']['std']:.2f} | {s['mse']['mean']:.2e} | {s['nrmse']['mean']:.4f} | {s['frc']['mean']:.3f} | "
            f"{s['hf_power']['mean']:.3f} |"
        )
    return [*lines, ""]


class MetricsReport:
    """``metrics.json`` and ``metrics.md`` of a :class:`HeldOutComparison` result in ``output_dir``.

    Parameters
    ----------
    output_dir : str | os.PathLike
        Receives ``metrics.json`` and ``metrics.md``.
    overwrite : bool
        Replace existing files; otherwise :meth:`check` and :meth:`write` raise ``FileExistsError``.
    """

    def __init__(self, output_dir: str | os.PathLike, overwrite: bool = False) -> None:
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.files = [self.output_dir / "metrics.json", self.output_dir / "metrics.md"]

    def check(self) -> None:
        """Fail early (before any scoring) when the report exists and ``overwrite`` is false."""
        if not self.overwrite:
            for f in self.files:
                if f.exists():
                    raise FileExistsError(f"{f} already exists; choose another output_dir or pass --overwrite true.")

    def write(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """Write ``result`` (see :meth:`HeldOutComparison.__call__`) as JSON and Markdown tables; return it."""
        self.check()
        lines = [f"Scores after '{result['normalize']}' normalisation, data range {result['data_range']:g} "
                 "(mean +- std over images).", ""]  # fmt: skip
        for set_name, s in result["sets"].items():
            lines += _table(set_name, s["n"], s["summary"])
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_mode = "w" if self.overwrite else "x"
        with open(self.files[0], write_mode, encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        with open(self.files[1], write_mode, encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        logger.info("\n%s", "\n".join(lines))
        return dict(result)
