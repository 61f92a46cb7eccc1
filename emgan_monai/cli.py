"""``emgan-monai``: the package's command line, a checked front door to the bundles' MONAI workflows.

::

    emgan-monai list                                   # bundles and their configs (standalone / overlay)
    emgan-monai keys drosophila_skip_patch inference_mask2em
    emgan-monai run drosophila_skip_patch inference_mask2em --input_dir masks/ --output_dir out/
    emgan-monai run cryoet_gan train evaluate --output_dir eval/   # a base config, then its overlays

``run`` refuses a key that none of the named configs defines, with a "did you mean" suggestion, before any work,
then runs the standard MONAI bundle workflow (``monai.bundle.run``, the same as ``python -m monai.bundle run
--config_file ... --key value``). Values are read as Python literals (``[4, 8]``, ``1e-3``, ``None``); ``true`` /
``false`` are booleans. A failure the package knows (:mod:`emgan_monai.errors`: unreadable or unusable input, a
missing file, an unsafe checkpoint) or an ``OSError`` is printed as one line, ``error: <file>: <problem>``, with exit
status 2; ``--verbose`` shows the traceback.

Keys and their one-line descriptions come from the configs: a top-level key is user-facing unless it is a component
(a dict or list with ``_target_``), a workflow list (``initialize``, ``run``, ``finalize``) or private (``_...``);
its description is the config's ``_comment_<key>`` when there is one. Keys computed from other keys (``$...@...``
expressions such as datalists) are left out unless they name a file or folder (``*_dir``, ``*_path``, ...).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main", "find_bundles", "config_path", "is_standalone", "user_keys", "parse_overrides"]

_REPO = Path(__file__).resolve().parents[1]
_WORKFLOW_KEYS = {"imports", "initialize", "run", "finalize"}
#: keys computed from others that are still a user's to set (where files go or come from)
_PATH_SUFFIXES = ("_dir", "_path", "_file", "_weights", "_ckpt")


class UsageError(ValueError):
    """A command line the tool refuses (unknown bundle, config or key)."""


def find_bundles() -> dict[str, Path]:
    """Bundle name -> folder, from ``./bundles``, ``.`` (inside a bundle) and the repository the package came from."""
    out: dict[str, Path] = {}
    cwd = Path.cwd()
    for root in (cwd / "bundles", _REPO / "bundles"):
        if root.is_dir():
            for b in sorted(root.iterdir()):
                if (b / "configs" / "metadata.json").is_file():
                    out.setdefault(b.name, b)
    if (cwd / "configs" / "metadata.json").is_file():
        out.setdefault(cwd.name, cwd)
    return out


def _bundle(name: str) -> Path:
    bundles = find_bundles()
    if name in bundles:
        return bundles[name]
    close = difflib.get_close_matches(name, list(bundles), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(bundles) or 'none found'}"
    raise UsageError(f"unknown bundle '{name}'{hint}")


def _configs(bundle: Path) -> list[Path]:
    return sorted(p for p in (bundle / "configs").glob("*.json") if p.name != "metadata.json")


def config_path(bundle: Path, name: str) -> Path:
    """``configs/<name>.json`` of ``bundle`` (``name`` with or without ``.json``)."""
    fname = name if name.endswith(".json") else f"{name}.json"
    path = bundle / "configs" / fname
    if path.is_file() and fname != "metadata.json":
        return path
    names = [p.stem for p in _configs(bundle)]
    close = difflib.get_close_matches(Path(fname).stem, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; its configs: {', '.join(names)}"
    raise UsageError(f"{bundle.name} has no config '{name}'{hint}")


def _load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_standalone(path: Path) -> bool:
    """A config that runs alone (it defines ``bundle_root``); otherwise an overlay merged after a base config."""
    return "bundle_root" in _load(path)


def _is_component(value: Any) -> bool:
    if isinstance(value, dict):
        return "_target_" in value or any(_is_component(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_component(v) for v in value)
    return False


def user_keys(paths: list[Path]) -> dict[str, tuple[Any, str]]:
    """Key -> (default, description) of the user-facing keys of ``paths`` merged in order (later files win)."""
    merged: dict[str, Any] = {}
    for p in paths:
        merged.update(_load(p))
    out = {}
    for key, value in merged.items():
        if key.startswith(("_", "+")) or key in _WORKFLOW_KEYS or "#" in key or _is_component(value):
            continue
        if isinstance(value, str) and value.startswith("$") and "@" in value and not key.endswith(_PATH_SUFFIXES):
            continue  # derived from other keys (datalists, networks moved to the device): set those keys instead
        out[key] = (value, str(merged.get(f"_comment_{key}", "")))
    return out


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """``["--a", "1", "--b", "x"]`` -> ``{"a": 1, "b": "x"}`` (also ``--a=1``); values as Python literals, ``true`` /
    ``false`` / ``null`` as JSON spells them, anything else as a string (``$`` expressions stay strings)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) == 2:
            raise UsageError(f"expected --key value, got '{tok}'")
        if "=" in tok:
            key, raw = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise UsageError(f"--{tok[2:]} needs a value")
            key, raw = tok[2:], tokens[i + 1]
            i += 2
        out[key] = _value(raw)
    return out


