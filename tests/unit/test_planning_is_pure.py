"""scheduler/planning imports nothing impure: the rule its README states."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import scheduler.planning

ALLOWED = {"numpy", "scipy", "common.slots", "common.days", "scheduler.planning"}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _allowed(name: str) -> bool:
    top = name.split(".")[0]
    if top in sys.stdlib_module_names and top != "logging":
        return True
    return any(name == root or name.startswith(root + ".") for root in ALLOWED)


def test_the_planning_package_imports_only_the_stdlib_numpy_scipy_and_pure_common() -> None:
    folder = Path(scheduler.planning.__file__).parent
    impure = {
        f"{path.name}: {name}"
        for path in folder.rglob("*.py")
        for name in _imports(path)
        if not _allowed(name)
    }
    assert not impure
