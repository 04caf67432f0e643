"""What the tests share besides fixtures: a private AIRFLOW_HOME (set when this module is first
imported: Airflow reads its configuration at import time, so ``conftest.py`` imports this before
anything imports airflow), the sample data's shape, and helpers to run DAGs and read the bucket.
Test modules import from here (``from tests.helpers import ...``); fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cratedb-export-test-airflow-"))
TEST_DAGS = AIRFLOW_HOME / "dags"  # tests write their DAG files here; dag.test() parses this folder
TEST_DAGS.mkdir()
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(AIRFLOW_HOME / "logs"),
        # test DAGs retry once, at once (the shipped default is 2 retries, 5 minutes apart)
        "CRATEDB_EXPORT_RETRIES": "1",
        "CRATEDB_EXPORT_RETRY_DELAY_MINUTES": "0",
    }
)
for _name in (
    "CRATEDB_EXPORT_CONFIG",
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
):
    os.environ.pop(_name, None)


SAMPLE_DAYS = [date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]
ROWS_PER_DAY = 50
BIG_ROWS = 40_000  # about 12 MB of JSON Lines: three upload parts of 5 MiB


def last_line_of_python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet) and return the last line it printed."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def airflow_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_in_group(
    args: list[str], env: dict[str, str], timeout: float, *, finished: str | None = None, grace: float = 60
) -> tuple[int, str]:
    """Run an airflow command in its own process group; on timeout kill the whole group (the
    executor's workers too) and fail with what it printed.

    ``finished``: a line that says the work is done (``DagRun Finished``). When the command has not
    exited ``grace`` seconds after printing it, the group is killed and what it printed returned:
    ``airflow dags test --use-executor`` can hang for good in LocalExecutor's shutdown, joining a
    worker process after every task finished (apache/airflow#45329; the leak test met it in two
    fresh-clone runs on 2026-12-06), after which there is nothing left of the run to wait for."""
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    done_at: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if finished and finished in line and not done_at:
                done_at.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        now = time.monotonic()
        if done_at and now > done_at[0] + grace:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            reader.join(timeout=10)
            note = f"\n[killed {grace:.0f} s after {finished!r}: the command did not exit (apache/airflow#45329)]\n"
            print(note)
            return proc.returncode, "".join(lines) + note
        if now > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            reader.join(timeout=10)
            pytest.fail(f"airflow {' '.join(args)} did not finish in {timeout}s:\n{''.join(lines)[-4000:]}")
        time.sleep(0.2)
    reader.join(timeout=10)
    return proc.returncode, "".join(lines)


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process this test started, and its group (a Celery worker's pool, a server's children)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def aws_connection(endpoint_url: str) -> str:
    """An ``AIRFLOW_CONN_*`` value (JSON form) for an AWS connection to ``endpoint_url``."""
    extra = {"endpoint_url": endpoint_url, "region_name": "us-east-1"}
    return json.dumps({"conn_type": "aws", "login": "k", "password": "s", "extra": extra})


def rows_of_day(rows: list[tuple[Any, ...]], day: date) -> list[tuple[Any, ...]]:
    start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
    return [r for r in rows if start <= r[1] < start + timedelta(days=1)]


def iso(stamp: datetime) -> str:
    """How the stream engine writes a TIMESTAMP WITH TIME ZONE."""
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def as_exported(row: tuple[Any, ...]) -> dict[str, Any]:
    """A sample row as the stream engine writes it."""
    hash_id, stamp, name, tags, fields = row
    return {
        "hash_id": hash_id,
        "timestamp": iso(stamp),
        "name": name,
        "tags": tags,
        "fields": fields,
    }


def list_keys(store: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key starting with ``prefix`` (any string, not only a folder), through the store's SDK."""
    if store.scheme == "az":
        keys = [blob.name for blob in store.container(bucket).list_blobs(name_starts_with=prefix or None)]
    elif store.scheme == "gs":
        keys = [blob.name for blob in store.client.list_blobs(bucket, prefix=prefix or None)]
    else:
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return sorted(keys)


def read_objects(server: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """The objects whose keys start with ``prefix`` on any store's server (``.store()``), by key."""
    store = server.store()
    return {key: store.read(bucket, key) for key in list_keys(store, bucket, prefix)}


def data_objects(objects: dict[str, bytes]) -> dict[str, bytes]:
    """Only the data files: no ``_SUCCESS`` / ``_manifest.json``."""
    return {k: v for k, v in objects.items() if not k.rsplit("/", 1)[-1].startswith("_")}


def partition_keys(folder: str, *data_files: str) -> list[str]:
    """The keys of a complete partition, sorted as S3 lists them."""
    return sorted([f"{folder}/_SUCCESS", f"{folder}/_manifest.json", *(f"{folder}/{f}" for f in data_files)])


def json_lines(data: bytes) -> list[dict[str, Any]]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line]


DAG_FILE = """\
from pathlib import Path

from cratedb_airflow_export.loading import load_yaml_tables
from cratedb_airflow_export.edge.{module} import {builder}

dag = {builder}(load_yaml_tables(Path(__file__).with_suffix(".yaml")), dag_id=Path(__file__).stem)
"""
BUILDERS = {
    "export": ("dag", "build_dag"),
    "restore": ("restore", "build_restore_dag"),
    "retention": ("retention", "build_retention_dag"),
    "consumer": ("consumer", "build_consumer_dag"),
}


def make_dag(dag_id: str, tables: list[dict[str, Any]], kind: str = "export") -> Any:
    """Write a DAG file (and its YAML config) into the test DAG folder and build the same DAG
    (``kind``: the export DAG, or the restore DAG)."""
    import importlib

    import yaml

    from cratedb_airflow_export.loading import load_yaml_tables

    module, builder = BUILDERS[kind]
    config = TEST_DAGS / f"{dag_id}.yaml"
    config.write_text(yaml.safe_dump({"tables": tables}))
    (TEST_DAGS / f"{dag_id}.py").write_text(DAG_FILE.format(module=module, builder=builder))
    build = getattr(importlib.import_module(f"cratedb_airflow_export.edge.{module}"), builder)
    return build(load_yaml_tables(config), dag_id=dag_id)


def run_dag(dag: Any, day: date, conf: dict[str, Any] | None = None) -> Any:
    """Run ``dag`` for the data interval [day, day + 1) in this process (a manual run; ``conf``:
    what the Trigger form would send); return the DagRun."""
    logical = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    return dag.test(logical_date=logical, run_conf=conf)


def asset_events(dag_id: str, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The Asset events a run emitted, one per partition announced: (Asset URI, day, the extra of
    that partition), in the order of URI and day. Checks each event's ``partition_key``: the day
    on Airflow 3.3+, none on 3.2."""
    import sqlite3

    from cratedb_airflow_export.edge.operators import partition_of, per_event_partitions

    db = sqlite3.connect(AIRFLOW_HOME / "airflow.db")
    rows = db.execute(
        "SELECT a.uri, e.partition_key, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE e.source_dag_id = ? AND e.source_run_id = ?",
        (dag_id, run_id),
    ).fetchall()
    db.close()
    events = []
    for uri, key, extra in rows:
        own = dict(partition_of(json.loads(extra), key))
        day = own["interval"]["start"][:10]
        assert key == (day if per_event_partitions() else None), (key, own)
        events.append((uri, day, own))
    return sorted(events, key=lambda event: event[:2])


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def task_tries(dag_run: Any) -> dict[str, int]:
    return {ti.task_id: ti.try_number for ti in dag_run.get_task_instances()}


STORE_SCHEMES = {"s3": "s3", "azure": "az", "gcs": "gs"}  # a store's fixture kind -> its targets' scheme
CHECKSUMS = {"s3": "sha256", "azure": "md5", "gcs": "crc32c"}  # the checksum each store keeps


def store_connection(kind: str, server: Any, port: int | None = None) -> tuple[str, str]:
    """The ``AIRFLOW_CONN_*`` variable and value through which the package reaches the ``kind``
    store's server, or the same store at 127.0.0.1:``port`` (a proxy, or nothing listening)."""
    if kind == "s3":
        value = server.airflow_conn_uri() if port is None else aws_connection(f"http://127.0.0.1:{port}")
        return "AIRFLOW_CONN_AWS_DEFAULT", value
    if kind == "azure":
        creds = server.credentials()
        host = creds.endpoint_url if port is None else f"http://127.0.0.1:{port}/{creds.account}"
        conn = {"conn_type": "wasb", "login": creds.account, "password": creds.key, "host": host}
        return "AIRFLOW_CONN_WASB_DEFAULT", json.dumps(conn)
    endpoint = server.endpoint if port is None else f"http://127.0.0.1:{port}"
    conn = {"conn_type": "google_cloud_platform", "extra": {"project": "test", "endpoint_url": endpoint}}
    return "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn)


def new_bucket(request: Any, monkeypatch: Any, kind: str) -> tuple[Any, str]:
    """A new bucket (container) on the ``kind`` store's server fixture (``s3_server``, ``azurite``,
    ``fake_gcs``), with the Airflow connection the product reads it with; (server, bucket name)."""
    import uuid

    name = f"t-{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        server.client().create_bucket(Bucket=name)
    elif kind == "azure":
        server = request.getfixturevalue("azurite")
        server.create_container(name)
    else:
        server = request.getfixturevalue("fake_gcs")
        server.create_bucket(name)
    monkeypatch.setenv(*store_connection(kind, server))
    return server, name


class Lake:
    """A new bucket (container) on one store's server (``kind``: s3, azure, gcs), the target URI of
    a folder in it, the package's store to look at it with, and what an outside reader (pyiceberg's
    own PyArrow file IO) needs to read it."""

    def __init__(self, kind: str, server: Any, bucket: str) -> None:
        self.kind, self.server, self.bucket = kind, server, bucket
        self.store = server.store()

    def target(self, folder: str = "lake") -> str:
        return f"{STORE_SCHEMES[self.kind]}://{self.bucket}/{folder}"

    def location(self, prefix: str) -> Any:
        from cratedb_airflow_export.storage import Location

        return Location(self.bucket, prefix.rstrip("/"), STORE_SCHEMES[self.kind])

    @property
    def scheme(self) -> str:
        return STORE_SCHEMES[self.kind]

    def point_at(self, monkeypatch: Any, port: int) -> None:
        """Have the package reach this store at 127.0.0.1:``port`` from now on."""
        monkeypatch.setenv(*store_connection(self.kind, self.server, port))

    def keys(self, prefix: str) -> list[str]:
        return [o.key for o in self.store.list_objects(self.location(prefix))]

    def objects(self, prefix: str = "") -> dict[str, bytes]:
        """The objects whose keys start with ``prefix`` (any string), by key."""
        return read_objects(self.server, self.bucket, prefix)

    def uri(self, key: str) -> str:
        """How an Iceberg table here records the object ``key`` (Azurite's endpoint is path-style:
        ``abfs://<container>/...``, the account left to the reader)."""
        scheme = {"s3": "s3", "azure": "abfs", "gcs": "gs"}[self.kind]
        return f"{scheme}://{self.bucket}/{key}"

    def arrow_filesystem(self) -> Any:
        """A pyarrow file system on this server: a reader that is not the package (pyarrow.dataset)."""
        import pyarrow.fs as pafs

        if self.kind == "s3":
            return self.server.arrow_filesystem()
        if self.kind == "azure":
            creds, authority = self.server.credentials(), f"127.0.0.1:{self.server.port}"
            return pafs.AzureFileSystem(
                account_name=creds.account,
                account_key=creds.key,
                blob_storage_authority=authority,
                dfs_storage_authority=authority,
                blob_storage_scheme="http",
                dfs_storage_scheme="http",
            )
        return pafs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=f"127.0.0.1:{self.server.port}")

    def reader_properties(self) -> dict[str, str]:
        """pyiceberg's PyArrowFileIO properties for this server: a reader that is not the package."""
        io = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
        if self.kind == "s3":
            server = self.server
            return io | {
                "s3.endpoint": server.endpoint_url,
                "s3.access-key-id": server.access_key,
                "s3.secret-access-key": server.secret_key,
                "s3.region": "us-east-1",
            }
        if self.kind == "azure":
            creds, authority = self.server.credentials(), f"127.0.0.1:{self.server.port}"
            return io | {
                "adls.account-name": creds.account,
                "adls.account-key": creds.key,
                "adls.blob-storage-authority": authority,
                "adls.dfs-storage-authority": authority,
                "adls.blob-storage-scheme": "http",
                "adls.dfs-storage-scheme": "http",
            }
        # fake-gcs-server takes any token; pyarrow wants one with an expiry
        return io | {
            "gcs.service.host": self.server.endpoint,
            "gcs.oauth2.token": "anonymous",
            "gcs.oauth2.token-expires-at": "4102444800000",
        }
