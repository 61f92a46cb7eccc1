#!/usr/bin/env python
"""Package a bundle model-zoo style: ``<out>/<name>_v<version>.zip`` + ``large_files.yml`` with SHA-256.

Usage::

    python scripts/package_bundle.py bundles/drosophila_skip_patch --out dist/
    python scripts/package_bundle.py bundles/drosophila_skip_patch --out dist/ --base_url https://host/path --overwrite

The archive holds ``<name>/configs``, ``models`` (``model.pt`` and a fresh ``model.ts`` exported through
``monai.bundle.ckpt_export`` and checked against the eager network), ``docs`` (README, data licence),
``sample`` (the embedded inference input, when the bundle has one), ``wheels`` (a wheel of ``emgan_monai`` built
from this checkout, unless ``--no_wheel``), ``LICENSE`` and ``large_files.yml``. Unpack it anywhere,
``pip install <dir>/wheels/emgan_monai-*.whl`` (the packaged README says how) and run
``python -m monai.bundle run --config_file <dir>/configs/inference.json --bundle_root <dir>``. Full training checkpoints
and ablation pictures, which no config of the user-facing zip loads, go to ``<name>_v<version>_training_state.zip``
beside it (unpack it over the bundle folder to resume training). The bundle folder itself is not modified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emgan_monai.export.bundle import MetadataError, package_bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle_dir", type=Path, help="bundle folder (with configs/metadata.json)")
    parser.add_argument("--out", type=Path, default=Path("dist"), help="output folder (default dist/)")
    parser.add_argument(
        "--base_url",
        default=None,
        help="where the model files will be hosted; adds url: <base_url>/<path> to large_files.yml",
    )
    parser.add_argument("--no_torchscript", action="store_true", help="do not export models/model.ts")
    parser.add_argument("--no_wheel", action="store_true", help="do not embed a wheel of emgan_monai")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing archive")
    args = parser.parse_args(argv)
    try:
        res = package_bundle(
            args.bundle_dir,
            args.out,
            torchscript=not args.no_torchscript,
            base_url=args.base_url,
            overwrite=args.overwrite,
            wheel=not args.no_wheel,
        )
    except (FileNotFoundError, FileExistsError, MetadataError, RuntimeError) as e:
        print(f"package_bundle: {e}", file=sys.stderr)
        return 1
    print(f"wrote {res.zip_path} ({len(res.members)} files)")
    if res.training_state is not None:
        print(f"wrote {res.training_state} (training checkpoints, ablation pictures)")
    if res.wheel is not None:
        print(f"embedded {res.wheel}")
    if res.torchscript_max_abs_diff is not None:
        print(f"models/model.ts: max |TorchScript - eager| = {res.torchscript_max_abs_diff:.3g}")
    for e in res.large_files:
        print(f"  {e['path']}  sha256 {e['hash_val']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
