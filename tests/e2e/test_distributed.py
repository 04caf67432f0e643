"""Scale-out, shown: the shipped DAG on CeleryExecutor with two Celery workers and a Redis broker.

A sliced export (``slices: 4``) spreads the day over mapped tasks; the slices stage their files
in S3 and the publish task, on whichever worker, publishes one partition. Nothing passes between
tasks but S3 and the metadata database, so the slices may run on any worker. Here the slices run
on both workers (the task instances' hostnames, one name per worker through
``devtools.workers.worker_name``) and the partition is checked exactly as the single-worker tests
check it.

Services, all on 127.0.0.1 and stopped by PID: Debian's ``redis-server`` (installed by ``make
test`` when missing; the test is skipped with that reason where it cannot be), the suite's
PostgreSQL (source and, in a database of its own, Airflow's metadata: CeleryExecutor cannot use
SQLite), the S3 server, an Airflow API server (the workers' execution API) and two
``airflow celery worker`` processes. ``airflow dags test --use-executor`` runs the DAG through the
executor.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devtools.devstack import free_port, wait_for_airflow_api

from tests.helpers import (
    REPO,
    SAMPLE_DAYS,
    json_lines,
    partition_keys,
    read_objects,
    rows_of_day,
    run_in_group,
    stop,
)

REDIS_SERVER = shutil.which("redis-server")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        REDIS_SERVER is None, reason="redis-server is not installed (make test installs Debian's redis-server)"
    ),
]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
WORKERS = ("worker-a", "worker-b")


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@pytest.fixture
def redis_broker(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    listen = [REDIS_SERVER or "redis-server", "--bind", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*listen, "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],  # no persistence
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc, timeout=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


@pytest.fixture
def celery_env(tmp_path, postgres, s3_server, metrics, bucket, redis_broker) -> Iterator[dict[str, str]]:
    """Airflow's configuration for the run: CeleryExecutor, metadata in PostgreSQL, the shipped
    DAG with one sliced table."""
    meta = f"airflow_celery_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {meta}")
    meta_url = f"postgresql+psycopg://{postgres.user}:{postgres.password}@127.0.0.1:{postgres.port}/{meta}"
    config = tmp_path / "exports.yaml"
    table = {"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream", "slices": 4}
    table["target"] = f"s3://{bucket}/dist"
    config.write_text(json.dumps({"tables": [table]}))
    api_port = free_port()
    home = tmp_path / "airflow"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
        "AIRFLOW__CELERY__BROKER_URL": redis_broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta_url}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",  # one task at a time per worker: two workers, two at once
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.workers.worker_name",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "CRATEDB_EXPORT_CONFIG": str(config),
        "CRATEDB_EXPORT_RETRIES": "0",
        "AIRFLOW_CONN_CRATEDB_CONNECTION": postgres.url,
        "AIRFLOW_CONN_AWS_DEFAULT": s3_server.airflow_conn_uri(),
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }
    for args in (["db", "migrate"], ["pools", "set", "cratedb_export", "4", "CrateDB exports"]):
        done = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    try:
        yield env
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {meta} WITH (FORCE)")


@pytest.fixture
def celery_cluster(celery_env, tmp_path) -> Iterator[dict[str, str]]:
    """The API server and two Celery workers, each with its own name; stopped by PID."""
    started: list[subprocess.Popen[Any]] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    try:
        api = subprocess.Popen(
            [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", celery_env["AIRFLOW__API__PORT"]],
            env=celery_env,
            stdout=(logs / "api-server.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(api)
        for name in WORKERS:
            one_at_a_time = [AIRFLOW, "celery", "worker", "--concurrency", "1"]
            worker = subprocess.Popen(
                [*one_at_a_time, "--celery-hostname", f"{name}@%h", "--skip-serve-logs"],
                env={**celery_env, "CRATEDB_EXPORT_WORKER_NAME": name},
                stdout=(logs / f"{name}.log").open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started.append(worker)
        if not wait_for_airflow_api(int(celery_env["AIRFLOW__API__PORT"]), api, timeout=180):
            raise RuntimeError("airflow api-server did not come up:\n" + (logs / "api-server.log").read_text()[-3000:])
        deadline = time.monotonic() + 180
        while not all("ready." in (logs / f"{name}.log").read_text() for name in WORKERS):
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                tails = {name: (logs / f"{name}.log").read_text()[-2000:] for name in WORKERS}
                raise RuntimeError(f"the Celery workers did not become ready: {tails}")
            time.sleep(0.5)
        yield {"logs": str(logs)}
    finally:
        for proc in reversed(started):
            stop(proc)


def test_a_sliced_export_runs_on_both_celery_workers_and_publishes_one_exact_partition(
    celery_env, celery_cluster, postgres, s3_server, metrics, bucket
):
    code, output = run_in_group(
        ["dags", "test", "--use-executor", "cratedb_table_export", "2024-01-05"], celery_env, 600
    )
    assert code == 0, output[-4000:]

    meta = celery_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(meta) as conn:
        instances = conn.execute(
            "SELECT task_id, map_index, state, hostname FROM task_instance "
            "WHERE dag_id = 'cratedb_table_export' ORDER BY task_id, map_index"
        ).fetchall()
    print("task instances (task, map index, state, worker):", *instances, sep="\n  ")
    slices = [row for row in instances if row[0] == "export_doc.metrics.slices"]
    assert [(r[1], r[2]) for r in slices] == [(i, "success") for i in range(4)]
    assert {r[3] for r in slices} == set(WORKERS), f"the slices ran on {sorted({r[3] for r in slices})} only"
    (publish,) = [row for row in instances if row[0] == "export_doc.metrics"]
    assert publish[2] == "success" and publish[3] in WORKERS

    folder = "dist/doc.metrics/dt=2024-01-04"
    objects = read_objects(s3_server, bucket)
    assert list(objects) == partition_keys(folder, *(f"slice-00{i}-part-00000.jsonl.gz" for i in range(4)))
    exported = [row for key, data in objects.items() if "/slice-" in key for row in json_lines(data)]
    expected = rows_of_day(metrics, SAMPLE_DAYS[1])
    assert sorted(r["hash_id"] for r in exported) == sorted(r[0] for r in expected)
    manifest = json.loads(objects[f"{folder}/_manifest.json"])
    assert manifest["rows"] == manifest["source_count"] == len(expected)
