"""Partitions you can trust: reruns replace, _manifest.json and _SUCCESS come last, counts are
verified, readers see exactly the source rows, Asset events are recorded. All through Airflow
against the local PostgreSQL and S3 servers."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from datetime import date

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.manifest import Manifest
from cratedb_airflow_export.windows import Window
from tests.helpers import (
    SAMPLE_DAYS,
    Lake,
    asset_events,
    data_objects,
    json_lines,
    make_dag,
    partition_keys,
    read_objects,
    rows_of_day,
    run_dag,
    task_states,
)

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)


@pytest.fixture
def table(postgres):
    """A fresh copy of the tutorial's table, so tests may delete rows."""
    name = f"doc.m_{uuid.uuid4().hex[:8]}"
    rows = sample_metrics(SAMPLE_DAYS, 50, seed=11)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, rows, table=name)
    return name, rows


def entry(name: str, lake: Lake, **extra):
    return {
        "table": name,
        "timestamp_column": "timestamp",
        "engine": "stream",
        "target": lake.target(),
        **extra,
    }


def manifest_of(objects: dict[str, bytes]) -> Manifest:
    (key,) = [k for k in objects if k.endswith("/_manifest.json")]
    return Manifest.from_bytes(objects[key])


def test_rerun_replaces_the_partition(airflow_db, connections, postgres, lake, table):
    server, bucket = lake.server, lake.bucket
    name, rows = table
    folder = f"lake/{name}/dt=2024-01-04"
    first = make_dag("e2e_rerun_1", [entry(name, lake)])
    assert task_states(run_dag(first, DAY)) == {f"export_{name}": "success"}
    objects = read_objects(server, bucket)
    assert list(objects) == partition_keys(folder, "part-00000.jsonl.gz")
    first_manifest = manifest_of(objects)

    expected = rows_of_day(rows, DAY)
    deleted = [r[0] for r in expected[:7]]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {name} WHERE hash_id = ANY(%s)", (deleted,))
    # the rerun also writes different file names (no compression): nothing of the first run may remain
    second = make_dag("e2e_rerun_2", [entry(name, lake, compression="none")])
    assert task_states(run_dag(second, DAY)) == {f"export_{name}": "success"}

    objects = read_objects(server, bucket)
    assert list(objects) == partition_keys(folder, "part-00000.jsonl")  # no staging leftovers either
    exported = json_lines(objects[f"{folder}/part-00000.jsonl"])
    assert sorted(r["hash_id"] for r in exported) == sorted(r[0] for r in expected[7:])
    manifest = manifest_of(objects)
    assert manifest.rows == manifest.source_count == len(expected) - 7 == 43
    assert manifest.run_id != first_manifest.run_id
    assert [(o.key, o.rows) for o in manifest.objects] == [(f"{folder}/part-00000.jsonl", 43)]
    assert objects[f"{folder}/_SUCCESS"] == b""


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # S3's SHA-256; each store's checksum: test_targets.py
def test_manifest_contents(airflow_db, connections, postgres, lake, table):
    server, bucket = lake.server, lake.bucket
    name, _ = table
    with psycopg.connect(postgres.url, autocommit=True) as conn:  # the rows' versions: PostgreSQL's xmin
        query = f'SELECT sum(xmin::text::bigint) FROM {name} WHERE "timestamp" >= %s AND "timestamp" < %s'
        versions = conn.execute(query, Window.for_day(DAY).bounds()).fetchone()[0]
        oid = conn.execute("SELECT %s::regclass::oid::bigint", (name,)).fetchone()[0]  # the table's identity
        numbers = dict(
            conn.execute("SELECT attname, attnum FROM pg_attribute WHERE attrelid = %s AND attnum > 0", (oid,))
        )
    dag = make_dag("e2e_manifest", [entry(name, lake)])
    dag_run = run_dag(dag, DAY)
    objects = read_objects(server, bucket)
    manifest = manifest_of(objects)
    folder = f"lake/{name}/dt=2024-01-04"
    data_key = f"{folder}/part-00000.jsonl.gz"
    head = server.client().head_object(Bucket=bucket, Key=data_key, ChecksumMode="ENABLED")
    sha256 = base64.b64encode(hashlib.sha256(objects[data_key]).digest()).decode()
    assert head["ChecksumSHA256"] == sha256  # one part: the checksum of the whole object
    assert manifest.model_dump(by_alias=True, exclude={"exported_at", "statements_fingerprint"}) == {
        "version": 1,
        "table": name,
        "interval": {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"},
        "partition": f"{lake.scheme}://{bucket}/{folder}/",
        "engine": "stream",
        "format": "jsonl",
        "compression": "gzip",
        "compression_level": None,
        "json_style": "iso",
        "rows": 50,
        "source_count": 50,
        "source_marker": f"sum(xmin)={versions}",
        "columns": ["hash_id", "timestamp", "name", "tags", "fields"],
        "filter": None,
        "table_id": f"oid:{oid}",
        "timestamp_column": "timestamp",
        "timestamp_type": "timestamp with time zone",
        "column_ids": {c: numbers[c] for c in ("hash_id", "timestamp", "name", "tags", "fields")},
        "selection_fingerprint": manifest.selection_fingerprint,
        "schema": [
            {"name": name_, "source_type": source, "file_type": written, "nullable": True, "keys": None, "policy": None}
            for name_, source, written in [
                ("hash_id", "bigint", "integer"),
                ("timestamp", "timestamp with time zone", "string (ISO 8601)"),
                ("name", "text", "string"),
                ("tags", "json", "json"),
                ("fields", "json", "json"),
            ]
        ],
        "schema_changes": None,  # the table's first day: nothing to compare with
        "schema_compared_with": None,
        "row_count_check": "strict",
        "sse": None,
        "sse_kms_key_id": None,
        "objects": [
            {
                "key": data_key,
                "size": len(objects[data_key]),
                "etag": head["ETag"].strip('"'),
                "rows": 50,
                "checksum_sha256": sha256,
            },
        ],
        "dag_id": "e2e_manifest",
        "run_id": dag_run.run_id,
        "try_number": 1,
    }
    assert manifest.statements_fingerprint.startswith("sha256:") and len(manifest.statements_fingerprint) == 71
    assert manifest.selection_fingerprint.startswith("sha256:") and len(manifest.selection_fingerprint) == 71
    assert manifest.exported_at.endswith("+00:00")


def test_failure_between_data_and_manifest_leaves_no_success(airflow_db, connections, lake, table):
    server, bucket = lake.server, lake.bucket
    from cratedb_airflow_export import publish

    name, _ = table
    folder = f"lake/{name}/dt=2024-01-04"
    dag = make_dag("e2e_inject", [entry(name, lake)])
    assert task_states(run_dag(dag, DAY)) == {f"export_{name}": "success"}  # a complete partition first

    def crash(*args, **kwargs):
        raise RuntimeError("injected: worker died before the manifest")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(publish, "write_manifest", crash)
        assert task_states(run_dag(dag, DAY)) == {f"export_{name}": "failed"}
    objects = read_objects(server, bucket)
    assert f"{folder}/_SUCCESS" not in objects  # the old partition is clearly invalidated
    assert f"{folder}/_manifest.json" not in objects
    assert list(data_objects(objects)) == [f"{folder}/part-00000.jsonl.gz"]  # data copied, not marked complete

    assert task_states(run_dag(dag, DAY)) == {f"export_{name}": "success"}
    objects = read_objects(server, bucket)
    assert list(objects) == partition_keys(folder, "part-00000.jsonl.gz")
    assert len(json_lines(objects[f"{folder}/part-00000.jsonl.gz"])) == manifest_of(objects).rows == 50


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's count: one store is enough
def test_row_count_mismatch_fails_strict_and_publishes_under_warn(airflow_db, connections, lake, table, monkeypatch):
    """Rows arriving for a past day between the export and the count (a race that cannot be
    caused on demand) are simulated by adding 3 to the real count(*)."""
    server, bucket = lake.server, lake.bucket
    from cratedb_airflow_export import attempt

    name, _ = table
    real_state = attempt.window_state

    def three_more(*args, **kwargs):
        state = real_state(*args, **kwargs)
        return dataclasses.replace(state, count=state.count + 3)

    monkeypatch.setattr(attempt, "window_state", three_more)

    strict = make_dag("e2e_count_strict", [entry(name, lake)])
    assert task_states(run_dag(strict, DAY)) == {f"export_{name}": "failed"}
    assert read_objects(server, bucket) == {}  # nothing published, staging removed

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.errors import ExportError
    from cratedb_airflow_export.export import run_export
    from cratedb_airflow_export.windows import Window

    with pytest.raises(ExportError, match=r"50 rows exported, but count\(\*\) over the same window is 53"):
        run_export(TableExport.model_validate(entry(name, lake)), Window.for_day(DAY))

    lenient = make_dag("e2e_count_warn", [entry(name, lake, row_count_check="warn")])
    assert task_states(run_dag(lenient, DAY)) == {f"export_{name}": "success"}
    manifest = manifest_of(read_objects(server, bucket))
    assert (manifest.rows, manifest.source_count, manifest.row_count_check) == (50, 53, "warn")


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's count: one store is enough
@pytest.mark.parametrize("reader", ["auto", "cursor"])  # ADBC's COPY binary, and the cursor path
def test_rows_written_into_the_day_while_it_is_exported_are_noticed(
    connections, postgres, lake, table, monkeypatch, reader
):
    """10 rows are inserted into the day once the first batch is being written: the read does not
    see them, the count taken after the last row was read does. ``strict`` fails naming both
    numbers and publishes nothing; ``warn`` publishes and records the later count, which is what
    ``reconcile`` compares with."""
    server, bucket = lake.server, lake.bucket
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.engines.stream import RollingFiles
    from cratedb_airflow_export.errors import ExportError
    from cratedb_airflow_export.export import run_export
    from cratedb_airflow_export.windows import Window

    name, _ = table
    real_write = RollingFiles.write
    inserted = []

    def write_then_insert(self, batch):
        if not inserted:
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                conn.execute(
                    f'INSERT INTO {name} (hash_id, "timestamp", name) '
                    "SELECT -g, '2024-01-04 12:00:00+00'::timestamptz, 'written during the export' "
                    "FROM generate_series(1, 10) g"
                )
            inserted.append(10)
        return real_write(self, batch)

    monkeypatch.setattr(RollingFiles, "write", write_then_insert)
    strict = TableExport.model_validate(entry(name, lake, reader=reader))
    with pytest.raises(ExportError, match=r"50 rows exported, but count\(\*\) over the same window is 60") as failure:
        run_export(strict, Window.for_day(DAY))
    assert "row_count_check: strict" in str(failure.value) and failure.value.retryable  # the retry exports all 60
    assert read_objects(server, bucket) == {}

    with psycopg.connect(postgres.url, autocommit=True) as conn:  # the next attempt starts from the same state
        conn.execute(f"DELETE FROM {name} WHERE name = 'written during the export'")
    inserted.clear()
    lenient = TableExport.model_validate(entry(name, lake, reader=reader, row_count_check="warn"))
    result = run_export(lenient, Window.for_day(DAY))
    manifest = manifest_of(read_objects(server, bucket))
    assert (result.rows, result.source_count) == (50, 60)
    assert (manifest.rows, manifest.source_count, manifest.row_count_check) == (50, 60, "warn")


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's reading: one store is enough
def test_auto_probes_the_fetch_phase_and_publishes_the_day_exactly_either_way(
    connections, postgres, lake, table, monkeypatch, caplog
):
    """``fetch_phase: auto`` on a source that has a fetch phase: the day cut by its histogram, the
    first halves of the largest sub-windows read both ways on the read's connections (cursors of
    their own names, left closed), then the day read the way that was faster, every row once."""
    import logging

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.engines import stream
    from cratedb_airflow_export.export import run_export
    from cratedb_airflow_export.windows import Window
    from tests.conftest import fetch_phase_on_postgres

    name, rows = table
    fetch_phase_on_postgres(monkeypatch, rows=5, readers=2)
    monkeypatch.setattr(stream, "PROBE_SHARE", 1)
    cfg = TableExport.model_validate(entry(name, lake, reader="cursor", cursors=2, batch_size=3))
    with caplog.at_level(logging.INFO, logger="cratedb_airflow_export"):
        result = run_export(cfg, Window.for_day(DAY))
    said = [r.getMessage() for r in caplog.records]
    probed = [line for line in said if "sub-window(s) read in" in line]
    assert 1 <= len(probed) <= 2, probed  # a second round where the first was not clear
    assert all(line.startswith(f"{name}: about 5 rows of 2 sub-window(s) read in ") for line in probed), probed
    chose = [line for line in said if line.startswith(f"{name}: reading ")]
    reading = [line for line in said if line.startswith(f"Reading {name} in ")]
    assert len(chose) == len(reading) == 1
    assert ("fetch phase" in reading[0]) == chose[0].endswith("through CrateDB's fetch phase"), (chose, reading)
    expected = sorted(r[0] for r in rows_of_day(rows, DAY))
    assert result.rows == len(expected)
    data = data_objects(read_objects(lake.server, lake.bucket)).values()
    exported = [line["hash_id"] for blob in data for line in json_lines(blob)]
    assert sorted(exported) == expected


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's count: one store is enough
def test_the_count_runs_while_the_rows_are_read(airflow_db, connections, lake, table, monkeypatch):
    """count(*) runs on a connection of its own during the read: here it waits until the first
    rows have been written (it would wait forever, and fail, if it ran before the read)."""
    import threading

    from cratedb_airflow_export import attempt
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.engines.stream import RollingFiles
    from cratedb_airflow_export.export import run_export
    from cratedb_airflow_export.windows import Window

    name, rows = table
    writing = threading.Event()
    real_state, real_write = attempt.window_state, RollingFiles.write

    def count_once_rows_are_written(*args, **kwargs):
        assert writing.wait(timeout=30), "count(*) ran before the rows were read"
        return real_state(*args, **kwargs)

    def write(self, batch):
        writing.set()
        return real_write(self, batch)

    monkeypatch.setattr(attempt, "window_state", count_once_rows_are_written)
    monkeypatch.setattr(RollingFiles, "write", write)
    for reader in ("auto", "cursor"):
        writing.clear()
        cfg = TableExport.model_validate({**entry(name, lake), "reader": reader})
        assert run_export(cfg, Window.for_day(DAY)).rows == len(rows_of_day(rows, DAY)) == 50


def test_hive_partition_reads_back_exactly_the_source_rows(airflow_db, connections, lake, table):
    """pyarrow's own file system on each store reads the Hive layout back (not the package)."""
    import pyarrow.dataset as ds

    bucket = lake.bucket
    name, rows = table
    dag = make_dag("e2e_pyarrow", [entry(name, lake)])
    for day in SAMPLE_DAYS:
        assert task_states(run_dag(dag, day)) == {f"export_{name}": "success"}
    fs = lake.arrow_filesystem()
    dataset = ds.dataset(f"{bucket}/lake/{name}", filesystem=fs, format="json", partitioning="hive")
    assert len(dataset.files) == 3  # _SUCCESS and _manifest.json are ignored by readers
    table_ = dataset.to_table(filter=ds.field("dt") == "2024-01-04")
    got = sorted((r["hash_id"], r["name"], r["tags"]["host"]) for r in table_.to_pylist())
    assert got == sorted((r[0], r[2], r[3]["host"]) for r in rows_of_day(rows, DAY))
    assert dataset.to_table().num_rows == len(rows)


def test_asset_event_per_table(airflow_db, connections, lake, table, metrics):
    bucket = lake.bucket
    name, _ = table
    dag = make_dag("e2e_assets", [entry(name, lake), entry("doc.metrics", lake)])
    dag_run = run_dag(dag, DAY)
    assert set(task_states(dag_run).values()) == {"success"}
    events = asset_events("e2e_assets", dag_run.run_id)
    assert [uri for uri, _, _ in events] == sorted(
        [f"{lake.scheme}://{bucket}/lake/doc.metrics", f"{lake.scheme}://{bucket}/lake/{name}"]
    )
    for uri, _, extra in events:
        table_name = uri.rsplit("/", 1)[-1]
        assert extra == {
            "table": table_name,
            "interval": {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"},
            "rows": 50,
            "schema_changes": [],
            "partition": f"{uri}/dt=2024-01-04/",
            "manifest": f"{uri}/dt=2024-01-04/_manifest.json",
        }


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the tutorial's target_bucket names an S3 bucket
def test_publish_touches_no_other_tables_objects(airflow_db, connections, lake, table, metrics):
    """Two tables whose folders are as close as configuration allows: 'data-2024-01-04/' (tutorial
    layout) is a string prefix of the other's 'data-2024-01-04x/...' keys. Publishing (and
    republishing) the first leaves every object of the second as it was."""
    server, bucket = lake.server, lake.bucket
    name, _ = table
    dag = make_dag(
        "e2e_close_folders",
        [
            entry(name, lake, target=None, target_bucket=f"{bucket}/data"),
            entry("doc.metrics", lake, target=f"{lake.scheme}://{bucket}/data-2024-01-04x"),
        ],
    )
    assert set(task_states(run_dag(dag, DAY)).values()) == {"success"}
    store = server.store()
    client = store.client
    others = {
        o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket, Prefix="data-2024-01-04x/")["Contents"]
    }
    assert sorted(others) == partition_keys("data-2024-01-04x/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz")
    only_first = make_dag("e2e_close_folders_rerun", [entry(name, lake, target=None, target_bucket=f"{bucket}/data")])
    assert task_states(run_dag(only_first, DAY)) == {f"export_{name}": "success"}
    objects = read_objects(server, bucket)
    assert sorted(objects) == sorted([*partition_keys("data-2024-01-04", "part-00000.jsonl.gz"), *others])
    assert {k: client.head_object(Bucket=bucket, Key=k)["ETag"] for k in others} == others
