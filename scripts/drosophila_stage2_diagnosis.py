#!/usr/bin/env python
"""Where does the stage-2 EM give itself away? The classifier two-sample test of one stage-2 generator under
interventions at inference time, each against held-out real sections, beside the floor (issue 22, item 2).

Usage: ``python scripts/drosophila_stage2_diagnosis.py --out diag.json [--em_weights models/em_generator.pt]
[--seeds 5] [--steps 400] [--only as_is,histogram_matched]``.

Every row is the ``generated_from_heldout_masks`` row of ``evaluate.json``'s judge (trained on the training sections
0-15 against draws 0-1 of the generator on the held-out masks 16-19, tested on sections 16-19 against draws 2-3;
64-px patches) with the generator's output changed in one way:

- ``as_is``: the generator as shipped, whole 256-px sections (as ``evaluate.json``);
- ``reflect_padded``: the mask reflect-padded by 32 px and the output cropped back (the image border is a giveaway
  if this row is lower);
- ``tiled_128``: inference in 128-px tiles (the training crop size; half-overlapping, Gaussian-blended, MONAI's
  ``SlidingWindowInferer``): instance-norm statistics over a training-sized field;
- ``histogram_matched``: every output histogram-matched to the pooled training sections (scikit-image): the grey-value
  distribution is the giveaway if this row is lower;
- ``noise_x0`` / ``noise_x2``: the injected noise switched off / doubled (the grain's amount);
- ``relief_removed``: the output minus half the generator's left-right asymmetry, ``G(m) - (G_0(m) -
  flip(G_0(flip(m)))) / 2`` with ``G_0`` the generator without its noise: what an x-mirror-equivariant generator
  would draw (the real data have no preferred side; the relief measurement below finds one in the generator). The
  grain, which comes from the noise, is kept.

Beside the judge, two direct measurements of the suspects on the held-out sections (real and ``as_is``):
``relief``: the mean signed intensity step across membranes, ``I(p + 2 e) - I(p - 2 e)`` over membrane pixels for
``e`` = x and y, in units of the image's sd (0 for a symmetric membrane; a constant sign is light from one side);
``membrane_profile_x``: the mean grey level at -4 .. 4 px along x from the membrane pixels (symmetric for real EM);
``border``: mean grey level of the outer 4-px frame minus that of the interior, in units of the sd.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import SlidingWindowInferer
from skimage.exposure import match_histograms

from emgan_monai.bundle_utils import config_files
from emgan_monai.evaluation.drosophila import heldout_draws_set, stage2_draws
from emgan_monai.metrics.relief import membrane_profile, membrane_relief
from emgan_monai.metrics.two_sample import two_sample_table
from emgan_monai.networks.mask_generator import NoiseInjection

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"
ROWS = (
    "as_is",
    "reflect_padded",
    "tiled_128",
    "histogram_matched",
    "noise_x0",
    "noise_x2",
    "relief_removed",
)


class _Fn(torch.nn.Module):
    """``fn(mask (1, 3, H, W)) -> EM (1, 1, H, W)`` as a module, so that :func:`stage2_draws` draws it as it draws
    the generator (same seeds per draw)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.fn(m)


@contextlib.contextmanager
def _scaled_noise(em_net: torch.nn.Module, factor: float):
    """Every :class:`NoiseInjection` scale of ``em_net`` multiplied by ``factor`` inside the block."""
    saved = [(m, m.weight.detach().clone()) for m in em_net.modules() if isinstance(m, NoiseInjection)]
    for m, w in saved:
        m.weight.data = w * factor
    try:
        yield
    finally:
        for m, w in saved:
            m.weight.data = w


