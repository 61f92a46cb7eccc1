#!/usr/bin/env python
"""Start the emgan_monai MONAI Label server, bound to 127.0.0.1 unless ``--host`` says otherwise.

Usage::

    python apps/emgan_label/serve.py --studies my_images/ [--port 8000] [--host 127.0.0.1] [--models all]

It runs ``monailabel start_server --app <this folder> --studies ... --conf models ... --host ... --port ...``
(``monailabel`` itself binds to 0.0.0.0 by default, i.e. every interface). Extra arguments are passed on.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", required=True, help="folder of images (TIFF, PNG, NIfTI, MRC)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--models", default="all", help="'all' or comma-separated model names")
    parser.add_argument("--bundles", default=None, help="folder of the bundles (default: the repository's bundles/)")
    args, rest = parser.parse_known_args(argv)
    exe = shutil.which("monailabel")
    if exe is None:
        print("serve.py: 'monailabel' not found; install the extra: pip install -e '.[label]'", file=sys.stderr)
        return 1
    cmd = [
        exe,
        "start_server",
        "--app",
        str(Path(__file__).resolve().parent),
        "--studies",
        args.studies,
        "--conf",
        "models",
        args.models,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    if args.bundles:
        cmd += ["--conf", "bundles", args.bundles]
    os.execv(exe, cmd + rest)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
