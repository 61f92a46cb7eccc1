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
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emgan_monai.data.specimens import procedural_nuclei
from emgan_monai.io import write_image
from emgan_monai.physics.optics import confocal_psf, widefield_psf
from emgan_monai.physics.pair_synthesis import synthesize_pair

REPO = Path(__file__).resolve().parents[1]


def make_sample(
    out_dir: str | os.PathLike,
    shape_zyx: Sequence[int] = (31, 200, 264),
    photons: float = 300.0,
    na: float = 1.2,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, str]:
    """Render one wide-field plane (uint16) of :func:`procedural_nuclei` and its noise-free confocal reference.

    Writes ``widefield_sample.tif`` (uint16 ADU, the inference input) and ``reference/confocal_sample.tif``
    (float32, the noise-free confocal image of the same plane, for a visual check), both with 0.26 um pixels.

    Returns
    -------
    dict[str, str]
        ``{"widefield": path, "confocal": path}``.
    """
    out = Path(out_dir)
    spacing = (0.29, 0.26, 0.26)
    volume = procedural_nuclei(shape_zyx, spacing_zyx_um=spacing, seed=seed)
    depth = volume.shape[0]
    psf_shape = (2 * depth - 1, 63, 63)
    wf, conf = synthesize_pair(
        volume,
        depth // 2,
        widefield_psf(psf_shape, spacing, na=na),
        confocal_psf(psf_shape, spacing, na=na),
        photons=photons,
        background=10.0,
        read_noise=2.0,
        offset=100.0,
        rng=seed,
    )
    paths = {"widefield": out / "widefield_sample.tif", "confocal": out / "reference" / "confocal_sample.tif"}
    paths["confocal"].parent.mkdir(parents=True, exist_ok=True)
    wf16 = np.clip(np.rint(wf), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    write_image(paths["widefield"], wf16, voxel_size=spacing[1:], overwrite=overwrite)
    write_image(paths["confocal"], conf.astype(np.float32), voxel_size=spacing[1:], overwrite=overwrite)
    return {k: str(v) for k, v in paths.items()}


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