def variants(
    em_net: torch.nn.Module, masks: torch.Tensor, tr_em: torch.Tensor, n_draws: int, seed: int, rows=ROWS
) -> dict:
    """The draws ``(n_draws, N, 1, H, W)`` of every row in ``rows`` (only those are computed)."""
    em_net.eval()
    inferer = SlidingWindowInferer(roi_size=(128, 128), sw_batch_size=4, overlap=0.5, mode="gaussian")
    ref = tr_em[:, 0].reshape(-1, tr_em.shape[-1]).numpy()

    def draws(fn=None, noise: float = 1.0) -> torch.Tensor:
        with _scaled_noise(em_net, noise):
            return stage2_draws(em_net if fn is None else _Fn(fn), masks, n_draws, seed=seed)

    def padded(m: torch.Tensor, p: int = 32) -> torch.Tensor:
        return em_net(torch.nn.functional.pad(m, (p, p, p, p), mode="reflect"))[..., p:-p, p:-p]

    def symmetrised(m: torch.Tensor) -> torch.Tensor:
        g = em_net(m)
        with _scaled_noise(em_net, 0.0):
            asym = em_net(m) - em_net(m.flip(-1)).flip(-1)
        return g - 0.5 * asym

    def matched() -> torch.Tensor:
        return torch.from_numpy(np.stack([[match_histograms(x[0].numpy(), ref)[None] for x in d] for d in draws()]))

    make = {
        "as_is": draws,
        "reflect_padded": lambda: draws(padded),
        "tiled_128": lambda: draws(lambda m: inferer(m, em_net)),
        "histogram_matched": lambda: matched().float(),
        "noise_x0": lambda: draws(noise=0.0),
        "noise_x2": lambda: draws(noise=2.0),
        "relief_removed": lambda: draws(symmetrised),
    }
    unknown = set(rows) - set(make)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    return {name: make[name]() for name in ROWS if name in rows}


def border(em: torch.Tensor, width: int = 4) -> float:
    """Mean grey level of the outer ``width``-px frame minus the interior's, / sd."""
    x = em[:, 0].numpy()
    frame = np.ones(x.shape[1:], bool)
    frame[width:-width, width:-width] = False
    return float((x[:, frame].mean() - x[:, ~frame].mean()) / x.std())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="stage2_diagnosis.json")
    parser.add_argument("--em_weights", default=None, help="stage-2 weights (default: the shipped em_generator.pt)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--only", default=",".join(ROWS), help="comma-separated rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = ConfigParser()
    cfg.read_config(config_files(BUNDLE, "inference.json", "evaluate.json"))
    cfg.update({"bundle_root": str(BUNDLE)})
    cfg.get_parsed_content("load_weights")
    em_net = cfg.get_parsed_content("network").em_generator
    if args.em_weights:
        em_net.load_state_dict(torch.load(args.em_weights, map_location="cpu", weights_only=True))
    tr_em = cfg.get_parsed_content("train_sections")[1]
    va_masks, va_em = cfg.get_parsed_content("val_sections")
    start = time.time()
    rows = variants(em_net, va_masks, tr_em, n_draws=4, seed=0, rows=args.only.split(","))
    logging.info("draws in %.0f s", time.time() - start)
    n_t = len(tr_em) // 2
    sets = {"real_vs_real": (tr_em[:n_t], tr_em[n_t:], va_em[:2], va_em[2:])}
    sets |= {name: heldout_draws_set(tr_em, va_em, d) for name, d in rows.items()}
    table = two_sample_table(sets, patch=64, steps=args.steps, seeds=args.seeds)
    table["relief"] = {"real_heldout": membrane_relief(va_em, va_masks)} | {
        name: membrane_relief(d[0], va_masks) for name, d in rows.items()
    }
    table["membrane_profile_x"] = {"real_heldout": membrane_profile(va_em, va_masks)} | {
        name: membrane_profile(d[0], va_masks) for name, d in rows.items()
    }
    table["border"] = {"real_heldout": border(va_em)} | {name: border(d[0]) for name, d in rows.items()}
    table["em_weights"] = args.em_weights or "models/em_generator.pt"
    Path(args.out).write_text(json.dumps(table, indent=2))
    for name, row in table["rows"].items():
        print(
            f"{name}: accuracy {row['accuracy']:.3f} (sd {row['accuracy_sd']:.3f}) relief "
            f"{table['relief'].get(name, table['relief']['real_heldout'])} border {table['border'].get(name, '')}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
