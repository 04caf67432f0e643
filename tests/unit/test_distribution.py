"""The distribution as an index gets it: the wheel and the sdist built from this checkout, checked
with ``twine check --strict`` (what PyPI checks on upload), holding the package and nothing else."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.helpers import REPO

pytest.importorskip("build", reason="make install's dev tools (build, twine) are not in this environment")
pytest.importorskip("twine", reason="make install's dev tools (build, twine) are not in this environment")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: setuptools as pinned in constraints.txt, nothing fetched
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def test_twine_checks_the_wheel_and_the_sdist_strictly(dist):
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("PASSED") == 2, done.stdout


def test_the_wheel_holds_the_package_alone_with_honest_metadata(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        names = wheel.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(wheel.read(metadata_name).decode())
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"cratedb_airflow_export", metadata_name.split("/", 1)[0]}
    sources = {p.relative_to(REPO / "src").as_posix() for p in (REPO / "src" / "cratedb_airflow_export").rglob("*.py")}
    assert sources <= set(names)
    assert metadata["Name"] == "cratedb-airflow-export"
    assert metadata["Requires-Python"] == ">=3.11"
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert set(metadata.get_all("Provides-Extra")) == {"iceberg", "azure", "gcs", "dev"}
    requires = metadata.get_all("Requires-Dist")
    runtime = [r for r in requires if "extra ==" not in r]
    assert any(r.startswith("apache-airflow<4,>=3.2.0") for r in runtime), runtime
    assert not [r for r in requires if "==" in r.split(";")[0]], "an exact pin in the package's requirements"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        assert "cratedb-export = cratedb_airflow_export.cli:main" in wheel.read(entry_points).decode()


def test_the_sdist_builds_the_same_package(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "src/cratedb_airflow_export/cli.py"} <= names
    assert not {name for name in names if name.startswith((".venv", ".compat", "build/", "dist/"))}
