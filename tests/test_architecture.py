"""The house rules of the package (docs/ARCHITECTURE.md): imports run only downward, every room on its floor.

Every ``import`` of the package's own modules is read from the source (module level, function level and
``TYPE_CHECKING`` blocks alike); a module may import its own room or a room on a lower floor, never one on its own
floor or above. A new room must be given a floor here, with a line in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emgan_monai"

#: room -> floor; a room imports only rooms on lower floors (and itself)
FLOORS = {
    "errors": 0,
    "bundle_utils": 0,
    "visualize": 0,
    "physics": 1,
    "losses": 1,
    "io": 2,  # reads atomic models into density maps through physics
    "metrics": 3,
    "transforms": 3,
    "networks": 4,
    "data": 5,
    "engines": 5,
    "inferers": 5,
    "handlers": 6,
    "evaluation": 7,
    "export": 7,
    "cli": 8,
    "__init__": 9,  # the package's lazy attribute access to its sub-packages
}


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "emgan_monai":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every package import in ``path`` (relative imports resolved)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(rel.parts)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                out.append((".".join(base + ([node.module] if node.module else [])), node.lineno))
            elif node.module:
                out.append((node.module, node.lineno))
                # ``from emgan_monai import transforms`` names a room, too
                if node.module == "emgan_monai":
                    out += [(f"emgan_monai.{a.name}", node.lineno) for a in node.names]
    return out


def _violations() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        own = _room(".".join(p for p in rel.parts if p != "__init__") or "emgan_monai")
        for target, line in _imports(path):
            room = _room(target)
            if room is None or room == own or room == "__init__":
                continue
            if room not in FLOORS or own not in FLOORS:
                bad.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: room '{room if room not in FLOORS else own}' "
                    "has no floor in tests/test_architecture.py"
                )
            elif FLOORS[room] >= FLOORS[own]:
                bad.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {own} (floor {FLOORS[own]}) imports {target} "
                    f"({room}, floor {FLOORS[room]})"
                )
    return bad


def test_every_room_has_a_floor():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert rooms <= set(FLOORS), sorted(rooms - set(FLOORS))


def test_imports_run_only_downward():
    bad = _violations()
    assert not bad, "imports that run up (or across) the floors:\n" + "\n".join(bad)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule bites: a physics module importing data is reported."""
    fake = PACKAGE / "physics" / "_upward_probe_for_test.py"
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: iter([fake]) if self == PACKAGE else iter([]))
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: "from emgan_monai.data import cryoet\n")
    assert _violations() == [
        "emgan_monai/physics/_upward_probe_for_test.py:1: physics (floor 1) imports emgan_monai.data (data, floor 5)"
    ]


def test_inferers_hold_inferers_only():
    import monai.inferers

    import emgan_monai.inferers as inferers

    for name in inferers.__all__:
        obj = getattr(inferers, name)
        assert inspect.isclass(obj) and issubclass(obj, monai.inferers.Inferer), name
