"""The shape of the product: a core that never imports Airflow, an installed wheel and a Docker
image without development tools or tests."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cratedb_airflow_export
from tests.helpers import REPO, last_line_of_python

PACKAGE = Path(cratedb_airflow_export.__file__).parent


def core_modules() -> list[str]:
    """Every module of the package outside its Airflow edge (``cratedb_airflow_export.edge``)."""
    names = [
        info.name
        for info in pkgutil.walk_packages([str(PACKAGE)], prefix="cratedb_airflow_export.")
        if not info.name.startswith("cratedb_airflow_export.edge")
    ]
    assert len(names) > 20, names  # the walk really found the core
    return ["cratedb_airflow_export", *names]


def test_importing_the_core_imports_no_airflow():
    modules = core_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))"
    )
    assert last_line_of_python(code) == "[]"


def test_the_import_check_can_fail():
    """The same check sees Airflow when an edge module is imported."""
    code = "import sys, cratedb_airflow_export.edge.operators\nprint('airflow' in sys.modules)"
    assert last_line_of_python(code) == "True"


def test_only_the_edge_imports_airflow():
    """Also lazily, inside functions: no core module imports Airflow; one reaches for the edge: the
    command line, for connections stored in Airflow when Airflow is installed."""
    direct, via_edge = [], []
    for path in PACKAGE.rglob("*.py"):
        if "edge" in path.relative_to(PACKAGE).parts[:-1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            direct += [path.name for n in names if n.split(".")[0] == "airflow"]
            via_edge += [path.name for n in names if n.startswith("cratedb_airflow_export.edge")]
    assert direct == []
    assert via_edge == ["cli.py"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("cratedb_airflow_export-*.whl")
    return built


def test_the_wheel_holds_the_package_and_no_development_tools(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = f"{wheel.stem.rsplit('-', 3)[0]}.dist-info"
    assert {name.split("/")[0] for name in names} == {"cratedb_airflow_export", dist_info}
    assert "cratedb_airflow_export/edge/operators.py" in names and "cratedb_airflow_export/export.py" in names
    assert not [n for n in names if "devstack" in n or "devtools" in n or "/tests/" in n or "conftest" in n]


def test_the_docker_image_gets_no_development_tools_or_tests():
    """Astro's Runtime image copies the project folder into the image, minus .dockerignore."""
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {"devtools", "tests", ".venv", ".env", ".git"} <= ignored
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "devtools" not in dockerfile and "tests" not in dockerfile


def runtime_closure() -> set[str]:
    """Every distribution the installed package needs at run time (extras left out), by name."""
    import re
    from importlib.metadata import PackageNotFoundError, requires

    seen: set[str] = set()
    todo = ["cratedb-airflow-export"]
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo += [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in needs if "extra ==" not in r]  # type: ignore[union-attr]
    return seen


def test_numpy_and_pandas_are_development_dependencies_only():
    """make bench measures our tools with numpy and pandas unimportable, as in a user's install
    (devtools/bench.py DEV_ONLY): that holds only while nothing we depend on needs them."""
    from devtools.bench import DEV_ONLY

    closure = runtime_closure()
    assert {"cratedb-airflow-export", "apache-airflow", "pyarrow", "boto3"} <= closure  # the walk works
    assert closure.isdisjoint(DEV_ONLY)
