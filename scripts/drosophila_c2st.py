#!/usr/bin/env python
"""Classifier two-sample test of the shipped Drosophila generator against held-out real sections, with reference points.

Usage: ``python scripts/drosophila_c2st.py [--out c2st.json] [--steps 300] [--seeds 3]`` (about 9 min on 2 CPU threads).

Real EM of sections 0-15 trains the judge, sections 16-19 (never used in training or model selection) test it;
64-px patches at the bundle's 256-px scale (:mod:`emgan_monai.metrics.two_sample`). Rows: real vs real (the floor:
sections 0-7 vs 8-15, tested on 16-17 vs 18-19), real blurred (sigma 0.7 px), real + noise (sd 0.08), the shipped
noise -> mask -> EM generator (16 draws, seed 0) and stage 2 alone on the held-out real masks (two draws each).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser

from emgan_monai.bundle_utils import data_dir
from emgan_monai.data.drosophila import drosophila_datalist, load_sections
from emgan_monai.metrics.two_sample import classifier_two_sample_test, random_patches

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"


def _blur(x: torch.Tensor, sigma: float = 0.7, radius: int = 3) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma * sigma))
    k = k / k.sum()
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", default=data_dir("drosophila_vnc"))
    parser.add_argument("--out", default="c2st.json")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--patch", type=int, default=64)
    args = parser.parse_args()
    all_masks, em = load_sections(drosophila_datalist(Path(args.dataset_dir) / "stack1"), 256)
    masks = all_masks[16:20]  # the held-out sections' masks
    cfg = ConfigParser()
    cfg.read_config(str(BUNDLE / "configs" / "inference.json"))
    cfg["bundle_root"] = str(BUNDLE)
    net = cfg.get_parsed_content("network_def")
    net.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        generated = net(torch.randn(16, 16, 16, 16))[:, :1]
        from_masks = net.em_generator(masks.repeat(2, 1, 1, 1)).clamp(0, 1)
    noisy = (em + 0.08 * torch.randn_like(em)).clamp(0, 1)
    sets = {
        "real vs real (floor)": (em[0:8], em[8:16], em[16:18], em[18:20]),
        "real blurred sigma 0.7 px": (em[0:8], _blur(em[8:16]), em[16:18], _blur(em[18:20])),
        "real + noise sd 0.08": (em[0:8], noisy[8:16], em[16:18], noisy[18:20]),
        "shipped: noise -> mask -> EM": (em[0:16], generated[:8], em[16:20], generated[8:]),
        "shipped: EM from held-out real masks": (em[0:16], from_masks[:4], em[16:20], from_masks[4:]),
    }
    out = {}
    for name, (real_tr, fake_tr, real_te, fake_te) in sets.items():
        t0 = time.time()
        p = args.patch
        res = classifier_two_sample_test(
            random_patches(real_tr, p, 512, 0),
            random_patches(fake_tr, p, 512, 1),
            random_patches(real_te, p, 256, 2),
            random_patches(fake_te, p, 256, 3),
            seeds=range(args.seeds),
            steps=args.steps,
        )
        res["seconds"] = round(time.time() - t0, 1)
        out[name] = res
        print(
            f"{name}: accuracy {res['accuracy']:.3f} (sd {res['accuracy_sd']:.3f}, seeds {res['per_seed']})", flush=True
        )
    Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
