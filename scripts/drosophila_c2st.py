#!/usr/bin/env python
"""Classifier two-sample test of the shipped Drosophila generator against held-out real sections, with reference points.

Usage: ``python scripts/drosophila_c2st.py [--out c2st.json] [--steps 400] [--seeds 3] [--patch 64]``.

Runs the ``c2st`` step of the bundle's ``evaluate.json`` alone (the same code, data and settings: sections 0-15 train
the judge, sections 16-19 test it, 64-px patches at 256 px; rows :data:`emgan_monai.evaluation.drosophila.C2ST_SETS`,
built by :func:`emgan_monai.evaluation.drosophila.two_sample_sets`), without the rest of the evaluation. Any other key
of ``evaluate.json`` can be set with ``--set key=value`` (a JSON value: ``--set num_generated=32``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from monai.bundle import ConfigParser

from emgan_monai.bundle_utils import config_files

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "drosophila_skip_patch"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", default=None, help="default: evaluate.json's dataset_dir")
    parser.add_argument("--out", default="c2st.json")
    parser.add_argument("--steps", type=int, default=None, help="c2st_steps (default: evaluate.json's)")
    parser.add_argument("--seeds", type=int, default=None, help="c2st_seeds (default: evaluate.json's)")
    parser.add_argument("--patch", type=int, default=None, help="c2st_patch (default: evaluate.json's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another evaluate.json key")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides = {"bundle_root": str(BUNDLE)}
    for key, value in zip(
        ("dataset_dir", "c2st_steps", "c2st_seeds", "c2st_patch"),
        (args.dataset_dir, args.steps, args.seeds, args.patch),
    ):
        if value is not None:
            overrides[key] = value
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value)
    cfg = ConfigParser()
    cfg.read_config(config_files(BUNDLE, "inference.json", "evaluate.json"))
    cfg.update(overrides)
    cfg.get_parsed_content("load_weights")
    table = cfg.get_parsed_content("c2st")
    Path(args.out).write_text(json.dumps(table, indent=2))
    for name, row in table["rows"].items():
        print(f"{name}: accuracy {row['accuracy']:.3f} (sd {row['accuracy_sd']:.3f}, seeds {row['per_seed']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
