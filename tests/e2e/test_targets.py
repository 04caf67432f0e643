"""The whole pipeline on every store, against a real server each (S3: moto; Azure Blob Storage:
Azurite; Google Cloud Storage: fake-gcs-server), through the same code: export (stream engine, each
format), rerun, verify (OK, then a tampered file and a missing manifest found), restore into an
empty table (exact rows), retention (purged only where the archive verifies, then restored), the DAG
through Airflow, and a second writer refused by the lease. Each store's bytes are read back through
the store's own client."""

from __future__ import annotations

import uuid
from datetime import date

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.lease import held
from cratedb_airflow_export.manifest import Manifest
from cratedb_airflow_export.restore import restore
from cratedb_airflow_export.retention import purge
from cratedb_airflow_export.verify import verify_partition
from cratedb_airflow_export.windows import Window
from tests.helpers import CHECKSUMS, SAMPLE_DAYS, Lake, asset_events, make_dag, run_dag, task_states

pytestmark = pytest.mark.e2e
FIRST, SECOND, THIRD = SAMPLE_DAYS
PER_DAY = 30


@pytest.fixture
def table(postgres) -> str:
    name = f"doc.tg_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, PER_DAY, seed=11), table=name)
    return name


def config(table: str, lake: Lake, **extra: object) -> TableExport:
    entry = {"table": table, "timestamp_column": "timestamp", "engine": "stream", "target": lake.target()}
    return TableExport.model_validate({**entry, **extra})


def rows(postgres, table: str, day: date | None = None) -> list[tuple]:
    where, params = (
        ("", ()) if day is None else ('WHERE "timestamp" >= %s AND "timestamp" < %s', Window.for_day(day).bounds())
    )
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        return conn.execute(f'SELECT * FROM {table} {where} ORDER BY "timestamp", hash_id', params).fetchall()


def empty_copy(postgres, table: str) -> str:
    name = f"{table}_back"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (LIKE {table})")
    return name


@pytest.mark.parametrize(("fmt", "compression"), [("jsonl", "gzip"), ("csv", "none"), ("parquet", "zstd")])
def test_export_rerun_verify_and_restore_are_exact_on_every_store(postgres, lake, table, fmt, compression):
    cfg = config(table, lake, format=fmt, compression=compression)
    window = Window.for_day(SECOND)
    first = run_export(cfg, window)
    assert first.rows == PER_DAY
    folder = f"lake/{table}/dt={SECOND}/"
    keys = lake.keys(folder)
    extension = {"jsonl": ".jsonl.gz", "csv": ".csv", "parquet": ".parquet"}[fmt]
    assert keys == sorted([f"{folder}_SUCCESS", f"{folder}_manifest.json", f"{folder}part-00000{extension}"])
    manifest = Manifest.from_bytes(lake.store.read(lake.bucket, f"{folder}_manifest.json"))
    assert (manifest.rows, [o.rows for o in manifest.objects]) == (PER_DAY, [PER_DAY])
    assert manifest.partition == f"{lake.target()}/{table}/dt={SECOND}/"
    algorithm = CHECKSUMS[lake.kind]
    assert [o.checksum.algorithm for o in manifest.objects if o.checksum] == [algorithm]  # the store's own

    again = run_export(cfg, window)  # a rerun replaces the day: the same keys, nothing staged or leased left
    assert again.rows == PER_DAY and lake.keys(folder) == keys
    assert lake.keys("_cratedb_export_") == []

    with psycopg.connect(postgres.url, autocommit=True) as conn, conn.cursor() as cursor:
        assert verify_partition(lake.store, cursor, cfg, window).ok
    back = empty_copy(postgres, table)
    (result,) = restore(cfg, [window], into=back)
    assert (result.rows, result.method) == (PER_DAY, "worker")
    assert rows(postgres, back) == rows(postgres, table, SECOND)

    data = f"{folder}part-00000{extension}"
    original = lake.store.read(lake.bucket, data)
    lake.store.put(lake.bucket, data, original[:-1] + bytes([original[-1] ^ 1]))  # one bit flipped, same size
    report = verify_partition(lake.store, None, cfg, window)
    assert not report.ok and any(data in problem for problem in report.problems), report.problems
    lake.store.delete(lake.bucket, [f"{folder}_manifest.json"])
    assert "_manifest.json is missing" in verify_partition(lake.store, None, cfg, window).problems


def test_retention_purges_only_verified_days_and_restore_brings_them_back(postgres, lake, table):
    cfg = config(table, lake, retain_days=1)
    before = rows(postgres, table)
    for day in (FIRST, SECOND):
        run_export(cfg, Window.for_day(day))
    lake.store.delete(lake.bucket, [f"lake/{table}/dt={SECOND}/_SUCCESS"])  # SECOND no longer complete
    outcomes = purge(cfg, THIRD)
    assert [(o.what, o.state, o.deleted) for o in outcomes] == [
        (f"day {FIRST}", "purged", PER_DAY),
        (f"day {SECOND}", "refused", None),
    ]
    assert rows(postgres, table, FIRST) == [] and len(rows(postgres, table, SECOND)) == PER_DAY
    assert f"lake/{table}/dt={FIRST}/_PURGED.json" in lake.keys(f"lake/{table}/dt={FIRST}/")
    with pytest.raises(ExportError, match="PartitionPurged"):
        run_export(cfg, Window.for_day(FIRST))  # the archive is the only copy now
    (result,) = restore(cfg, [Window.for_day(FIRST)])
    assert result.rows == PER_DAY
    assert rows(postgres, table) == before


def test_a_second_writer_meets_the_lease_on_every_store(lake, table, monkeypatch):
    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    cfg = config(table, lake)
    with held(lake.store, partition(cfg, SECOND), "someone-else", "export of another run", release=True):
        with pytest.raises(ExportError, match="LeaseHeld: another writer is at work"):
            run_export(cfg, Window.for_day(SECOND))
    assert lake.keys(f"lake/{table}/dt={SECOND}/") == []  # nothing published under another's lease
    assert run_export(cfg, Window.for_day(SECOND)).rows == PER_DAY


def test_the_dag_exports_to_every_store_through_airflow(airflow_db, postgres, lake, table):
    cfg = config(table, lake)
    dag = make_dag(f"e2e_targets_{lake.kind}", [cfg.model_dump(mode="json", exclude_defaults=True)])
    dag_run = run_dag(dag, SECOND)  # the data interval [SECOND, THIRD)
    assert task_states(dag_run) == {cfg.task_id: "success"}
    folder = f"lake/{table}/dt={SECOND}/"
    assert f"{folder}_SUCCESS" in lake.keys(folder)
    ((uri, _, extra),) = asset_events(dag.dag_id, dag_run.run_id)
    assert uri == f"{lake.target()}/{table}" and extra["rows"] == PER_DAY
