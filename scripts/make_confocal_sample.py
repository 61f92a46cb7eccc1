#!/usr/bin/env python
"""Render the synthetic wide-field sample shipped with ``bundles/confocal_enhance`` (its default inference input).

The object is procedural (textured ellipsoidal nuclei, :func:`emgan_monai.data.specimens.procedural_nuclei`), not
real data; the wide-field image is simulated with the bundle's physics (Born & Wolf PSF, NA 1.2 water, 0.26 um pixels,
300 photons at the brightest pixel, background 10 e-, read noise 2 e-, offset 100 ADU) and written as 16-bit TIFF.

Usage::

    python scripts/make_confocal_sample.py [--out_dir bundles/confocal_enhance/sample] [--seed 0] [--overwrite]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emgan_monai.data.confocal_pairs import make_sample

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default=str(REPO / "bundles" / "confocal_enhance" / "sample"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photons", type=float, default=300.0)
    parser.add_argument("--overwrite", action="store_true", help="replace existing sample files")
    args = parser.parse_args()
    paths = make_sample(args.out_dir, photons=args.photons, seed=args.seed, overwrite=args.overwrite)
    for role, path in paths.items():
        print(f"{role}: {path}")


if __name__ == "__main__":
    main()
