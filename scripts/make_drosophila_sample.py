#!/usr/bin/env python
"""Write the embedded sample masks of ``bundles/drosophila_skip_patch/sample/masks``.

The masks are procedural (Voronoi cells with membranes, elliptical mitochondria, from
:func:`emgan_monai.data.drosophila.make_synthetic_stack`), coloured as the bundle expects (mitochondria red,
membrane green, background blue): no file of the real dataset is copied. One mask has an odd size to show that
``inference_mask2em.json`` handles any size through its sliding-window inferer.

Usage: ``python scripts/make_drosophila_sample.py [--out bundles/drosophila_skip_patch/sample/masks] [--overwrite]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from emgan_monai.data.drosophila import build_mask, make_synthetic_stack
from emgan_monai.io import write_image
from emgan_monai.visualize import onehot_to_rgb

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "bundles" / "drosophila_skip_patch" / "sample" / "masks"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (size, seed) in enumerate([(256, 1), (256, 2), (384, 3)]):
            stack = make_synthetic_stack(Path(tmp) / f"s{i}", n_sections=1, size=size, seed=seed)
            mito = np.asarray(Image.open(next((stack / "mitochondria").glob("*.png"))))
            membrane = np.asarray(Image.open(next((stack / "membranes").glob("*.png")))).view(np.uint8) > 0
            rgb = onehot_to_rgb(build_mask(mito, membrane))
            if size == 384:
                rgb = rgb[:320, :352]  # an odd, non-square size
            write_image(out / f"sample_mask_{i}.png", np.ascontiguousarray(rgb), overwrite=args.overwrite)
            print(out / f"sample_mask_{i}.png", rgb.shape)


if __name__ == "__main__":
    main()
