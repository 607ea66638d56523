"""The shape DESIGN.md gives the code: layers that import downward only, a planner package that
imports nothing impure, and no function too long to read in one sitting."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Lowest first; a module may import its own layer or a lower one. The entry package sits on
#: top and nothing imports it.
LAYERS = ("common", "scheduler", "workers", "api", "scheduled_images")
PLANNING = ROOT / "scheduler" / "planning"
#: What the planner's mathematics may import besides the standard library and itself.
PLANNING_MAY_IMPORT = ("numpy", "scipy", "common.slots", "common.days")
LONGEST_FUNCTION = 80


def _modules(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module the file imports, at any depth (function-local ones too), with its line."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            yield node.lineno, base
            # `from common import slots` imports the module common.slots.
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _layer(module: str) -> int | None:
    top = module.split(".", 1)[0]
    return LAYERS.index(top) if top in LAYERS else None


def test_layers_import_downward_only() -> None:
    upward = []
    for path in _modules(*LAYERS):
        own = _layer(path.relative_to(ROOT).parts[0])
        assert own is not None
        for line, module in _imports(path):
            layer = _layer(module)
            if layer is not None and layer > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, "modules importing a layer above their own:\n" + "\n".join(upward)


def test_the_planning_package_imports_nothing_impure() -> None:
    if not PLANNING.is_dir():
        pytest.fail("scheduler/planning/ is missing")
    impure = []
    for path in PLANNING.rglob("*.py"):
        for line, module in _imports(path):
            top = module.split(".", 1)[0]
            allowed = (
                # logging is the standard library's, but its set-up is process-wide state.
                (top in sys.stdlib_module_names and top != "logging")
                or module.startswith("scheduler.planning")
                or any(module == ok or module.startswith(ok + ".") for ok in PLANNING_MAY_IMPORT)
                or _is_name_from(module, PLANNING_MAY_IMPORT)
            )
            if not allowed:
                impure.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not impure, "scheduler/planning/ must stay pure:\n" + "\n".join(impure)


def _is_name_from(module: str, allowed: tuple[str, ...]) -> bool:
    """`from numpy import ndarray` also yields numpy.ndarray, a name of an allowed module."""
    parent = module.rsplit(".", 1)[0]
    return any(parent == ok or parent.startswith(ok + ".") for ok in allowed)


def test_no_function_is_longer_than_a_screenful() -> None:
    long = []
    for path in _modules(*LAYERS, "tests"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length}")
    assert not long, f"functions over {LONGEST_FUNCTION} lines:\n" + "\n".join(long)
