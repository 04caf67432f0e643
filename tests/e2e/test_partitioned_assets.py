"""Partitioned Asset events (Airflow 3.3+): every exported day's Asset event carries the day as its
``partition_key``, and the example consumer (``PartitionedAssetTimetable``), scheduled by Airflow's
own scheduler and run by its LocalExecutor, runs once per day announced, for exactly that day.

Airflow runs here as in production: metadata in PostgreSQL, the API server, the scheduler; the
producer runs by ``airflow dags test`` (paused, so the scheduler leaves it alone)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from devtools.devstack import free_port, wait_for_airflow_api

from cratedb_airflow_export.edge.operators import per_event_partitions
from tests.helpers import DAG_FILE, REPO, run_in_group, stop

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not per_event_partitions(), reason="Airflow < 3.3: an Asset event carries no partition key of its own"
    ),
]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
PRODUCER, CONSUMER = "pa_export", "pa_consumer"


@pytest.fixture
def airflow_env(tmp_path: Path, postgres, s3_server, metrics, bucket) -> Iterator[dict[str, str]]:
    """A private Airflow: metadata in a PostgreSQL database of its own, a DAG folder with the export
    DAG and the example consumer over the same table."""
    meta = f"airflow_partitions_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {meta}")
    dags = tmp_path / "dags"
    dags.mkdir()
    table = {"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream"}
    table["target"] = f"s3://{bucket}/lake"
    for dag_id, module, builder in ((PRODUCER, "dag", "build_dag"), (CONSUMER, "consumer", "build_consumer_dag")):
        (dags / f"{dag_id}.yaml").write_text(yaml.safe_dump({"tables": [table]}))
        (dags / f"{dag_id}.py").write_text(DAG_FILE.format(module=module, builder=builder))
    home = tmp_path / "airflow"
    home.mkdir()
    api_port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url.replace("postgresql://", "postgresql+psycopg://").rsplit(
            "/", 1
        )[0]
        + f"/{meta}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW_CONN_CRATEDB_CONNECTION": postgres.url,
        "AIRFLOW_CONN_AWS_DEFAULT": s3_server.airflow_conn_uri(),
    }
    for args in (["db", "migrate"], ["dags", "reserialize"], ["dags", "unpause", CONSUMER]):
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    try:
        yield env | {"metadata": postgres.url.rsplit("/", 1)[0] + f"/{meta}"}
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {meta} WITH (FORCE)")


@pytest.fixture
def scheduler(airflow_env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    """Airflow's API server and scheduler (LocalExecutor), stopped by PID."""
    started: list[subprocess.Popen[Any]] = []
    env = {k: v for k, v in airflow_env.items() if k != "metadata"}
    try:
        for name, args in (
            ("api-server", ["api-server", "--host", "127.0.0.1", "--port", env["AIRFLOW__API__PORT"]]),
            ("scheduler", ["scheduler"]),
        ):
            log = (tmp_path / f"{name}.log").open("w")
            proc = subprocess.Popen(
                [AIRFLOW, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            started.append(proc)
        if not wait_for_airflow_api(int(env["AIRFLOW__API__PORT"]), started[0], timeout=180):
            log_tail = (tmp_path / "api-server.log").read_text()[-3000:]
            raise RuntimeError(f"airflow api-server did not come up:\n{log_tail}")
        yield
    finally:
        for proc in reversed(started):
            stop(proc)


def export(env: dict[str, str], logical_date: str, conf: dict[str, Any] | None = None) -> None:
    """One run of the export DAG by ``airflow dags test`` (its data interval: the day before ``logical_date``)."""
    args = ["dags", "test", PRODUCER, logical_date] + (["--conf", json.dumps(conf)] if conf else [])
    code, output = run_in_group(args, {k: v for k, v in env.items() if k != "metadata"}, 300)
    assert code == 0 and "state=success" in output, output[-4000:]


def consumer_runs(metadata: str, count: int, tmp_path: Path, timeout: float = 240) -> list[tuple[str, str, Any]]:
    """The consumer's runs (partition key, state, returned summaries) once ``count`` of them have
    ended; fails after ``timeout`` seconds with the scheduler's log."""
    query = (
        "SELECT r.partition_key, r.state, x.value FROM dag_run r LEFT JOIN xcom x ON x.dag_run_id = r.id "
        "AND x.key = 'return_value' WHERE r.dag_id = %s ORDER BY r.partition_key, r.id"
    )
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(metadata) as conn:
            runs = conn.execute(query, (CONSUMER,)).fetchall()
        if len(runs) >= count and all(state in ("success", "failed") for _, state, _ in runs):
            return [(key, state, value) for key, state, value in runs]
        if time.monotonic() > deadline:
            pytest.fail(f"consumer runs after {timeout}s: {runs}\n" + (tmp_path / "scheduler.log").read_text()[-4000:])
        time.sleep(1)


def days_read(summaries: Any) -> list[tuple[str, str, int]]:
    value = json.loads(summaries) if isinstance(summaries, str) else summaries
    return [(s["table"], s["interval"]["start"][:10], s["rows"]) for s in value]


def test_each_exported_day_runs_the_partitioned_consumer_for_exactly_that_day(airflow_env, scheduler, tmp_path):
    metadata = airflow_env["metadata"]
    # a scheduled-like run: the data interval 2024-01-04 (one day, one event)
    export(airflow_env, "2024-01-05")
    ((key, state, summaries),) = consumer_runs(metadata, 1, tmp_path)
    assert (key, state, days_read(summaries)) == ("2024-01-04", "success", [("doc.metrics", "2024-01-04", 50)])
    # a manual run of three days (01-04 again): one event per day, each with its key
    export(airflow_env, "2024-01-10", {"day": "2024-01-03", "to": "2024-01-05"})
    runs = consumer_runs(metadata, 4, tmp_path)
    assert [(key, state) for key, state, _ in runs] == [
        ("2024-01-03", "success"),
        ("2024-01-04", "success"),
        ("2024-01-04", "success"),
        ("2024-01-05", "success"),
    ]
    for key, _, summaries in runs:
        assert days_read(summaries) == [("doc.metrics", key, 50)], (key, summaries)