def _value(raw: str) -> Any:
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none"):
        return None
    if raw.startswith("$") or raw.startswith("@"):
        return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _check_keys(paths: list[Path], overrides: dict[str, Any]) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_files([str(p) for p in paths]))
    config: dict[str, Any] = parser.get()  # the whole config (MONAI annotates ``parser.config`` as a ConfigItem)
    names = [k for k in config if not k.startswith("_")]
    for key in overrides:
        try:
            parser[key]
        except (KeyError, IndexError, ValueError):
            close = difflib.get_close_matches(key.split("#")[0], names, n=1, cutoff=0.5)
            hint = f"; did you mean '--{close[0]}'?" if close else ""
            configs = "+".join(p.name for p in paths)
            raise UsageError(
                f"unknown key '--{key}' for {paths[0].parents[1].name}/{configs}{hint} "
                f"(list them with: emgan-monai keys {paths[0].parents[1].name} "
                f"{' '.join(p.stem for p in paths)})"
            ) from None


def _one_line(exc: BaseException) -> str | None:
    """The message of the first package / OS error in ``exc``'s cause chain (MONAI wraps errors raised while a config
    expression is evaluated), or ``None`` when the chain holds none."""
    from emgan_monai.errors import CheckpointError, DataError, UnsafePathError

    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (DataError, CheckpointError, UnsafePathError, OSError)):
            return str(e)
        e = e.__cause__ or e.__context__
    return None


def _cmd_list(_: argparse.Namespace) -> int:
    for name, path in find_bundles().items():
        print(f"{name}  ({path})")
        for cfg in _configs(path):
            kind = "standalone" if is_standalone(cfg) else "overlay: name its base config first"
            print(f"  {cfg.stem:<24} {kind}")
    return 0


def _paths(args: argparse.Namespace) -> list[Path]:
    bundle = _bundle(args.bundle)
    paths = [config_path(bundle, c) for c in args.configs]
    if not is_standalone(paths[0]):
        bases = [p.stem for p in _configs(bundle) if is_standalone(p)]
        raise UsageError(
            f"{bundle.name}/{paths[0].name} is an overlay: name its base config first "
            f"(one of {', '.join(bases)}), e.g. 'emgan-monai run {bundle.name} {bases[0]} "
            f"{paths[0].stem}'"
        )
    return paths


def _cmd_keys(args: argparse.Namespace) -> int:
    for key, (default, doc) in user_keys(_paths(args)).items():
        shown = json.dumps(default) if not isinstance(default, str) else default
        print(f"--{key:<22} {shown}" + (f"\n    {doc}" if doc else ""))
    return 0


def _cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from monai.bundle import run

    paths = _paths(args)
    overrides = parse_overrides(extra)
    _check_keys(paths, overrides)
    # MONAI warns on every config it parses that configs run code; these are the project's own bundles
    warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
    overrides.setdefault("bundle_root", str(paths[0].parents[1]))
    run(config_file=[str(p) for p in paths], **overrides)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emgan-monai",
        description="Run the emgan_monai bundles' MONAI workflows with checked options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'emgan-monai list' to see the bundles, 'emgan-monai keys BUNDLE CONFIG' for the keys a run takes.",
    )
    parser.add_argument("--verbose", action="store_true", help="show the full traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="bundles and their configs")
    for name, text in (
        ("keys", "the keys a user may set, with defaults and descriptions"),
        ("run", "run a config (then overlays) with --key value overrides"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("bundle", help="bundle name (see 'emgan-monai list')")
        p.add_argument("configs", nargs="+", help="config name(s) without .json: a standalone config, then overlays")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``emgan-monai``; returns the exit status (2 for a refused command or a known failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # overrides (--key value) follow the config names; argparse must not see them
    first = next((i for i, t in enumerate(argv) if not t.startswith("-")), 0)
    split = len(argv)
    if argv[first : first + 1] == ["run"]:
        split = next(
            (i for i, t in enumerate(argv) if i > first and t.startswith("--") and t not in ("--verbose", "--help")),
            len(argv),
        )
    args = _parser().parse_args(argv[:split])
    extra = argv[split:]
    if "--verbose" in extra:
        extra.remove("--verbose")
        args.verbose = True
    try:
        if args.command == "list":
            return _cmd_list(args)
        if args.command == "keys":
            return _cmd_keys(args)
        return _cmd_run(args, extra)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the one place that turns failures into one line
        message = _one_line(e)
        if message is None or args.verbose:
            traceback.print_exc()
        if message is None:
            return 1
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
