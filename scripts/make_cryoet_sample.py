#!/usr/bin/env python
"""Build the embedded sample of the ``cryoet_gan`` bundle: small density maps from CC0 PDB models.

``python scripts/make_cryoet_sample.py [--pdb_dir DIR] [--out_dir bundles/cryoet_gan/sample]`` writes, for each model,
``<pdb_id>.mrc``: a noise-free density map (Gaussian atom model,
:func:`emgan_monai.physics.atomic_models.density_from_pdb`) at 10 A/voxel, resolution 20 A, in a 32^3 box, float32,
voxel size in the header. The default models are 1BXN (rubisco) and 3J9I (20S proteasome) from
``$EMGAN_DATA/cryoet/pdb`` (or ``../shared/data/cryoet/pdb``); PDB entries are CC0 and can be downloaded from https://files.rcsb.org/download/<ID>.pdb.
The bundle's inference resamples them to its own voxel size.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emgan_monai.bundle_utils import data_dir
from emgan_monai.io import write_image
from emgan_monai.physics.atomic_models import density_from_pdb

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdb_dir", default=str(Path(data_dir("cryoet")) / "pdb"))
    parser.add_argument("--ids", nargs="+", default=["1bxn", "3j9i"])
    parser.add_argument("--out_dir", default=str(REPO / "bundles" / "cryoet_gan" / "sample"))
    parser.add_argument("--voxel_size", type=float, default=10.0)
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for pdb_id in args.ids:
        pdb = Path(args.pdb_dir) / f"{pdb_id}.pdb"
        density, vs = density_from_pdb(pdb, voxel_size=args.voxel_size, resolution=2 * args.voxel_size, box=args.box)
        write_image(out / f"{pdb_id}.mrc", density / density.max(), voxel_size=vs, overwrite=args.overwrite)
        print(f"{pdb} -> {out / f'{pdb_id}.mrc'} {density.shape} at {vs} A")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
