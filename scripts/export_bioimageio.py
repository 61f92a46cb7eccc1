#!/usr/bin/env python
"""Export a bundle's image-to-image network as a bioimage.io model package (zip, TorchScript weights).

Usage::

    python scripts/export_bioimageio.py bundles/drosophila_skip_patch --out dist/drosophila_skip_patch.bioimageio.zip \\
        [--test_input my_mask.png | --test_input input.npy] [--validate]

The test input is, in order: ``--test_input`` (an ``.npy`` network input ``(1, C, ...)``, or an image file that
goes through the bundle's ``preprocessing``), the first file of the bundle's embedded sample, or a reproducible
random tensor of the declared shape. The package holds the TorchScript weights (``monai.bundle ckpt_export``,
checked against eager), test input/output ``.npy``, a cover PNG, a README with a Validation section, the bundle's
metadata and data licence as attachments, and citations by DOI (training data, pix2pix, MONAI, any ``--cite``) so
that validation needs no network. The README's References section lists every entry of the bundle metadata's
``references`` (the seed paper included). ``--validate`` runs bioimage.io's own test
(``bioimageio.core.test_model``) on the package.
Needs ``pip install bioimageio.core==0.11.0 bioimageio.spec==0.5.12 'pydantic<2.13'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

#: Extra ``(text, doi)`` citations per bundle: the training data (with its licence) and the seed paper's sources.
BUNDLE_CITATIONS: dict[str, list[tuple[str, str]]] = {
    "drosophila_skip_patch": [
        (
            "Gerhard, Funke, Martel, Cardona, Fetter. Segmented anisotropic ssTEM dataset of neural tissue. figshare "
            "2013 (training data, licence CC BY-NC-SA 3.0; attached as data_license.txt)",
            "10.6084/m9.figshare.856713",
        ),
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="package zip (default dist/<name>.bioimageio.zip)")
    parser.add_argument("--test_input", type=Path, default=None, help=".npy network input or an image file")
    parser.add_argument("--config_file", type=Path, default=None, help="config with network_def/preprocessing")
    parser.add_argument("--validate", action="store_true", help="run bioimageio.core.test_model on the package")
    parser.add_argument(
        "--cite",
        action="append",
        default=[],
        metavar="TEXT|DOI",
        help="extra citation (repeatable), e.g. the seed paper: 'Authors. Title. 2024|<doi>'",
    )
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    extra = []
    for c in args.cite:
        text, sep, doi = c.rpartition("|")
        if not sep or not text.strip() or not doi.strip():
            parser.error(f"--cite expects 'TEXT|DOI', got {c!r}")
        extra.append((text.strip(), doi.strip()))

    from emgan_monai.export.bioimageio import export_bioimageio, test_input_from_file, validate_bioimageio
    from emgan_monai.export.bundle import bundle_parser

    name = args.bundle_dir.resolve().name
    out = args.out or Path("dist") / f"{name}.bioimageio.zip"
    x = None
    if args.test_input is not None:
        if args.test_input.suffix == ".npy":
            x = np.load(args.test_input)
        else:
            x = test_input_from_file(args.bundle_dir, args.test_input, args.config_file)
    else:
        try:
            items = bundle_parser(args.bundle_dir, args.config_file).get_parsed_content("datalist")
        except Exception:  # no datalist / no embedded sample: random input of the declared shape
            items = []
        if items:
            x = test_input_from_file(args.bundle_dir, items[0]["image"], args.config_file)
    try:
        path = export_bioimageio(
            args.bundle_dir,
            out,
            test_input=x,
            config_file=args.config_file,
            citations=[*BUNDLE_CITATIONS.get(name, []), *extra],
            overwrite=args.overwrite,
        )
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"export_bioimageio: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    if args.validate:
        summary = validate_bioimageio(path)
        print(summary.format())
        return 0 if summary.status == "passed" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
