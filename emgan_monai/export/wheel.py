"""A wheel of ``emgan_monai`` for bundle zips, so that an unpacked bundle is usable without this repository.

A bundle's configs import ``emgan_monai`` (``required_packages_version`` names it), a package that no index serves.
:func:`build_package_wheel` builds ``emgan_monai-<version>-py3-none-any.whl`` from the source tree this module was
imported from (offline: ``pip wheel --no-deps --no-build-isolation --no-index`` on a temporary copy, so nothing is
downloaded and no ``build/`` folder is left in the repository); :func:`package_bundle
<emgan_monai.export.bundle.package_bundle>` puts it in ``<name>/wheels/`` and appends :func:`install_note` to the
packaged ``docs/README.md``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["build_package_wheel", "install_note", "package_source_root"]

_SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE")
_cache: dict[str, Path] = {}


def package_source_root() -> Path:
    """The folder holding ``pyproject.toml`` and the ``emgan_monai`` package this module belongs to.

    Raises
    ------
    FileNotFoundError
        If ``emgan_monai`` is installed from a wheel (no ``pyproject.toml`` beside it): build the wheel from a
        checkout of the repository instead.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "emgan_monai" / "__init__.py").is_file():
        raise FileNotFoundError(
            f"{root}: no pyproject.toml beside the emgan_monai package; build the wheel from a source checkout"
        )
    return root


def _source_digest(root: Path) -> str:
    h = hashlib.sha256()
    files = [root / f for f in _SOURCE_FILES if (root / f).is_file()]
    files += sorted(p for p in (root / "emgan_monai").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def build_package_wheel(out_dir: str | Path, source_root: str | Path | None = None) -> Path:
    """Build the ``emgan_monai`` wheel into ``out_dir`` and return its path.

    The build runs offline on a temporary copy of ``pyproject.toml``, ``README.md``, ``LICENSE`` and ``emgan_monai/``
    (caches, ``*.pyc`` left out). Within one process, an unchanged source tree is built once and copied afterwards.

    Parameters
    ----------
    out_dir
        Folder that receives ``emgan_monai-<version>-py3-none-any.whl`` (created if needed).
    source_root
        The repository root; default :func:`package_source_root`.

    Raises
    ------
    RuntimeError
        If ``pip wheel`` fails (its output is in the message).
    """
    root = Path(source_root) if source_root is not None else package_source_root()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digest = _source_digest(root)
    cached = _cache.get(digest)
    if cached is None or not cached.is_file():
        build_dir = Path(tempfile.mkdtemp(prefix="emgan_wheel_"))
        src = build_dir / "src"
        src.mkdir()
        for name in _SOURCE_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(
            root / "emgan_monai", src / "emgan_monai", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
        )
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(build_dir / "dist"),
            "--quiet",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted((build_dir / "dist").glob("emgan_monai-*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(
                f"building the emgan_monai wheel failed ({' '.join(cmd)}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
        cached = _cache[digest] = wheels[0]
    target = out_dir / cached.name
    shutil.copy2(cached, target)
    return target


def install_note(wheel_name: str, bundle_name: str) -> str:
    """Markdown appended to the packaged ``docs/README.md``: how to install the embedded wheel and run the bundle."""
    configs = "configs/inference.json"
    return f"""

## Installing from this zip

This archive carries the Python package the configs import, `wheels/{wheel_name}`; no package index serves it.
From the unpacked `{bundle_name}/` folder:

```bash
python -m venv .venv && . .venv/bin/activate
python -m pip install "torch>=2.8"             # first, to choose a CPU or CUDA build of PyTorch yourself
python -m pip install wheels/{wheel_name}      # emgan_monai and its dependencies (MONAI, ignite, tifffile, ...)
python -m monai.bundle run --config_file {configs} --bundle_root .
```

Where the dependencies are installed already (e.g. an environment with MONAI and PyTorch), install only the package:
`python -m pip install --no-deps wheels/{wheel_name}`. The inference config reads the embedded `sample/` unless
`--input_dir` says otherwise; override `--output_dir` and `--device` on the command line.
"""
