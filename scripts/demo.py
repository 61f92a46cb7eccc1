#!/usr/bin/env python
"""Run every bundle's inference with its shipped weights and collect the outputs in one folder.

Usage: ``python scripts/demo.py --output_dir demo_output [--overwrite]`` (what ``make demo`` runs).
Each bundle runs through the public command ``python -m monai.bundle run --config_file <bundle>/configs/<cfg>``
(every inference config stands alone), exactly as a user would, on CPU unless a GPU is present.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# bundle -> inference runs of the demo: (config, output folder under <output_dir>/<bundle>, extra keys; "{models}" is the
# bundle's models folder)
DEMOS: dict[str, list[tuple[str, str, list[str]]]] = {
    "drosophila_skip_patch": [("inference.json", "inference", []), ("inference_mask2em.json", "inference_mask2em", [])],
    "confocal_enhance": [("inference.json", "inference", [])],
    "cryoet_gan": [
        ("inference.json", "inference", []),
        (
            "inference.json",
            "inference_cyclegan",
            ["--generator_kind", "physics_residual", "--model_path", "{models}/g_ds_physics_cyclegan.pt"],
        ),
    ],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing demo output folder")
    args = parser.parse_args()
    out = Path(args.output_dir).resolve()
    failures = []
    for bundle, configs in DEMOS.items():
        root = REPO / "bundles" / bundle
        if not (root / "configs" / "metadata.json").is_file():
            print(f"[demo] {bundle}: not present, skipped")
            continue
        for cfg, name, extra in configs:
            target = out / bundle / name
            if target.exists():
                if not args.overwrite:
                    print(f"[demo] {target} exists: keeping it (pass --overwrite to regenerate)")
                    continue
                shutil.rmtree(target)
            target.mkdir(parents=True)
            cmd = [
                sys.executable,
                "-m",
                "monai.bundle",
                "run",
                "--config_file",
                str(root / "configs" / cfg),
                "--bundle_root",
                str(root),
                "--output_dir",
                str(target),
                *(a.format(models=root / "models") for a in extra),
            ]
            print("[demo] " + " ".join(cmd), flush=True)
            t0 = time.time()
            rc = subprocess.call(cmd, cwd=REPO)
            print(f"[demo] {bundle}/{name}: exit {rc} in {time.time() - t0:.1f} s -> {target}", flush=True)
            if rc != 0:
                failures.append(f"{bundle}/{name}")
    if failures:
        print("[demo] FAILED: " + ", ".join(failures))
        return 1
    print(f"[demo] done: open the PNG files under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
