"""The Docker files and the CI workflow, checked statically (no Docker engine runs here): every image
pinned to an exact tag, every published port on 127.0.0.1, CrateDB started single-node, and the
workflow running what the README says."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

COMPOSE_FILES = ["compose.yaml", "docker-compose.override.yml"]
EXACT_TAG = re.compile(r"^[a-z0-9./_-]+:(\d+\.\d+\.\d+|RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z)$")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / name).read_text())


def image_of(service: dict[str, Any]) -> str:
    """The image, with a ``${VAR:-default}`` tag resolved to its default (what runs unless set)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", service["image"])


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_image_is_pinned_to_an_exact_tag(name):
    services = load(name)["services"]
    assert services
    for service_name, service in services.items():
        assert EXACT_TAG.match(image_of(service)), f"{name}: {service_name}: {service['image']}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_port_is_local(name):
    for service_name, service in load(name)["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {service_name} publishes {port}"
        if service.get("network_mode") == "host":  # no port mapping: the program itself binds to loopback
            command = " ".join(service.get("command", []) + service.get("entrypoint", []))
            assert "127.0.0.1" in command or "_local_" in command, f"{name}: {service_name}: {command}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_cratedb_runs_single_node_and_minio_serves_data(name):
    services = load(name)["services"]
    assert "-Cdiscovery.type=single-node" in services["cratedb"]["command"]
    assert services["minio"]["command"][:2] == ["server", "/data"]
    assert {"cratedb", "minio"} <= {s for s, v in services.items() if "healthcheck" in v}


def test_astro_override_shares_the_airflow_network_and_env_example_points_there():
    services = load("docker-compose.override.yml")["services"]
    assert all(service["networks"] == ["airflow"] for service in services.values())
    assert "crate-astro-tutorial" in " ".join(services["create-bucket"]["entrypoint"])  # the shipped DAG's bucket
    env = dict(
        line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines() if line and line[0] != "#"
    )
    assert env["AIRFLOW_CONN_CRATEDB_CONNECTION"] == "postgresql://crate@cratedb:5432/doc"
    assert "endpoint_url=http%3A%2F%2Fminio%3A9000" in env["AIRFLOW_CONN_AWS_DEFAULT"]


def test_the_workflow_tests_on_the_newest_cratedb_5_and_6():
    workflow = load(".github/workflows/ci.yml")
    jobs = workflow["jobs"]
    assert [s["run"] for s in jobs["test"]["steps"] if "run" in s] == ["make test"]
    cratedb = jobs["cratedb"]
    versions = cratedb["strategy"]["matrix"]["cratedb"]
    assert [v.split(".")[0] for v in versions] == ["5", "6"]
    default = image_of(load("compose.yaml")["services"]["cratedb"])
    assert default == f"crate:{versions[-1]}"  # compose.yaml's default is the newest 6.x CI runs
    assert load("docker-compose.override.yml")["services"]["cratedb"]["image"] == default
    runs = [s.get("run", "") for s in cratedb["steps"]]
    assert any(r.startswith("docker compose up -d --wait") for r in runs)
    assert "make integration" in runs
    (demo,) = [s for s in cratedb["steps"] if s.get("run") == "make demo"]
    assert demo["env"]["DEMO_ENGINE"] == "copy"


def test_the_cratedb_suite_is_collected(tmp_path):
    """`pytest --collect-only -m cratedb tests/cratedb` lists at least 15 tests (they skip here without
    CRATEDB_URL), and no test outside tests/cratedb carries the marker (what `make integration` runs)."""
    import re
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-m",
            "cratedb",
            "-p",
            "no:cacheprovider",
            "tests/cratedb",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(collected) >= 15, proc.stdout[-2000:]
    assert all(
        line.startswith(("tests/cratedb/test_cratedb.py::", "tests/cratedb/test_oracle.py::")) for line in collected
    )
    assert any(line.startswith("tests/cratedb/test_oracle.py::") for line in collected)  # the oracle on CrateDB
    marked = [
        path.relative_to(REPO)
        for path in (REPO / "tests").rglob("*.py")
        if "cratedb" not in path.relative_to(REPO / "tests").parts[:1]
        and re.search(r"pytest\.mark\.cratedb\b(?!_)", path.read_text(encoding="utf-8"))
    ]
    assert marked == []
