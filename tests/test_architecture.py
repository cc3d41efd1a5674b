"""Specifications of the code's shape: imports point one way, and no module holds two concepts."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gateway", "providers")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(path: Path, known: set[str]) -> set[str]:
    """The project's modules `path` imports, anywhere in it: in a function, or for type checking only."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in known}


def unit(module: str) -> str:
    """What a reader sees in the tree: `gateway.routing` for its modules, `gateway.proxy` for one module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "gateway" else parts[0]


def graph(of_units: bool) -> dict[str, set[str]]:
    found = modules()
    edges: dict[str, set[str]] = {}
    for name, path in found.items():
        source = unit(name) if of_units else name
        targets = {unit(t) if of_units else t for t in imported(path, set(found))}
        edges.setdefault(source, set()).update(targets - {source})
    return edges


def test_no_module_imports_one_that_imports_it_back() -> None:
    try:
        TopologicalSorter(graph(of_units=False)).prepare()
    except CycleError as error:
        pytest.fail(f"import cycle between modules: {' -> '.join(error.args[1])}")


def test_packages_and_top_level_modules_depend_on_each_other_one_way_only() -> None:
    try:
        TopologicalSorter(graph(of_units=True)).prepare()
    except CycleError as error:
        pytest.fail(f"import cycle between packages: {' -> '.join(error.args[1])}")


def test_the_request_path_never_imports_the_cli_or_the_admin_api() -> None:
    edges = graph(of_units=True)
    for name in ("gateway.proxy", "gateway.upstream", "gateway.accounting", "gateway.routing", "gateway.store"):
        assert not edges[name] & {"gateway.cli", "gateway.admin", "gateway.app"}, name


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_is_over_the_size_of_one_concept(module: str) -> None:
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it along the request path"


def test_the_cycle_check_sees_a_cycle() -> None:
    with pytest.raises(CycleError):
        TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()
