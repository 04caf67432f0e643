"""The core is a stack: every module imports only modules below it (docs/architecture.md, "The stack").

The import graph is computed from the source (every ``import`` and ``from ... import``, also inside
functions and under ``TYPE_CHECKING``); the stack is read from the architecture page, so the page and
the rule cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

import cratedb_airflow_export
from tests.helpers import REPO

PACKAGE = Path(cratedb_airflow_export.__file__).parent
NAME = "cratedb_airflow_export"
ARCHITECTURE = REPO / "docs" / "architecture.md"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)  # relative to the package: "" is the package itself


def imports_of(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports (``from pkg.a import b`` counts as ``a.b`` when
    ``b`` is a module, else as ``a``)."""
    here = module_name(path, root)
    package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = [p for p in package[: len(package) - node.level + 1] if p]
                absolute = ".".join([NAME, *base, *([node.module] if node.module else [])])
            else:
                absolute = node.module or ""
            targets = [f"{absolute}.{alias.name}" for alias in node.names] + [absolute]
        else:
            continue
        for target in targets:
            if target == NAME or target.startswith(NAME + "."):
                relative = target[len(NAME) + 1 :]
                if relative in modules:
                    found.add(relative)
                    if isinstance(node, ast.ImportFrom):
                        break  # the most specific module named: ``a.b`` when b is a module, else ``a``
    found.discard(here)
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, root, modules) for name, path in paths.items()}


def read_stack(text: str) -> list[list[str]]:
    """The stack block of the architecture page: its lines, top first, each the modules named on it."""
    match = re.search(r"<!-- stack:[^>]*-->\s*```text\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md has no stack block"
    layers = []
    for line in match.group(1).splitlines():
        names = re.split(r"\s{3,}", line.strip())[0].split()  # the modules, then (after 3 spaces) a comment
        if names:
            layers.append(names)
    return layers


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(graph: dict[str, set[str]], layers: list[list[str]]) -> list[str]:
    """Everything that breaks the stack: modules not on it (or on it twice, or gone), imports of a
    module on the same line or above, cycles."""
    level = {}
    found = []
    for height, names in enumerate(reversed(layers)):
        for name in names:
            if name in level:
                found.append(f"{name} is on the stack twice")
            level[name] = height
    # every module has a place, but for the package itself and a subpackage's __init__ that imports nothing
    packages = {name for name in graph if any(other.startswith(name + ".") for other in graph)}
    placed = {name for name, deps in graph.items() if name and (deps or name not in packages)}
    for name in sorted(placed - set(level)):
        found.append(f"{name} is not on the stack in docs/architecture.md")
    for name in sorted(set(level) - set(graph)):
        found.append(f"{name} is on the stack but is no module")
    for name, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if name in level and dep in level and level[dep] >= level[name]:
                where = "on the same line as" if level[dep] == level[name] else "above"
                found.append(f"{name} imports {dep}, which is {where} it")
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return found


def test_the_package_is_a_stack():
    graph = import_graph(PACKAGE)
    assert problems(graph, read_stack(ARCHITECTURE.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(
    ("module", "line", "expected", "in_a_cycle"),
    [
        # storage would import the configuration (above it), which imports storage: a cycle
        (
            "storage.py",
            "from cratedb_airflow_export.config import TableExport\n",
            ["storage imports config, which is above it"],
            {"config", "storage"},
        ),
        # inside a function, as a lazy import: still an edge (export is above everything windows is under)
        (
            "windows.py",
            "def _late():\n    from cratedb_airflow_export import export  # noqa\n",
            ["windows imports export, which is above it"],
            {"windows", "export"},
        ),
        # under TYPE_CHECKING, and a module on the same line: no cycle, still refused
        (
            "layout.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cratedb_airflow_export import sql\n",
            ["layout imports sql, which is on the same line as it"],
            set(),
        ),
    ],
)
def test_the_check_fails_on_an_upward_import_or_a_cycle(tmp_path, module, line, expected, in_a_cycle):
    """The check itself, on a copy of the package with one deliberate import added."""
    copy = tmp_path / NAME
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line, encoding="utf-8")
    found = problems(import_graph(copy), read_stack(ARCHITECTURE.read_text(encoding="utf-8")))
    assert [p for p in found if not p.startswith("import cycle")] == expected
    cycle_lines = [p for p in found if p.startswith("import cycle")]
    if in_a_cycle:
        (cycle,) = cycle_lines
        assert in_a_cycle <= set(cycle.removeprefix("import cycle: ").split(" -> "))
    else:
        assert cycle_lines == []


def test_a_new_module_must_take_a_place(tmp_path):
    copy = tmp_path / NAME
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "helpers.py").write_text("from cratedb_airflow_export import errors\n", encoding="utf-8")
    found = problems(import_graph(copy), read_stack(ARCHITECTURE.read_text(encoding="utf-8")))
    assert found == ["helpers is not on the stack in docs/architecture.md"]
