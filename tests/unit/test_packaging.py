"""The shape of the product: a core that never imports Airflow, an installed wheel and a Docker
image without development tools or tests."""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

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


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, also lazily inside functions (``from a.b import c``: ``a.b``)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_only_the_edge_imports_airflow():
    """Also lazily, inside functions: no core module imports Airflow; one reaches for the edge: the
    command line, for connections stored in Airflow when Airflow is installed."""
    direct, via_edge = [], []
    for path in PACKAGE.rglob("*.py"):
        if "edge" in path.relative_to(PACKAGE).parts[:-1]:
            continue
        names = imported_modules(path)
        direct += [path.name for n in names if n.split(".")[0] == "airflow"]
        via_edge += [path.name for n in names if n.startswith("cratedb_airflow_export.edge")]
    assert direct == []
    assert via_edge == ["cli.py"]


# Each store's SDK (and its type stubs) belongs to its backend alone; every other module talks to
# storage.Store. Airflow's hooks build a backend's clients in edge/resolve.py without naming the SDK.
STORE_SDKS = {
    "boto3": "s3.py",
    "botocore": "s3.py",
    "types_boto3_s3": "s3.py",
    "azure": "azure.py",
    "google": "gcs.py",
}


def sdk_imports() -> dict[str, set[str]]:
    """Which modules (paths relative to the package) import each store SDK, also lazily."""
    found: dict[str, set[str]] = {sdk: set() for sdk in STORE_SDKS}
    for path in PACKAGE.rglob("*.py"):
        for name in imported_modules(path):
            if name.split(".")[0] in found:
                found[name.split(".")[0]].add(str(path.relative_to(PACKAGE)))
    return found


def test_only_a_stores_backend_imports_its_sdk():
    assert sdk_imports() == {sdk: {f"stores/{module}"} for sdk, module in STORE_SDKS.items()}


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


def pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def pinned(path: Path) -> dict[str, str]:
    from devtools.compat import parse_pins

    return parse_pins(path.read_text())


def requirements(group: str | None = None) -> list[Requirement]:
    project = pyproject()
    specs = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(spec) for spec in specs]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("group", [None, "iceberg", "azure", "gcs", "dev"])
def test_dependencies_are_ranges_that_admit_the_pinned_versions(group):
    """Installed into a user's Airflow, the package may not replace what is there: ranges from the
    lowest version tested to below the next major; exact versions only in constraints.txt."""
    pins = pinned(REPO / "constraints.txt")
    for requirement in requirements(group):
        if requirement.name == "cratedb-airflow-export":  # dev's own extras
            continue
        operators = {spec.operator for spec in requirement.specifier}
        assert operators == {">=", "<"}, f"{requirement}: a range >=lowest,<next major"
        assert requirement.specifier.contains(pins[canonical(requirement.name)]), (requirement, pins[requirement.name])


def test_a_check_that_would_see_an_exact_pin():
    assert {spec.operator for spec in Requirement("pydantic==2.14.3").specifier} != {">=", "<"}


def test_the_astro_image_installs_every_runtime_dependency_in_the_same_range():
    """The Dockerfile installs the package with --no-deps on Astro's Runtime (which brings Airflow):
    requirements.txt must hold everything else, the iceberg, azure and gcs extras too, as the same ranges."""
    listed = [
        str(Requirement(line))
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    needed = [
        str(r)
        for r in requirements() + requirements("iceberg") + requirements("azure") + requirements("gcs")
        if r.name != "apache-airflow"
    ]
    assert listed == needed
    assert "--no-deps" in (REPO / "Dockerfile").read_text()


def test_every_supported_airflow_minor_has_a_compat_environment():
    """make test-compat installs the package into each COMPAT_AIRFLOW release: the newest of every
    minor the dependency range admits, each frozen in compat/."""
    makefile = (REPO / "Makefile").read_text()
    versions = re.search(r"^COMPAT_AIRFLOW \?= (.+)$", makefile, re.M).group(1).split()  # type: ignore[union-attr]
    (airflow,) = [r for r in requirements() if r.name == "apache-airflow"]
    lowest = next(spec.version for spec in airflow.specifier if spec.operator == ">=")
    assert versions[0].rsplit(".", 1)[0] == lowest.rsplit(".", 1)[0]
    for version in versions:
        assert airflow.specifier.contains(version), version
        lock = pinned(REPO / "compat" / f"airflow-{version}.txt")
        assert lock["apache-airflow"] == version
    assert pinned(REPO / "constraints.txt")["apache-airflow"] in versions  # our own environment is one of them
