"""Against a real CrateDB: runs whenever CRATEDB_URL is set (postgresql://user:pass@host:5432/doc);
skipped with that reason otherwise. `make integration` runs it against `docker compose up -d --wait`
(compose.yaml: CrateDB and MinIO on 127.0.0.1), and CI does on the newest CrateDB 5.x and 6.x.

The ``copy`` engine needs CrateDB itself to reach the S3 endpoint: by default the local moto
server on 127.0.0.1 (so CrateDB must run on this machine), or set CRATEDB_S3_ENDPOINT,
CRATEDB_S3_ACCESS_KEY, CRATEDB_S3_SECRET_KEY and CRATEDB_S3_BUCKET for another store (the bucket is
created when missing). Every test uses tables and S3 prefixes of its own.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from devtools.devstack import LocalS3, RemoteS3, create_metrics, sample_metrics

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.connections import environment_lookup, source_params
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import plan_export, run_export
from cratedb_airflow_export.manifest import read_manifest
from cratedb_airflow_export.source import CRATEDB, check_table, connect, parse_version
from cratedb_airflow_export.windows import Window
from tests.helpers import REPO, SAMPLE_DAYS, airflow_cli, as_exported, data_objects, json_lines, rows_of_day

CRATEDB_URL = os.environ.get("CRATEDB_URL")
pytestmark = [
    pytest.mark.cratedb,
    pytest.mark.skipif(not CRATEDB_URL, reason="CRATEDB_URL is not set: no CrateDB server to test against"),
]
DAY = date(2024, 1, 4)
WINDOW = Window.for_day(DAY)


def crate() -> psycopg.Connection[Any]:
    return psycopg.connect(CRATEDB_URL, autocommit=True)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def store() -> Iterator[LocalS3]:
    """The S3 server CrateDB and the worker both write to: CRATEDB_S3_ENDPOINT (MinIO of
    compose.yaml, ``python -m devtools.s3server``), or a local one that refuses other access keys."""
    endpoint = os.environ.get("CRATEDB_S3_ENDPOINT")
    if endpoint:
        yield RemoteS3(
            access_key=os.environ.get("CRATEDB_S3_ACCESS_KEY", "minioadmin"),
            secret_key=os.environ.get("CRATEDB_S3_SECRET_KEY", "minioadmin"),
            endpoint=endpoint,
        )
        return
    server = LocalS3(check_access_key=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_conn(monkeypatch: pytest.MonkeyPatch, store: LocalS3) -> str:
    """AIRFLOW_CONN_AWS_DEFAULT for ``store``; returns the bucket (created when missing)."""
    name = store.ensure_bucket(os.environ.get("CRATEDB_S3_BUCKET") or f"it-{uuid.uuid4().hex[:10]}")
    extra = {"endpoint_url": store.endpoint_url, "region_name": "us-east-1"}
    conn = {"conn_type": "aws", "login": store.access_key, "password": store.secret_key, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    return name


@pytest.fixture
def crate_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """The tutorial's ``metrics`` table (generated ``month`` column) with 40 sample rows a day."""
    name = f"doc.{unique('export_it')}"
    rows = sample_metrics(SAMPLE_DAYS, 40, seed=7)
    with crate() as conn:
        create_metrics(conn, rows, cratedb=True, table=name)
    with exported_from(name, monkeypatch):
        yield name, rows


@contextmanager
def exported_from(name: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CrateDB table ``name`` (already created) as the export source; dropped afterwards."""
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", CRATEDB_URL or "")
    try:
        yield
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def objects_under(store: LocalS3, bucket: str, prefix: str) -> dict[str, bytes]:
    client = store.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(keys)}


def lines_of(objects: dict[str, bytes]) -> list[dict[str, Any]]:
    return [line for data in data_objects(objects).values() for line in json_lines(data)]


def entry(table: str, **overrides: Any) -> TableExport:
    return TableExport.model_validate({"table": table, "timestamp_column": "timestamp", **overrides})


# --- source checks ----------------------------------------------------------------------------


def test_source_checks_detect_cratedb(crate_table):
    name, _ = crate_table
    cfg = entry(name, target="s3://lake/x")
    spec = environment_lookup()("cratedb_connection")
    assert spec is not None
    with connect(source_params(spec)) as conn, conn.cursor() as cursor:
        info = check_table(cursor, cfg)
    assert info.dialect == CRATEDB
    assert info.timestamp_type == "timestamp with time zone"
    assert info.columns["tags"] == "object"


def test_a_missing_table_fails_naming_it(crate_table, s3_conn):
    cfg = entry(f"doc.{unique('missing')}", engine="stream", target=f"s3://{s3_conn}/missing")
    with pytest.raises(ExportError, match=r"does not exist \(not in information_schema\.tables\)"):
        run_export(cfg, WINDOW)


# --- copy: CrateDB writes the files -----------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "compression", "columns"),
    [("hive", "gzip", None), ("tutorial", "none", None), ("hive", "gzip", ["hash_id", "timestamp", "name"])],
)
def test_copy_engine_writes_the_day(crate_table, s3_conn, store, layout, compression, columns):
    name, rows = crate_table
    folder = unique("cp")
    target = {"target": f"s3://{s3_conn}/{folder}"} if layout == "hive" else {"target_bucket": f"{s3_conn}/{folder}"}
    cfg = entry(name, engine="copy", compression=compression, columns=columns, **target)
    result = run_export(cfg, WINDOW)
    expected = rows_of_day(rows, DAY)
    assert result.rows == len(expected)  # from the COPY command tag
    prefix = f"{folder}/{name}/dt=2024-01-04/" if layout == "hive" else f"{folder}-2024-01-04/"
    objects = objects_under(store, s3_conn, prefix)
    assert {k.rsplit("/", 1)[1] for k in objects} >= {"_SUCCESS", "_manifest.json"}
    suffix = ".json.gz" if compression == "gzip" else ".json"
    assert all(k.endswith(suffix) for k in data_objects(objects))
    lines = lines_of(objects)
    assert sorted(line["hash_id"] for line in lines) == sorted(r[0] for r in expected)
    if columns:
        assert {key for line in lines for key in line} == set(columns)
    # COPY TO writes timestamps as epoch milliseconds (CrateDB keeps milliseconds)
    by_id = {r[0]: r for r in expected}
    for line in lines:
        assert abs(line["timestamp"] - by_id[line["hash_id"]][1].timestamp() * 1000) < 1


def monthly(name: str, stamps: list[tuple[str | None, int]]) -> None:
    """``name`` partitioned by a generated ``month`` column (as the tutorial's retention DAG's tables
    are), holding a row per stamp."""
    with crate() as conn:
        conn.execute(
            f'CREATE TABLE {name} ("hash_id" BIGINT, "timestamp" TIMESTAMP WITH TIME ZONE, "name" TEXT, '
            '"tags" OBJECT(DYNAMIC), "fields" OBJECT(DYNAMIC), '
            '"month" TIMESTAMP WITH TIME ZONE GENERATED ALWAYS AS date_trunc(\'month\', "timestamp")) '
            'PARTITIONED BY ("month")'
        )
        conn.cursor().executemany(
            f'INSERT INTO {name} ("hash_id", "timestamp", "name") VALUES (%s, %s, %s)',
            [(hash_id, stamp, f"row {hash_id}") for stamp, hash_id in stamps],
        )
        conn.execute(f"REFRESH TABLE {name}")


@pytest.fixture
def monthly_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The tutorial's table partitioned by month, rows on both sides of 2024-02-01 00:00 UTC."""
    name = f"doc.{unique('monthly')}"
    stamps = [
        ("2024-01-30T23:59:59.999+00:00", 1),
        ("2024-01-31T00:00:00.000+00:00", 2),
        ("2024-01-31T23:59:59.999+00:00", 3),
        ("2024-02-01T00:00:00.000+00:00", 4),
        ("2024-02-01T12:00:00.000+00:00", 5),
    ]
    monthly(name, stamps)
    with exported_from(name, monkeypatch):
        yield name


@pytest.mark.parametrize("engine", ["copy", "stream"])
def test_a_day_at_a_month_boundary_of_a_partitioned_table(monthly_table, s3_conn, store, engine):
    folder = unique("month")
    cfg = entry(monthly_table, engine=engine, target=f"s3://{s3_conn}/{folder}")
    result = run_export(cfg, Window.for_day(date(2024, 1, 31)))
    assert result.rows == 2
    lines = lines_of(objects_under(store, s3_conn, f"{folder}/{monthly_table}/dt=2024-01-31/"))
    assert sorted(line["hash_id"] for line in lines) == [2, 3]


def test_a_rerun_after_rows_were_deleted_leaves_no_stale_shard_file(s3_conn, store, monkeypatch):
    name = f"doc.{unique('shards')}"
    with crate() as conn:
        conn.execute(f'CREATE TABLE {name} ("hash_id" BIGINT, "timestamp" TIMESTAMPTZ) CLUSTERED INTO 4 SHARDS')
        conn.cursor().executemany(
            f'INSERT INTO {name} ("hash_id", "timestamp") VALUES (%s, %s)',
            [(i, datetime(2024, 1, 4, tzinfo=timezone.utc) + timedelta(minutes=i)) for i in range(200)],
        )
        conn.execute(f"REFRESH TABLE {name}")
    folder = unique("rerun")
    cfg = entry(name, engine="copy", target=f"s3://{s3_conn}/{folder}")
    prefix = f"{folder}/{name}/dt=2024-01-04/"
    with exported_from(name, monkeypatch):
        first = run_export(cfg, WINDOW)
        assert first.rows == 200
        first_files = set(data_objects(objects_under(store, s3_conn, prefix)))
        assert len(first_files) > 1  # rows on several shards: a file each
        with crate() as conn:
            conn.execute(f"DELETE FROM {name} WHERE hash_id > 0")
            conn.execute(f"REFRESH TABLE {name}")
        second = run_export(cfg, WINDOW)
        assert second.rows == 1
        objects = objects_under(store, s3_conn, prefix)
        manifest = json.loads(objects[f"{prefix}_manifest.json"])
        assert set(data_objects(objects)) == {o["key"] for o in manifest["objects"]}
        assert [line["hash_id"] for line in lines_of(objects)] == [0]


def test_verify_confirms_what_copy_published(crate_table, s3_conn, store):
    from contextlib import closing

    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.verify import verify_partition

    name, rows = crate_table
    cfg = entry(name, engine="copy", target=f"s3://{s3_conn}/{unique('verify')}")
    run_export(cfg, WINDOW)
    connections = from_environment(cfg)
    with closing(connect(connections.database)) as conn, conn.cursor() as cursor:
        report = verify_partition(connections.store, cursor, cfg, WINDOW)
    assert report.ok, report.render()
    assert f"{len(rows_of_day(rows, DAY))} = manifest rows" in report.render()


def test_wrong_s3_credentials_seen_by_cratedb_fail_fast_and_publish_nothing(crate_table, s3_conn, store, monkeypatch):
    """The worker's bucket check passes (its keys are right); CrateDB gets keys S3 refuses."""
    from cratedb_airflow_export.engines import copy as copy_engine

    real = copy_engine.cratedb_s3_uri
    wrong = {"access_key": "AKIAWRONGKEY", "secret_key": "wrong-Secret/+="}
    monkeypatch.setattr(
        copy_engine, "cratedb_s3_uri", lambda creds, loc: real(dataclasses.replace(creds, **wrong), loc)
    )
    name, _ = crate_table
    folder = unique("badkeys")
    cfg = entry(name, engine="copy", target=f"s3://{s3_conn}/{folder}")
    started = time.monotonic()
    with pytest.raises(ExportError) as failure:
        run_export(cfg, WINDOW)
    assert time.monotonic() - started < 120
    text = str(failure.value)
    assert text.startswith(f"export of {name} for [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00) failed")
    assert objects_under(store, s3_conn, f"{folder}/") == {}


def test_restore_by_copy_from_equals_the_source(crate_table, s3_conn):
    from cratedb_airflow_export.restore import restore

    name, rows = crate_table
    copy_of = f"doc.{unique('restored')}"
    with crate() as conn:
        create_metrics(conn, [], cratedb=True, table=copy_of)
    try:
        cfg = entry(name, engine="copy", target=f"s3://{s3_conn}/{unique('restore')}")
        run_export(cfg, WINDOW)
        (result,) = restore(cfg, [WINDOW], into=copy_of, method="copy")
        expected = rows_of_day(rows, DAY)
        assert (result.method, result.rows) == ("copy", len(expected))
        with crate() as conn:
            got = conn.execute(f'SELECT "hash_id", "name", "tags" FROM {copy_of} ORDER BY "hash_id"').fetchall()
        assert [tuple(r) for r in got] == sorted((h, n, t) for h, _, n, t, _ in expected)
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {copy_of}")


def with_extra_on_the_day(name: str) -> None:
    """A column ``extra`` added to ``name``, with a value in every row of the test's day."""
    with crate() as conn:
        conn.execute(f"ALTER TABLE {name} ADD COLUMN extra TEXT")
        day = 'WHERE "timestamp" >= %s AND "timestamp" < %s'
        conn.execute(f"UPDATE {name} SET extra = 'kept' {day}", WINDOW.bounds())
        conn.execute(f"REFRESH TABLE {name}")


@pytest.mark.parametrize(("engine", "fmt"), [("copy", "jsonl"), ("stream", "parquet")])
def test_a_restore_of_a_column_dropped_since_is_refused_before_anything_is_deleted(crate_table, s3_conn, engine, fmt):
    """Found by the oracle on 6.4.3: the archive has a column the table dropped since. COPY FROM
    loaded the other rows and failed those with a value there, after --replace had deleted the day;
    the worker refused only at its first batch, after the DELETE too (CrateDB cannot roll back)."""
    from cratedb_airflow_export.errors import ExportError
    from cratedb_airflow_export.restore import restore

    name, rows = crate_table
    with_extra_on_the_day(name)
    cfg = entry(name, engine=engine, format=fmt, target=f"s3://{s3_conn}/{unique('dropped')}")
    run_export(cfg, WINDOW)
    with crate() as conn:
        conn.execute(f"ALTER TABLE {name} DROP COLUMN extra")
        before = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
    refused = r"RestoreRefused: the partition has column\(s\) \['extra'\] that the target"
    with pytest.raises(ExportError, match=refused):
        restore(cfg, [WINDOW], replace=True)
    with crate() as conn:
        conn.execute(f"REFRESH TABLE {name}")
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone() == before == (len(rows),)


def test_a_replace_restore_that_fails_after_the_delete_says_the_rows_are_not_back(crate_table, s3_conn):
    """A value the column's type no longer takes (the column dropped and added again as BIGINT):
    COPY FROM fails rows after --replace deleted the day; CrateDB cannot roll back, so the failure
    says how many rows are not back and that the archive holds them."""
    from cratedb_airflow_export.errors import ExportError
    from cratedb_airflow_export.restore import restore

    name, rows = crate_table
    with_extra_on_the_day(name)
    cfg = entry(name, engine="copy", target=f"s3://{s3_conn}/{unique('retyped')}")
    run_export(cfg, WINDOW)
    with crate() as conn:
        conn.execute(f"ALTER TABLE {name} DROP COLUMN extra")
        conn.execute(f"ALTER TABLE {name} ADD COLUMN extra BIGINT")
    on_the_day = len(rows_of_day(rows, DAY))
    said = (
        rf"RestoreFailed: COPY FROM reported failures: .*; the {on_the_day} rows of {name} in \[.*\) deleted first "
        r"\(--replace\) are not back \(CrateDB cannot roll back\); the archive still holds the day"
    )
    with pytest.raises(ExportError, match=said):
        restore(cfg, [WINDOW], replace=True)


# --- stream: the worker reads by cursor -------------------------------------------------------


def test_stream_engine_against_cratedb(crate_table, s3_conn, store):
    name, rows = crate_table
    folder = unique("it")
    cfg = entry(name, engine="stream", target=f"s3://{s3_conn}/{folder}")
    result = run_export(cfg, WINDOW)
    expected = rows_of_day(rows, DAY)
    assert result.rows == len(expected)
    exported = lines_of(objects_under(store, s3_conn, f"{folder}/{name}/dt=2024-01-04/"))
    assert sorted(r["hash_id"] for r in exported) == sorted(r[0] for r in expected)
    by_id = {r[0]: as_exported(r) for r in expected}
    for row in exported:
        want = by_id[row["hash_id"]]
        assert (row["name"], row["tags"]) == (want["name"], want["tags"])
        # CrateDB keeps milliseconds: the stream engine writes what it reads
        got_ts, want_ts = datetime.fromisoformat(row["timestamp"]), datetime.fromisoformat(want["timestamp"])
        assert abs(got_ts - want_ts) < timedelta(milliseconds=1)


TYPED_DDL = """CREATE TABLE {name} (
    "id" INTEGER, "ts" TIMESTAMP WITH TIME ZONE, "local_ts" TIMESTAMP WITHOUT TIME ZONE,
    "obj" OBJECT(DYNAMIC), "tags" ARRAY(TEXT), "nums" ARRAY(BIGINT), "pos" GEO_POINT, "addr" IP,
    "ratio" REAL, "flag" BOOLEAN, "nothing" TEXT
)"""
TYPED_ROWS = """INSERT INTO {name}
 ("id", "ts", "local_ts", "obj", "tags", "nums", "pos", "addr", "ratio", "flag", "nothing")
VALUES
 (1, '2024-01-04T10:00:00.123+00:00', '2024-01-04T08:30:00', {{a = 1, nested = {{b = 'x', deeper = {{c = [1, 2]}}}}}},
  ['a', 'b'], [1, 2], [13.4, 52.5], '10.0.0.1', 1.5, true, NULL),
 (2, '2024-01-04T23:59:59.999+00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL)"""
EXPECTED_TYPED = [
    {
        "id": 1,
        "ts": datetime(2024, 1, 4, 10, 0, 0, 123000, tzinfo=timezone.utc),
        "local_ts": datetime(2024, 1, 4, 8, 30),
        "obj": {"a": 1, "nested": {"b": "x", "deeper": {"c": [1, 2]}}},
        "tags": ["a", "b"],
        "nums": [1, 2],
        "pos": [13.4, 52.5],
        "addr": "10.0.0.1",
        "ratio": 1.5,
        "flag": True,
        "nothing": None,
    },
    {
        "id": 2,
        "ts": datetime(2024, 1, 4, 23, 59, 59, 999000, tzinfo=timezone.utc),
        "local_ts": None,
        "obj": None,
        "tags": None,
        "nums": None,
        "pos": None,
        "addr": None,
        "ratio": None,
        "flag": False,
        "nothing": None,
    },
]


@pytest.fixture
def typed_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"doc.{unique('typed')}"
    with crate() as conn:
        conn.execute(TYPED_DDL.format(name=name))
        conn.execute(TYPED_ROWS.format(name=name))
        conn.execute(f"REFRESH TABLE {name}")
    with exported_from(name, monkeypatch):
        yield name


def _normalised(row: dict[str, Any], *, text: bool) -> dict[str, Any]:
    """A row read back, as Python values: timestamps parsed, JSON text (CSV, Parquet objects) loaded."""
    out = dict(row)
    for key in ("ts", "local_ts"):
        if isinstance(out[key], str):
            out[key] = datetime.fromisoformat(out[key]) if out[key] else None
    if isinstance(out["obj"], str):
        out["obj"] = json.loads(out["obj"]) if out["obj"] else None
    if text:  # CSV: every value is text, NULL is empty
        for key in ("tags", "nums", "pos"):
            out[key] = json.loads(out[key]) if out[key] else None
        out["id"] = int(out["id"])
        out["ratio"] = float(out["ratio"]) if out["ratio"] else None
        out["flag"] = {"true": True, "false": False}[out["flag"]]
        out["addr"] = out["addr"] or None
        out["nothing"] = out["nothing"] or None
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_stream_keeps_cratedb_types_in_every_format(typed_table, s3_conn, store, fmt):
    import pyarrow.parquet as pq

    folder = unique("typed")
    cfg = TableExport.model_validate(
        {
            "table": typed_table,
            "timestamp_column": "ts",
            "engine": "stream",
            "format": fmt,
            "target": f"s3://{s3_conn}/{folder}",
        }
    )
    assert run_export(cfg, WINDOW).rows == 2
    (data,) = data_objects(objects_under(store, s3_conn, f"{folder}/{typed_table}/dt=2024-01-04/")).values()
    if fmt == "jsonl":
        got = [_normalised(r, text=False) for r in json_lines(data)]
    elif fmt == "csv":
        got = [_normalised(r, text=True) for r in csv.DictReader(io.StringIO(gzip.decompress(data).decode()))]
    else:
        got = [_normalised(r, text=False) for r in pq.read_table(io.BytesIO(data)).to_pylist()]
    got.sort(key=lambda r: r["id"])
    assert [{k: r.get(k) for k in EXPECTED_TYPED[0]} for r in got] == EXPECTED_TYPED


BINARY_DDL = """CREATE TABLE {name} (
    id INT, flag BOOLEAN, small SMALLINT, big BIGINT, r REAL, d DOUBLE PRECISION, t TEXT, v VARCHAR(20),
    obj OBJECT(DYNAMIC), ts TIMESTAMP WITH TIME ZONE, local_ts TIMESTAMP WITHOUT TIME ZONE
)"""
BINARY_ROWS = [
    (
        1,
        True,
        -32768,
        -(2**62),
        0.1,
        1e308,
        "température",
        "電力",
        {"a": [1, 2.5, None], "b": "ü"},
        "2024-01-04T00:00:00.001+00:00",
        "1999-12-31T23:59:59.999",
    ),
    (
        2,
        False,
        32767,
        2**62 + 12345,
        float("nan"),
        float("-inf"),
        "",
        "x",
        {},
        "1969-12-31T23:59:59.999+00:00",
        "0001-01-01T00:00:00",
    ),
    (3, None, None, None, None, None, None, None, None, None, None),
    (
        4,
        True,
        0,
        0,
        -0.0,
        5e-324,
        "a\nb",
        "y",
        {"n": {"m": [True]}},
        "9999-12-31T23:59:59.999+00:00",
        "2000-01-01T00:00:00",
    ),
    (5, False, 1, 1, 3.5, -2.25, "z", "w", {"k": 1}, "1900-03-01T12:00:00+00:00", "1800-06-01T06:30:00.5"),
]


def test_the_binary_format_reads_what_the_text_format_reads_on_cratedb():
    """The stream engine asks CrateDB for the binary format once a result showed every column in
    readers.BINARY_OIDS: the same values as the text format, at the types' edges (before 1970 and
    2000, the last millisecond of 9999, int extremes, NaN, unicode, nested objects, NULL). A DATE
    column keeps the read on text (CrateDB 5.10.16 sends a wrong binary DATE)."""
    import pyarrow as pa
    from psycopg.types.json import Json

    from cratedb_airflow_export.readers import CursorReader, FetchBudget, Piece, Prefetcher, register_loaders

    name = f"doc.{unique('binary')}"
    with crate() as conn:
        conn.execute(BINARY_DDL.format(name=name))
        for row in BINARY_ROWS:  # one by one: CrateDB's bulk insert skips a refused row silently
            conn.execute(
                f"INSERT INTO {name} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*row[:8], None if row[8] is None else Json(row[8]), *row[9:]),
            )
        conn.execute(f"REFRESH TABLE {name}")

    def read(query: str, binary: bool) -> tuple[pa.Table, int]:
        with crate() as conn:
            conn.execute(f"DECLARE c NO SCROLL CURSOR WITH HOLD FOR {query}")
            turns = [conn.cursor(), conn.cursor()]
            for cursor in turns:
                register_loaders(cursor)
            piece = Piece(fetch=lambda rows: "FETCH FORWARD 1 FROM c", close="CLOSE c")
            reader = CursorReader(turns, [piece], budget=FetchBudget.fixed(1), binary=binary)
            with Prefetcher(reader, stall_seconds=30, what="test") as prefetcher:
                table = pa.Table.from_batches(list(prefetcher), schema=prefetcher.schema)
            return table, reader.binary_fetches

    try:
        query = f"SELECT * FROM {name} ORDER BY id"
        (text, _), (binary, fetches) = read(query, False), read(query, True)
        assert fetches == len(BINARY_ROWS)  # every FETCH after the first, the empty last one too
        assert binary.schema == text.schema
        got, want = binary.to_pylist(), text.to_pylist()
        assert str(got[1].pop("r")) == str(want[1].pop("r")) == "nan"
        assert got == want
        assert [row["id"] for row in got] == [1, 2, 3, 4, 5]
        assert got[3]["ts"] == datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
        assert got[1]["ts"] == datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc)
        assert got[4]["local_ts"] == datetime(1800, 6, 1, 6, 30, 0, 500000)
        assert json.loads(got[0]["obj"]) == BINARY_ROWS[0][8]
        dated_query = f"SELECT id, ts::date AS day FROM {name} ORDER BY id"
        (dated, fetches), (dated_text, _) = read(dated_query, True), read(dated_query, False)
        assert fetches == 0
        assert dated == dated_text and dated.column("day")[0].as_py() == date(2024, 1, 4)
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def test_the_row_count_check_fails_a_mismatch_and_publishes_nothing(crate_table, s3_conn, store, monkeypatch):
    from cratedb_airflow_export import attempt

    name, rows = crate_table
    folder = unique("count")
    cfg = entry(name, engine="stream", target=f"s3://{s3_conn}/{folder}")
    result = run_export(cfg, WINDOW)
    manifest = read_manifest(store.store(), s3_conn, f"{folder}/{name}/dt=2024-01-04/_manifest.json")
    assert manifest.rows == manifest.source_count == result.rows == len(rows_of_day(rows, DAY))

    real_state = attempt.window_state

    def one_more(*args: Any, **kwargs: Any) -> Any:
        state = real_state(*args, **kwargs)
        return dataclasses.replace(state, count=state.count + 1)

    monkeypatch.setattr(attempt, "window_state", one_more)
    other = entry(name, engine="stream", target=f"s3://{s3_conn}/{folder}-strict")
    with pytest.raises(ExportError, match="count"):
        run_export(other, WINDOW)
    assert f"{folder}-strict/{name}/dt=2024-01-04/_SUCCESS" not in objects_under(store, s3_conn, f"{folder}-strict/")


def test_plan_statements_run_on_cratedb_as_shown(crate_table):
    """`cratedb-export plan` shows the stream engine's statements with their $n parameters:
    executed exactly so (psycopg's raw cursor sends $n placeholders as written), they read the day."""
    name, rows = crate_table
    plan = plan_export(entry(name, engine="stream", target="s3://lake/plan"), WINDOW)
    fetched: list[Any] = []
    counted = None
    with crate() as conn, psycopg.RawCursor(conn) as cursor:
        for statement, params in zip(plan["statements"], plan["parameters"], strict=True):
            cursor.execute(statement, params)
            if statement.startswith("FETCH"):
                fetched += cursor.fetchall()  # one FETCH per cursor
            elif "count(*)" in statement.lower():
                counted = cursor.fetchone()[0]  # type: ignore[index]
    expected = len(rows_of_day(rows, DAY))
    assert len(fetched) == expected and counted == expected


def test_an_empty_day_is_a_complete_partition(crate_table, s3_conn, store):
    import pyarrow.parquet as pq

    name, _ = crate_table
    folder = unique("empty")
    cfg = entry(name, engine="stream", format="parquet", target=f"s3://{s3_conn}/{folder}")
    assert run_export(cfg, Window.for_day(date(2023, 6, 1))).rows == 0
    objects = objects_under(store, s3_conn, f"{folder}/{name}/dt=2023-06-01/")
    assert f"{folder}/{name}/dt=2023-06-01/_SUCCESS" in objects
    (data,) = data_objects(objects).values()
    assert pq.read_table(io.BytesIO(data)).num_rows == 0


def test_stream_json_style_cratedb_equals_what_copy_to_wrote(typed_table, s3_conn, store):
    """The same rows exported by CrateDB's COPY TO and by the stream engine with json_style
    cratedb: every line holds the same values (key order and number spelling aside)."""
    lines = {}
    for engine, extra in (("copy", {}), ("stream", {"json_style": "cratedb"})):
        folder = unique(f"style-{engine}")
        cfg = TableExport.model_validate(
            {"table": typed_table, "timestamp_column": "ts", "engine": engine, "target": f"s3://{s3_conn}/{folder}"}
            | extra
        )
        assert run_export(cfg, WINDOW).rows == 2
        lines[engine] = sorted(
            lines_of(objects_under(store, s3_conn, f"{folder}/{typed_table}/dt=2024-01-04/")), key=lambda r: r["id"]
        )
    assert lines["stream"] == lines["copy"]
    assert lines["copy"][1] == {"id": 2, "ts": 1704412799999, "flag": False}  # NULL columns left out


@pytest.mark.parametrize("engine", ["copy", "stream"])
def test_a_query_cratedb_rejects_fails_at_once_with_its_message(crate_table, s3_conn, store, engine):
    """An invalid regular expression in the filter: CrateDB rejects the query when it starts. The
    export fails within seconds with CrateDB's own message, and publishes nothing. On CrateDB 5.10
    (before 6.2.10, and 6.3.0 to 6.3.3) a DECLARE whose query fails so never answers: without the
    probe the stream engine waited for the attempt's whole bound (here one minute)."""
    name, _ = crate_table
    with crate() as conn, pytest.raises(psycopg.Error) as direct:
        conn.execute(f"SELECT * FROM {name} WHERE \"name\" ~ '('").fetchall()
    cratedb_says = str(direct.value).splitlines()[0]
    folder = unique("rejected")
    cfg = entry(name, engine=engine, filter="\"name\" ~ '('", timeout_minutes=1, target=f"s3://{s3_conn}/{folder}")
    started = time.monotonic()
    with pytest.raises(ExportError) as failure:
        run_export(cfg, WINDOW)
    assert time.monotonic() - started < 30
    assert cratedb_says in str(failure.value)
    assert objects_under(store, s3_conn, f"{folder}/") == {}


# --- every column type, both engines, every format ---------------------------------------------

ALL_TYPES_DDL = """CREATE TABLE {name} (
    "id" INTEGER, "ts" TIMESTAMP WITH TIME ZONE, "local_ts" TIMESTAMP WITHOUT TIME ZONE,
    "b" BYTE, "s" SMALLINT, "i" INTEGER, "l" BIGINT, "r" REAL, "d" DOUBLE PRECISION, "n" NUMERIC(10, 3),
    "c" CHAR(3), "v" VARCHAR(10), "t" TEXT, "flag" BOOLEAN, "addr" IP,
    "pos" GEO_POINT, "shape" GEO_SHAPE, "bits" BIT(4), "vec" FLOAT_VECTOR(3),
    "ints" ARRAY(INTEGER), "texts" ARRAY(TEXT), "objs" ARRAY(OBJECT(DYNAMIC)),
    "strict_o" OBJECT(STRICT) AS ("x" INTEGER, "y" TEXT), "dyn_o" OBJECT(DYNAMIC), "ign_o" OBJECT(IGNORED),
    "day" TIMESTAMP WITH TIME ZONE
) {partitioning}"""
ALL_TYPES_ROWS = [
    """INSERT INTO {name} VALUES (1, '2024-01-04T10:00:00.123Z', '2024-01-04T08:30:00', 7, -3, 42, 9007199254740993,
    1.5, 2.25, 1234.567, 'ab', 'hello', 'text "q" \\ é', true, '10.0.0.1', [13.4, 52.5],
    'POLYGON ((5 5, 10 5, 10 10, 5 10, 5 5))', B'1010', [0.5, 1.25, -2.0], [1, 2, NULL], ['a', NULL, 'c'],
    [{{a=1}}, {{b='x'}}], {{x=1, y='why'}}, {{k='v', n={{m=2}}}}, {{anything=[1, 2], other='x'}},
    '2024-01-04')""",
    # a key the dynamic object gains during the day, and a row that is NULL but for its timestamp
    """INSERT INTO {name} ("id", "ts", "dyn_o", "day", "b") VALUES (2, '2024-01-04T12:00:00Z', {{k='w', added=[1, 2]}},
    '2024-01-04', -128)""",
    """INSERT INTO {name} ("id", "ts", "day") VALUES (3, '2024-01-04T23:59:59.999Z', '2024-01-04')""",
    """INSERT INTO {name} ("id", "ts", "day") VALUES (4, '2024-01-05T00:00:00Z', '2024-01-05')""",  # the next day
]


@contextmanager
def all_types_table(monkeypatch: pytest.MonkeyPatch, partitioning: str = "") -> Iterator[str]:
    name = f"doc.{unique('types')}"
    with crate() as conn:
        conn.execute(ALL_TYPES_DDL.format(name=name, partitioning=partitioning))
        for statement in ALL_TYPES_ROWS:
            conn.execute(statement.format(name=name))
        conn.execute(f"REFRESH TABLE {name}")
    with exported_from(name, monkeypatch):
        yield name


def export_lines(name: str, bucket: str, store: LocalS3, **options: Any) -> list[dict[str, Any]]:
    """The day's rows as the JSON Lines an export with ``options`` wrote, sorted by id."""
    folder = unique("lines")
    cfg = TableExport.model_validate(
        {"table": name, "timestamp_column": "ts", "target": f"s3://{bucket}/{folder}", **options}
    )
    assert run_export(cfg, WINDOW).rows == 3
    lines = lines_of(objects_under(store, bucket, f"{folder}/{name}/dt=2024-01-04/"))
    return sorted(lines, key=lambda line: line["id"])


@pytest.mark.parametrize(
    ("partitioning", "columns"),
    [
        ("", None),
        ('PARTITIONED BY ("day")', None),  # a plain timestamp column: COPY TO writes it as a string
        ("CLUSTERED INTO 3 SHARDS", ["id", "pos", "n", "bits", "b", "dyn_o"]),
    ],
)
def test_json_style_cratedb_writes_line_for_line_what_copy_to_writes(
    monkeypatch, s3_conn, store, partitioning, columns
):
    """Every CrateDB column type, NULLs, an object that gains keys during the day, partition columns
    and column lists: the stream engine's ``json_style: cratedb`` lines hold exactly the values of
    CrateDB's own COPY TO lines (key order aside)."""
    with all_types_table(monkeypatch, partitioning) as name:
        copy = export_lines(name, s3_conn, store, engine="copy", columns=columns)
        stream = export_lines(name, s3_conn, store, engine="stream", json_style="cratedb", columns=columns)
    assert stream == copy
    assert [line["id"] for line in copy] == [1, 2, 3]
    if columns is None:
        assert copy[0]["pos"] == [13.4, 52.5] and copy[0]["n"] == 1234.567 and copy[0]["bits"] == "B'1010'"
        assert copy[1]["dyn_o"] == {"k": "w", "added": [1, 2]} and copy[1]["b"] == -128
        assert set(copy[2]) == {"id", "ts", "day"}  # NULL columns left out
        assert copy[2]["day"] == (1704326400000 if not partitioning else "1704326400000")


EXPECTED_FIRST_ROW = {
    "id": 1,
    "b": 7,
    "s": -3,
    "l": 9007199254740993,
    "r": 1.5,
    "d": 2.25,
    "n": "1234.567",
    "c": "ab ",
    "v": "hello",
    "t": 'text "q" \\ é',
    "flag": True,
    "addr": "10.0.0.1",
    "pos": [13.4, 52.5],
    "bits": "1010",
    "vec": [0.5, 1.25, -2.0],
    "ints": [1, 2, None],
    "texts": ["a", None, "c"],
}
JSON_COLUMNS = {"shape", "objs", "strict_o", "dyn_o", "ign_o"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_type_in_every_format_reads_back_in_duckdb(monkeypatch, s3_conn, store, tmp_path, fmt):
    """What a lake tool sees: DuckDB reads each format's file and gets the day's three rows with
    their values (JSON columns as JSON text it can parse, geo_point exactly as written)."""
    import duckdb

    with all_types_table(monkeypatch) as name:
        folder = unique(f"duck-{fmt}")
        cfg = TableExport.model_validate(
            {
                "table": name,
                "timestamp_column": "ts",
                "engine": "stream",
                "format": fmt,
                "target": f"s3://{s3_conn}/{folder}",
            }
        )
        assert run_export(cfg, WINDOW).rows == 3
        (data,) = data_objects(objects_under(store, s3_conn, f"{folder}/{name}/dt=2024-01-04/")).values()
    path = tmp_path / f"part.{fmt}"
    path.write_bytes(gzip.decompress(data) if fmt != "parquet" else data)
    reader = {"jsonl": "read_json_auto", "csv": "read_csv_auto", "parquet": "read_parquet"}[fmt]
    relation = duckdb.sql(f"SELECT * FROM {reader}('{path}') ORDER BY id")
    rows = [dict(zip(relation.columns, values, strict=True)) for values in relation.fetchall()]
    assert [row["id"] for row in rows] == [1, 2, 3]
    first = rows[0]
    for key, want in EXPECTED_FIRST_ROW.items():
        got = first[key]
        if fmt == "csv" and isinstance(want, list):
            got = json.loads(got)
        if key == "n" or (fmt == "csv" and key == "bits"):  # CSV: DuckDB's sniffer takes "1010" for a number
            got = str(got)
        if key == "r":
            got = float(got)
        assert got == want, (fmt, key, got)
    assert json.loads(first["strict_o"]) == {"x": 1, "y": "why"} if isinstance(first["strict_o"], str) else True
    assert rows[1]["b"] == -128
    assert all(rows[2][key] is None for key in EXPECTED_FIRST_ROW if key != "id")


def test_copy_to_with_a_column_list_cannot_write_uncompressed_files_to_s3(crate_table, s3_conn, store):
    """Why configuration refuses engine copy + columns + compression none: CrateDB itself fails it
    (the upload is closed twice). Should a CrateDB release fix it, this test fails: lift the rule."""
    name, _ = crate_table
    uri = (
        f"s3://{store.access_key}:{store.secret_key}@{store.endpoint_url.split('://', 1)[1]}/{s3_conn}/{unique('cols')}"
    )
    protocol = store.endpoint_url.split("://", 1)[0]
    with crate() as conn:
        with pytest.raises(psycopg.Error):
            conn.execute(
                f"COPY {name} (\"hash_id\") TO DIRECTORY %s WITH (format = 'json_object', protocol = %s)",
                (uri, protocol),
            )
        gzipped = "format = 'json_object', compression = 'gzip', protocol = %s"
        conn.execute(f'COPY {name} ("hash_id") TO DIRECTORY %s WITH ({gzipped})', (uri + "-gz", protocol))
    with pytest.raises(ValueError, match="fails writing uncompressed files to S3"):
        entry(name, engine="copy", columns=["hash_id"], compression="none", target=f"s3://{s3_conn}/x")


# --- the command line and the shipped DAG, against CrateDB ------------------------------------

CLI = str(Path(sys.executable).parent / "cratedb-export")


def cli(*args: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args, "--config", str(config)], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_run_verify_restore_and_reconcile_from_the_command_line(crate_table, s3_conn, store, tmp_path):
    """``cratedb-export run``, ``verify``, ``restore`` (COPY FROM and the worker) and
    ``reconcile`` as an operator types them, connections from the environment, against CrateDB."""
    name, rows = crate_table
    folder = unique("cli")
    config = tmp_path / "tables.yaml"
    tables = [
        {
            "table": name,
            "timestamp_column": "timestamp",
            "engine": engine,
            "target": f"s3://{s3_conn}/{folder}-{engine}",
        }
        for engine in ("copy", "stream")
    ]
    env = {"AIRFLOW_CONN_CRATEDB_CONNECTION": os.environ["AIRFLOW_CONN_CRATEDB_CONNECTION"]}
    env["AIRFLOW_CONN_AWS_DEFAULT"] = os.environ["AIRFLOW_CONN_AWS_DEFAULT"]
    expected = len(rows_of_day(rows, DAY))
    copies = {engine: f"doc.{unique(f'restored_{engine}')}" for engine in ("copy", "stream")}
    with crate() as conn:
        for target in copies.values():
            create_metrics(conn, [], cratedb=True, table=target)
    try:
        for engine in ("copy", "stream"):
            config.write_text(json.dumps({"tables": [t for t in tables if t["engine"] == engine]}))
            done = cli("run", "--table", name, "--date", DAY.isoformat(), config=config, env=env)
            assert done.returncode == 0, done.stderr[-2000:]
            checked = cli("verify", "--table", name, "--date", DAY.isoformat(), config=config, env=env)
            assert checked.returncode == 0 and checked.stdout.startswith("OK: "), checked.stdout + checked.stderr
            assert f"source count(*) over the window: {expected} = manifest rows" in checked.stdout
            method = "copy" if engine == "copy" else "worker"
            back = cli(
                "restore", "--table", name, "--date", DAY.isoformat(), "--into", copies[engine], "--method", method,
                config=config, env=env,
            )  # fmt: skip
            assert back.returncode == 0, back.stderr[-2000:]
            with crate() as conn:
                got = conn.execute(
                    f'SELECT "hash_id", "name", "tags" FROM {copies[engine]} ORDER BY "hash_id"'
                ).fetchall()
            assert [tuple(r) for r in got] == sorted((h, n, t) for h, _, n, t, _ in rows_of_day(rows, DAY)), engine
        # a late row for the day: reconcile exports the day again
        with crate() as conn:
            conn.execute(
                f'INSERT INTO {name} ("hash_id", "timestamp", "name") VALUES (%s, %s, %s)',
                (999_999, datetime(2024, 1, 4, 12, tzinfo=timezone.utc), "late"),
            )
            conn.execute(f"REFRESH TABLE {name}")
        again = cli("reconcile", "--days", "1", "--until", DAY.isoformat(), config=config, env=env)
        assert again.returncode == 0, again.stderr[-2000:]
        manifest = read_manifest(store.store(), s3_conn, f"{folder}-stream/{name}/dt=2024-01-04/_manifest.json")
        assert manifest.rows == manifest.source_count == expected + 1
    finally:
        with crate() as conn:
            for target in copies.values():
                conn.execute(f"DROP TABLE IF EXISTS {target}")


def test_the_shipped_dag_exports_both_engines_from_cratedb(airflow_db, crate_table, s3_conn, store, tmp_path):
    """``airflow dags test cratedb_table_export 2024-01-05`` with the shipped DAG file: one task per
    table, both engines, each publishing exactly the day's rows."""
    name, rows = crate_table
    other = f"doc.{unique('dag_stream')}"
    with crate() as conn:
        create_metrics(conn, rows, cratedb=True, table=other)
    try:
        _shipped_dag(name, other, rows, s3_conn, store, tmp_path)
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {other}")


def _shipped_dag(
    name: str, other: str, rows: list[tuple[Any, ...]], s3_conn: str, store: LocalS3, tmp_path: Path
) -> None:
    folder = unique("dag")
    config = tmp_path / "tables.yaml"
    config.write_text(
        json.dumps(
            {
                "tables": [
                    {
                        "table": name,
                        "timestamp_column": "timestamp",
                        "engine": "copy",
                        "target": f"s3://{s3_conn}/{folder}-copy",
                    },
                    {
                        "table": other,
                        "timestamp_column": "timestamp",
                        "engine": "stream",
                        "format": "parquet",
                        "target": f"s3://{s3_conn}/{folder}-stream",
                    },
                ]
            }
        )
    )
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "CRATEDB_EXPORT_CONFIG": str(config),
        "AIRFLOW_CONN_CRATEDB_CONNECTION": os.environ["AIRFLOW_CONN_CRATEDB_CONNECTION"],
        "AIRFLOW_CONN_AWS_DEFAULT": os.environ["AIRFLOW_CONN_AWS_DEFAULT"],
    }
    assert airflow_cli("pools", "set", "cratedb_export", "4", "CrateDB exports", env=env).returncode == 0
    done = airflow_cli("dags", "test", "cratedb_table_export", "2024-01-05", env=env, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    expected = sorted(r[0] for r in rows_of_day(rows, DAY))
    for engine, table in (("copy", name), ("stream", other)):
        prefix = f"{folder}-{engine}/{table}/dt=2024-01-04/"
        objects = objects_under(store, s3_conn, prefix)
        assert {f"{prefix}_SUCCESS", f"{prefix}_manifest.json"} <= set(objects), engine
        if engine == "copy":
            got = sorted(line["hash_id"] for line in lines_of(objects))
        else:
            import pyarrow.parquet as pq

            got = sorted(
                v
                for data in data_objects(objects).values()
                for v in pq.read_table(io.BytesIO(data))["hash_id"].to_pylist()
            )
        assert got == expected, engine


# --- CrateDB stops a statement half-way: the retry publishes the exact partition -------------------


@pytest.fixture
def big_crate_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """200,000 rows in the day, on 4 shards: long enough to be stopped half-way."""
    name = f"doc.{unique('big')}"
    with crate() as conn:
        conn.execute(
            f'CREATE TABLE {name} ("id" BIGINT, "ts" TIMESTAMP WITH TIME ZONE, "v" TEXT) CLUSTERED INTO 4 SHARDS'
        )
        conn.execute(
            f"INSERT INTO {name} SELECT g, (1704326400000 + g * 400)::timestamp with time zone, 'value ' || g "
            f"FROM generate_series(0, 199999) AS g"
        )
        conn.execute(f"REFRESH TABLE {name}")
        assert conn.execute(f"SELECT count(*) FROM {name}").fetchone() == (200_000,)
    with exported_from(name, monkeypatch):
        yield name, 200_000


def kill_when_running(table: str, statement_start: str, stop: threading.Event) -> list[str]:
    """Watch ``sys.jobs`` for a statement on ``table`` beginning with ``statement_start`` and stop it
    with CrateDB's ``KILL``; returns the ids killed."""
    killed: list[str] = []

    def watch() -> None:
        with crate() as conn:
            while not stop.is_set() and not killed:
                for job_id, stmt in conn.execute("SELECT id, stmt FROM sys.jobs").fetchall():
                    if stmt.startswith(statement_start) and table.split(".")[1] in stmt:
                        conn.execute("KILL %s", (job_id,))
                        killed.append(str(job_id))
                time.sleep(0.05)

    threading.Thread(target=watch, daemon=True).start()
    return killed


def test_a_copy_cratedb_stops_half_way_fails_and_the_retry_publishes_the_exact_partition(
    big_crate_table, s3_conn, store
):
    """CrateDB's ``KILL`` stops the running ``COPY TO`` while its nodes write: the attempt fails (a
    retryable outage), nothing is published, and the retry publishes exactly the day."""
    name, total = big_crate_table
    folder = unique("killed-copy")
    cfg = entry(name, timestamp_column="ts", engine="copy", target=f"s3://{s3_conn}/{folder}")
    stop = threading.Event()
    killed = kill_when_running(name, "COPY", stop)
    try:
        with pytest.raises(ExportError) as failure:
            run_export(cfg, WINDOW)
    finally:
        stop.set()
    assert killed, "the statement was not seen running"
    assert failure.value.retryable  # an outage of the statement: Airflow keeps the retries
    assert_the_retry_publishes_exactly(cfg, name, total, folder, s3_conn, store)


def test_cratedb_gone_in_the_middle_of_a_cursor_read_and_the_retry_publishes_the_exact_partition(
    big_crate_table, s3_conn, store, monkeypatch
):
    """The connection to CrateDB goes away after some FETCHes (what a node that stops looks like to
    the worker; a cursor's query is not a job ``KILL`` can reach): the attempt fails at once as an
    outage, publishes nothing, and the retry publishes exactly the day."""
    from devtools.faults import FreezingProxy

    name, total = big_crate_table
    folder = unique("cut-stream")
    cfg = entry(name, timestamp_column="ts", engine="stream", batch_size=2000, target=f"s3://{s3_conn}/{folder}")
    port = int(urlsplit(CRATEDB_URL or "").port or 5432)
    proxy = FreezingProxy(port, freeze_after=1_000_000).start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CRATEDB_CONNECTION", re.sub(r"@[^/@]+/", f"@127.0.0.1:{proxy.port}/", CRATEDB_URL or "", count=1)
    )
    threading.Thread(target=lambda: proxy.frozen.wait(60) and proxy.stop(), daemon=True).start()
    started = time.monotonic()
    with pytest.raises(ExportError) as failure:
        run_export(cfg, WINDOW)
    assert proxy.frozen.is_set() and time.monotonic() - started < 60
    assert failure.value.retryable
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", CRATEDB_URL or "")
    assert_the_retry_publishes_exactly(cfg, name, total, folder, s3_conn, store)


def assert_the_retry_publishes_exactly(
    cfg: TableExport, name: str, total: int, folder: str, s3_conn: str, store: LocalS3
) -> None:
    prefix = f"{folder}/{name}/dt=2024-01-04/"
    assert f"{prefix}_SUCCESS" not in objects_under(store, s3_conn, prefix)
    result = run_export(cfg, WINDOW)  # Airflow's retry
    assert result.rows == total
    objects = objects_under(store, s3_conn, prefix)
    manifest = json.loads(objects[f"{prefix}_manifest.json"])
    assert set(data_objects(objects)) == {o["key"] for o in manifest["objects"]}
    ids = [line["id"] for line in lines_of(objects)]
    assert len(ids) == len(set(ids)) == total


def test_an_s3_endpoint_only_cratedb_cannot_reach_fails_the_copy_and_publishes_nothing(
    crate_table, s3_conn, store, monkeypatch
):
    """The worker reaches S3 (its bucket check passes); the endpoint CrateDB is given refuses
    connections (a firewall between CrateDB and the bucket, a wrong host in CrateDB's network)."""
    from devtools.devstack import free_port

    from cratedb_airflow_export.engines import copy as copy_engine

    real = copy_engine.cratedb_s3_uri
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(
        copy_engine, "cratedb_s3_uri", lambda creds, loc: real(dataclasses.replace(creds, endpoint_url=closed), loc)
    )
    name, _ = crate_table
    folder = unique("unreachable")
    started = time.monotonic()
    with pytest.raises(ExportError) as failure:
        run_export(entry(name, engine="copy", target=f"s3://{s3_conn}/{folder}"), WINDOW)
    elapsed = time.monotonic() - started
    assert failure.value.retryable  # a network path can come back
    assert elapsed < 120, elapsed
    assert objects_under(store, s3_conn, f"{folder}/") == {}


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_sliced_day_from_cratedb_publishes_one_exact_partition(big_crate_table, s3_conn, store, fmt, caplog):
    """Four slices at once (as four mapped tasks would run), each reading on connections of its own
    (its share of the cluster's processors), published together: one manifest, every row once."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from cratedb_airflow_export.export import RunInfo, export_slice, publish_slices

    name, total = big_crate_table
    folder = unique(f"sliced-{fmt}")
    cfg = entry(name, timestamp_column="ts", engine="stream", format=fmt, slices=4, target=f"s3://{s3_conn}/{folder}")
    run = RunInfo(dag_id="it", run_id=unique("run"), try_number=1)
    with crate() as conn:
        processors = conn.execute("SELECT sum(os_info['available_processors']) FROM sys.nodes").fetchone()[0]
    share = -(-max(2, min(16, processors)) // 4)
    with caplog.at_level(logging.INFO, logger="cratedb_airflow_export"), ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda index: export_slice(cfg, WINDOW, index, run), range(4)))
    reading = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"Reading {name} in ")]
    assert len(reading) == 4 and all(f" on {share} connection(s)" in line for line in reading), reading
    assert sum(report["rows"] for report in reports) == total
    assert all(report["rows"] > 0 for report in reports)
    result = publish_slices(cfg, WINDOW, reports, run)
    assert result.rows == total
    prefix = f"{folder}/{name}/dt=2024-01-04/"
    objects = objects_under(store, s3_conn, prefix)
    manifest = json.loads(objects[f"{prefix}_manifest.json"])
    assert (manifest["rows"], manifest["source_count"]) == (total, total)
    data = data_objects(objects)
    assert set(data) == {o["key"] for o in manifest["objects"]} and len(data) == 4
    if fmt == "parquet":
        ids = [i for blob in data.values() for i in pq.read_table(io.BytesIO(blob))["id"].to_pylist()]
    else:
        ids = [line["id"] for line in lines_of(objects)]
    assert sorted(ids) == list(range(total))


def test_the_fetch_phase_reads_the_day_as_it_was_when_its_cursors_were_declared(
    big_crate_table, s3_conn, store, monkeypatch, caplog
):
    """By default the day is cut by a histogram into sub-windows (here of at most 5,000 rows) that
    are declared with a LIMIT, so that CrateDB reads them through its fetch phase, which fetches
    rows by their ids after the query. Once the first rows are written, 10 rows are inserted into
    the day, one row is updated and one deleted: the export holds exactly the day as it was at the
    DECLAREs (every id once, the updated row's old value), and the count taken after the read sees
    the change (``warn``: published, the later count recorded)."""
    from cratedb_airflow_export.engines import stream
    from cratedb_airflow_export.engines.stream import RollingFiles

    name, total = big_crate_table
    monkeypatch.setattr(stream, "MAX_WINDOW_ROWS", 5_000)
    real_write, changed = RollingFiles.write, []

    def write_then_change(self: Any, batch: Any) -> Any:
        if not changed:
            with crate() as conn:
                late = "SELECT 1000000 + g, '2024-01-04T12:00:00Z', 'new' FROM generate_series(1, 10) g"
                conn.execute(f"INSERT INTO {name} {late}")
                conn.execute(f"UPDATE {name} SET v = 'updated' WHERE id = 150000")
                conn.execute(f"DELETE FROM {name} WHERE id = 150001")
                conn.execute(f"REFRESH TABLE {name}")
            changed.append(True)
        return real_write(self, batch)

    monkeypatch.setattr(RollingFiles, "write", write_then_change)
    folder = unique("fetch-phase")
    cfg = entry(
        name,
        timestamp_column="ts",
        engine="stream",
        fetch_phase="always",
        row_count_check="warn",
        target=f"s3://{s3_conn}/{folder}",
    )
    with caplog.at_level(logging.INFO, logger="cratedb_airflow_export"):
        result = run_export(cfg, WINDOW)
    reading = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"Reading {name} in ")]
    assert len(reading) == 1 and "of up to about 5,000 rows each, through CrateDB's fetch phase" in reading[0]
    assert int(reading[0].split(" in ")[1].split(" ")[0]) >= total // 5_000, reading
    assert changed and (result.rows, result.source_count) == (total, total + 10 - 1)
    exported = lines_of(objects_under(store, s3_conn, f"{folder}/{name}/dt=2024-01-04/"))
    assert sorted(line["id"] for line in exported) == list(range(total))
    by_id = {line["id"]: line["v"] for line in exported}
    assert (by_id[150000], by_id[150001]) == ("value 150000", "value 150001")


@pytest.mark.parametrize("ordered", [True, False])
def test_auto_reads_one_sub_window_both_ways_and_the_day_exactly_either_way(
    s3_conn, store, monkeypatch, caplog, ordered
):
    """``fetch_phase: auto`` (the default) reads the largest sub-windows (one per connection, at
    once) plain and through the fetch phase before declaring the day's cursors (twice where the
    first round was not clear), logs the times and what it chose, and whichever it
    chose the partition holds the day exactly: rows written in timestamp order, or each up to 5 s
    early or late (where the fetch phase does not read in order). Which it chose is timing, not
    asserted (docs/benchmark.md has the figures)."""
    from cratedb_airflow_export.engines import stream

    name = f"doc.{unique('probe')}"
    jitter = "0" if ordered else "((g * 7919) % 10001) - 5000"
    with crate() as conn:
        conn.execute(
            f'CREATE TABLE {name} ("id" BIGINT, "ts" TIMESTAMP WITH TIME ZONE, "o" OBJECT) CLUSTERED INTO 4 SHARDS'
        )
        conn.execute(
            f"INSERT INTO {name} SELECT g, (1704326400000 + 3600000 + g * 100 + {jitter})::timestamp with time zone, "
            f"{{k = g % 7}} FROM generate_series(0, 59999) AS g"
        )
        conn.execute(f"REFRESH TABLE {name}")
    monkeypatch.setattr(stream, "MAX_WINDOW_ROWS", 1_000)  # a probe of 2 sub-windows, far below the day
    folder = unique("probe")
    try:
        with exported_from(name, monkeypatch), caplog.at_level(logging.INFO, logger="cratedb_airflow_export"):
            result = run_export(
                entry(name, timestamp_column="ts", engine="stream", target=f"s3://{s3_conn}/{folder}"), WINDOW
            )
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
    said = [r.getMessage() for r in caplog.records]
    probed = [line for line in said if " sub-window(s) read in " in line]
    pattern = r"[0-9,]+ rows of [0-9]+ sub-window\(s\) read in [0-9.]+ s plain, [0-9.]+ s through CrateDB's fetch phase"
    assert 1 <= len(probed) <= 2 and all(re.search(pattern, line) for line in probed), probed
    chose = [line for line in said if line.startswith(f"{name}: reading ")]
    reading = [line for line in said if line.startswith(f"Reading {name} in ")]
    assert len(chose) == len(reading) == 1
    assert ("fetch phase" in reading[0]) == chose[0].endswith("through CrateDB's fetch phase"), (chose, reading)
    assert result.rows == 60_000
    exported = lines_of(objects_under(store, s3_conn, f"{folder}/{name}/dt=2024-01-04/"))
    assert sorted(line["id"] for line in exported) == list(range(60_000))
    assert all(line["o"] == {"k": line["id"] % 7} for line in exported)


def test_an_s3_server_that_names_the_bucket_region(crate_table, monkeypatch):
    """CrateDB before 6.3 (AWS SDK v1, global bucket access) sends its requests to AWS once the S3
    server names the bucket's region, as moto and AWS do: the copy engine refuses at once, saying
    why, instead of CrateDB failing after its retries. From 6.3 (OpenDAL) the endpoint is kept."""
    name, rows = crate_table
    server = LocalS3(report_bucket_region=True, check_access_key=True).start()
    try:
        bucket = server.ensure_bucket(unique("region").replace("_", "-"))
        extra = {"endpoint_url": server.endpoint_url, "region_name": "us-east-1"}
        conn = {"conn_type": "aws", "login": server.access_key, "password": server.secret_key, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
        with crate() as c:
            version = parse_version(c.execute("SELECT version()").fetchone()[0])  # type: ignore[index]
        cfg = entry(name, engine="copy", target=f"s3://{bucket}/x")
        if version is not None and version < (6, 3, 0):
            with pytest.raises(ExportError, match="would send COPY's S3 requests to AWS's endpoint for region") as no:
                run_export(cfg, WINDOW)
            assert not no.value.retryable
            assert objects_under(server, bucket, "x/") == {}
        else:
            assert run_export(cfg, WINDOW).rows == len(rows_of_day(rows, DAY))
    finally:
        server.stop()


# --- retention and the change marker ------------------------------------------------------------

JAN_29, JAN_30, JAN_31, FEB_1 = date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1)


def day_stamps(*days: date, per_day: int = 3, first: int = 0) -> list[tuple[str | None, int]]:
    return [
        (f"{day}T{hour:02d}:00:00+00:00", first + n * per_day + hour)
        for n, day in enumerate(days)
        for hour in range(per_day)
    ]


def partitions_of(name: str) -> list[int]:
    """The table's partitions with a month, by their values (epoch milliseconds)."""
    schema, table = name.split(".")
    with crate() as conn:
        found = conn.execute(
            'SELECT "values" FROM information_schema.table_partitions WHERE table_schema = %s AND table_name = %s',
            (schema, table),
        ).fetchall()
    return sorted(int(values["month"]) for (values,) in found if values["month"] is not None)


def table_rows(name: str) -> list[tuple[Any, ...]]:
    with crate() as conn:
        conn.execute(f"REFRESH TABLE {name}")
        return [tuple(r) for r in conn.execute(f'SELECT "hash_id", "timestamp", "name" FROM {name} ORDER BY 1')]


JAN, FEB = 1704067200000, 1706745600000  # the partitions' values: epoch milliseconds


@pytest.fixture
def retained(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two tables partitioned by a column of the same name (``month``) with the same partitions:
    rows on 2024-01-30 and -31 (January) and 2024-02-01 (February)."""
    names = (f"doc.{unique('retain')}", f"doc.{unique('neighbour')}")
    for name in names:
        monthly(name, day_stamps(JAN_30, JAN_31, FEB_1))
    with exported_from(names[0], monkeypatch), exported_from(names[1], monkeypatch):
        yield names


@pytest.mark.parametrize("engine", ["copy", "stream"])
def test_retention_drops_a_verified_partition_and_restore_brings_it_back(retained, s3_conn, store, engine):
    from cratedb_airflow_export.manifest import PurgeRecord
    from cratedb_airflow_export.restore import restore
    from cratedb_airflow_export.retention import purge

    name, neighbour = retained
    folder = unique("retain")
    cfg = entry(name, engine=engine, target=f"s3://{s3_conn}/{folder}", retain_days=1)
    for day in (JAN_30, JAN_31, FEB_1):
        assert run_export(cfg, Window.for_day(day)).rows == 3
    before, untouched = table_rows(name), table_rows(neighbour)
    (outcome,) = purge(cfg, FEB_1)
    assert (outcome.what, outcome.days, outcome.state, outcome.rows) == (
        "partition (month = 2024-01-01T00:00:00+00:00)",
        (JAN_30, JAN_31),
        "purged",
        6,
    )
    assert partitions_of(name) == [FEB]  # the January partition is gone: dropped, not emptied
    assert partitions_of(neighbour) == [JAN, FEB] and table_rows(neighbour) == untouched
    for day in (JAN_30, JAN_31):
        key = f"{folder}/{name}/dt={day}/_PURGED.json"
        record = PurgeRecord.model_validate_json(objects_under(store, s3_conn, key)[key])
        assert (record.state, record.rows, record.what) == ("done", 3, outcome.what)
        assert record.statement == f'DELETE FROM "doc"."{name[4:]}" WHERE "month" = $1  -- params: ' + (
            "['2024-01-01T00:00:00+00:00']"
        )
    assert purge(cfg, FEB_1) == []  # nothing left before FEB_1
    method = "copy" if engine == "copy" else "worker"
    results = restore(cfg, [Window.for_day(JAN_30), Window.for_day(JAN_31)], method=method)
    assert [r.rows for r in results] == [3, 3]
    assert table_rows(name) == before and partitions_of(name) == [JAN, FEB]


def test_retention_deletes_nothing_of_a_partition_with_a_day_missing_or_changed(s3_conn, store, monkeypatch):
    from cratedb_airflow_export.retention import purge

    name = f"doc.{unique('gappy')}"
    # January: three days (the middle one never exported); December: one day
    monthly(name, [*day_stamps(JAN_29, JAN_30, JAN_31), ("2023-12-31T10:00:00+00:00", 900)])
    with exported_from(name, monkeypatch):
        cfg = entry(name, engine="stream", target=f"s3://{s3_conn}/{unique('gappy')}", retain_days=1)
        for day in (JAN_29, JAN_31, date(2023, 12, 31)):
            run_export(cfg, Window.for_day(day))
        with crate() as conn:  # a row of no day: a NULL timestamp (a partition of its own, month NULL)
            conn.execute(f'INSERT INTO {name} ("hash_id", "timestamp", "name") VALUES (901, NULL, \'undated\')')
            conn.execute(f"REFRESH TABLE {name}")
        before = table_rows(name)
        outcomes = {o.what: o for o in purge(cfg, FEB_1)}
        january = outcomes["partition (month = 2024-01-01T00:00:00+00:00)"]
        undated = outcomes["partition (month = NULL)"]
        assert (january.days, january.state) == ((JAN_29, JAN_30, JAN_31), "refused")
        (reason,) = january.reasons
        assert reason == (
            f"{JAN_30}: _SUCCESS is missing: the partition is incomplete or being replaced; _manifest.json is missing "
            f"({cfg.target}/{name}/dt={JAN_30}/)"
        )
        assert (undated.days, undated.state) == ((), "refused")
        assert undated.reasons == ("1 of its 1 rows have no timestamp: no export holds them",)
        assert outcomes["partition (month = 2023-12-01T00:00:00+00:00)"].state == "purged"  # its one day checks out
        assert len(outcomes) == 3
        assert table_rows(name) == [r for r in before if r[0] != 900] and partitions_of(name) == [JAN]
        # export the gap; then a row of January 31 is updated (count unchanged) and January 29 gains a row
        run_export(cfg, Window.for_day(JAN_30))
        with crate() as conn:
            conn.execute(f"UPDATE {name} SET \"name\" = 'changed' WHERE hash_id = 6")
            conn.execute(
                f'INSERT INTO {name} ("hash_id", "timestamp", "name") VALUES (%s, %s, %s)',
                (700, datetime(2024, 1, 29, 20, tzinfo=timezone.utc), "late"),
            )
        outcome, _ = sorted(purge(cfg, FEB_1), key=lambda o: o.what)  # January, and the undated again
        assert outcome.state == "refused"
        assert outcome.reasons[0].startswith(
            f"{JAN_29}: the source holds 4 rows of the day now, it held 3 at the export of "
        )
        assert outcome.reasons[0].endswith("(rows arrived or were deleted since: export the day again first)")
        assert outcome.reasons[1].startswith(f"{JAN_31}: rows of the day were updated since the export of ")
        assert "(sum(_seq_no)=" in outcome.reasons[1]
        assert [r[0] for r in table_rows(name)] == sorted([*(r[0] for r in before if r[0] != 900), 700])
        # exported again: the partition checks out and is dropped
        for day in (JAN_29, JAN_31):
            run_export(cfg, Window.for_day(day))
        outcome, undated = sorted(purge(cfg, FEB_1), key=lambda o: o.what)
        assert (outcome.state, outcome.rows, undated.state) == ("purged", 10, "refused")
        assert [r[0] for r in table_rows(name)] == [901]  # the row of no day stays


def test_reconcile_exports_a_day_again_when_a_row_was_updated_on_cratedb(crate_table, s3_conn, store):
    from cratedb_airflow_export.reconcile import reconcile

    name, rows = crate_table
    folder = unique("marker")
    cfg = entry(name, engine="stream", target=f"s3://{s3_conn}/{folder}")
    first, second = SAMPLE_DAYS[0], SAMPLE_DAYS[1]
    for day in (first, second):
        run_export(cfg, Window.for_day(day))
    key = f"{folder}/{name}/dt={first}/_manifest.json"
    manifest = read_manifest(store.store(), s3_conn, key)
    assert manifest.source_marker is not None and manifest.source_marker.startswith("sum(_seq_no)=")
    target = rows_of_day(rows, second)[0][0]
    with crate() as conn:
        conn.execute(f"UPDATE {name} SET \"name\" = 'changed' WHERE hash_id = %s", (target,))
    recounts = reconcile(cfg, [first, second])
    assert [(r.state, r.updated) for r in recounts] == [("unchanged", False), ("re-exported", True)]
    assert read_manifest(store.store(), s3_conn, key) == manifest  # untouched: same exported_at
    lines = lines_of(objects_under(store, s3_conn, f"{folder}/{name}/dt={second}/"))
    assert [line["name"] for line in lines if line["hash_id"] == target] == ["changed"]
    assert len(lines) == len(rows_of_day(rows, second))


def test_purge_of_an_unpartitioned_table_by_hand(crate_table, s3_conn, store, tmp_path):
    """``cratedb-export purge`` on CrateDB: day windows of an unpartitioned table are refused (no
    transaction keeps writers out between the checks and the DELETE), unless the configuration accepts
    that moment; then a dry run first, and the purge."""
    name, rows = crate_table
    config = tmp_path / "tables.yaml"
    target = f"s3://{s3_conn}/{unique('byhand')}"
    entry = {"table": name, "timestamp_column": "timestamp", "target": target}
    config.write_text(json.dumps({"tables": [entry]}))
    env = {key: os.environ[key] for key in ("AIRFLOW_CONN_CRATEDB_CONNECTION", "AIRFLOW_CONN_AWS_DEFAULT")}
    first, second, third = SAMPLE_DAYS
    done = cli("run", "--date", str(first), "--to", str(second), config=config, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    refused = cli("purge", "--table", name, "--before", str(third), config=config, env=env)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert (
        f"{name} day {first} ({first}, 40 rows): REFUSED, nothing deleted: {name} is not partitioned" in refused.stdout
    )
    assert "unpartitioned_retention: accept_window" in refused.stdout
    assert len(table_rows(name)) == len(rows)
    config.write_text(json.dumps({"tables": [{**entry, "unpartitioned_retention": "accept_window"}]}))
    dry = cli("purge", "--table", name, "--before", str(third), "--dry-run", config=config, env=env)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert [line.split(":")[0] for line in dry.stdout.splitlines()] == [
        f"{name} day {first} ({first}, 40 rows)",
        f"{name} day {second} ({second}, 40 rows)",
    ]
    assert len(table_rows(name)) == len(rows)
    done = cli("purge", "--table", name, "--before", str(third), config=config, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        f"{name} day {first} ({first}, 40 rows): purged, 40 rows deleted",
        f"{name} day {second} ({second}, 40 rows): purged, 40 rows deleted",
    ]
    assert len(table_rows(name)) == len(rows_of_day(rows, third))


def test_a_row_written_into_a_partition_while_it_is_checked_is_refused_not_lost(retained, s3_conn, store, monkeypatch):
    """The partition refuses writes from before its checks until it is dropped: an insert attempted
    in the middle of the checks fails with CrateDB's write block, and the dropped partition held
    exactly the archived rows. A refused partition is writable again."""
    import cratedb_airflow_export.retention as retention

    name, _ = retained
    cfg = entry(name, engine="stream", target=f"s3://{s3_conn}/{unique('block')}", retain_days=1)
    for day in (JAN_30, JAN_31):
        run_export(cfg, Window.for_day(day))
    real, refused = retention.window_state, []

    def check_and_write(cursor: Any, cfg: TableExport, window: Any, source: Any, **kw: Any) -> Any:
        if window.start.date() == JAN_31 and kw.get("identify"):  # the checks against the source
            try:
                with crate() as conn:
                    conn.execute(
                        f'INSERT INTO {name} ("hash_id", "timestamp", "name") VALUES (%s, %s, %s)',
                        (800, datetime(2024, 1, 31, 18, tzinfo=timezone.utc), "racing"),
                    )
            except psycopg.Error as exc:
                refused.append(str(exc))
        return real(cursor, cfg, window, source, **kw)

    monkeypatch.setattr(retention, "window_state", check_and_write)
    (outcome,) = retention.purge(cfg, FEB_1)
    assert (outcome.state, outcome.rows) == ("purged", 6)
    # 5.10: "blocked by: [FORBIDDEN/8/index write (api)]"; 6.4: "[RELATION_READ_AND_DDL_ONLY/8/index write (api)]"
    assert len(refused) == 1 and re.search(r"blocked by: \[[A-Z_]+/8/index write \(api\)\]", refused[0]), refused
    assert partitions_of(name) == [FEB] and 800 not in [r[0] for r in table_rows(name)]

    # February is kept (not before the cutoff); a refused January of the neighbour is writable again
    _, neighbour = retained
    other = entry(neighbour, engine="stream", target=f"s3://{s3_conn}/{unique('block')}", retain_days=1)
    monkeypatch.setattr(retention, "window_state", real)
    (outcome,) = retention.purge(other, FEB_1)  # never exported: refused
    assert outcome.state == "refused"
    with crate() as conn:
        conn.execute(
            f'INSERT INTO {neighbour} ("hash_id", "timestamp", "name") VALUES (%s, %s, %s)',
            (801, datetime(2024, 1, 30, 18, tzinfo=timezone.utc), "after"),
        )
    assert 801 in [r[0] for r in table_rows(neighbour)]


def test_the_shipped_retention_dag_drops_the_archived_partition(airflow_db, retained, s3_conn, store, tmp_path):
    """``airflow dags test cratedb_table_retention`` with the shipped DAG file: the run of 2024-02-01
    keeps that day (retain_days 1) and drops January, whose two days were exported."""
    name, neighbour = retained
    folder = unique("retention_dag")
    table = {"table": name, "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{s3_conn}/{folder}"}
    cfg = entry(name, **{k: v for k, v in table.items() if k != "table"}, retain_days=1)
    for day in (JAN_30, JAN_31):
        run_export(cfg, Window.for_day(day))
    config = tmp_path / "tables.yaml"
    config.write_text(json.dumps({"tables": [{**table, "retain_days": 1}]}))
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "CRATEDB_EXPORT_CONFIG": str(config),
        "AIRFLOW_CONN_CRATEDB_CONNECTION": os.environ["AIRFLOW_CONN_CRATEDB_CONNECTION"],
        "AIRFLOW_CONN_AWS_DEFAULT": os.environ["AIRFLOW_CONN_AWS_DEFAULT"],
    }
    done = airflow_cli("dags", "test", "cratedb_table_retention", "2024-02-02", env=env, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert partitions_of(name) == [FEB] and partitions_of(neighbour) == [JAN, FEB]
    purged = objects_under(store, s3_conn, f"{folder}/{name}/")
    assert sorted(k.rsplit("/", 2)[-2] for k in purged if k.endswith("_PURGED.json")) == [
        f"dt={JAN_30}",
        f"dt={JAN_31}",
    ]


def test_a_user_with_only_the_privileges_it_needs(retained, s3_conn, store, monkeypatch):
    """A user who may read the table (DQL) exports it, detected as CrateDB although it cannot see
    CrateDB's sys tables; purging a partition also needs DML, and DDL for the write block: without
    it the purge fails with CrateDB's message and deletes nothing; and DQL on the schema sys, where
    the table's identity is: without it the manifests record none and the purge refuses."""
    from urllib.parse import urlsplit, urlunsplit

    from cratedb_airflow_export.retention import purge

    name, _ = retained
    user = unique("exporter")
    parts = urlsplit(CRATEDB_URL or "")
    as_user = urlunsplit(parts._replace(netloc=f"{user}:secret-pw@{parts.hostname}:{parts.port or 5432}"))
    with crate() as conn:
        conn.execute(f"CREATE USER {user} WITH (password = 'secret-pw')")
        conn.execute(f"GRANT DQL ON TABLE {name} TO {user}")
    try:
        monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", as_user)
        cfg = entry(name, engine="stream", target=f"s3://{s3_conn}/{unique('privileges')}", retain_days=1)
        sources = [run_export(cfg, Window.for_day(day)).source for day in (JAN_30, JAN_31)]
        assert [s.dialect if s else None for s in sources] == [CRATEDB, CRATEDB]
        with crate() as conn:
            conn.execute(f"GRANT DML ON TABLE {name} TO {user}")
        with pytest.raises(ExportError, match=f"Missing 'DDL' privilege for user '{user}'"):
            purge(cfg, FEB_1)
        assert partitions_of(name) == [JAN, FEB]
        with crate() as conn:
            conn.execute(f"GRANT DDL ON TABLE {name} TO {user}")
        # the table's identity is in sys.shards, which this user cannot read: no proof, nothing deleted
        (outcome,) = purge(cfg, FEB_1)
        assert outcome.state == "refused"
        assert "the table's identity could not be read at the export of" in outcome.reasons[0]
        assert "need DQL on the schema sys" in outcome.reasons[0]
        assert partitions_of(name) == [JAN, FEB]
        with crate() as conn:
            conn.execute(f"GRANT DQL ON SCHEMA sys TO {user}")
        for day in (JAN_30, JAN_31):  # exported again: now the manifests record it
            run_export(cfg, Window.for_day(day))
        assert [o.state for o in purge(cfg, FEB_1)] == ["purged"]
        assert partitions_of(name) == [FEB]
    finally:
        with crate() as conn:
            conn.execute(f"DROP USER IF EXISTS {user}")


# --- schemas: object keys in the manifest, an added key evolves, objects as structs ----------------

METRICS_KEYS = {
    "tags": {"host": "text", "name": "text", "region": "text"},
    "fields": {"note": "text", "ok": "boolean", "samples": "bigint_array", "value": "double precision"},
}


@pytest.mark.parametrize(
    "options",
    [
        {"engine": "copy"},
        {"engine": "stream", "format": "jsonl"},
        {"engine": "stream", "format": "csv"},
        {"engine": "stream", "format": "parquet"},
        {"engine": "stream", "format": "parquet", "objects": "struct"},
    ],
    ids=["copy", "jsonl", "csv", "parquet", "parquet-struct"],
)
def test_the_manifest_lists_the_object_keys_and_an_added_key_evolves_the_next_day(
    crate_table, s3_conn, store, options, tmp_path
):
    import duckdb
    from psycopg.types.json import Json

    from cratedb_airflow_export.schema import SchemaChange

    name, _ = crate_table
    first, second = SAMPLE_DAYS[0], SAMPLE_DAYS[1]
    folder = unique("schema")
    cfg = entry(name, target=f"s3://{s3_conn}/{folder}", **options)
    run_export(cfg, Window.for_day(first))
    backend = store.store()
    before = read_manifest(backend, s3_conn, f"{folder}/{name}/dt={first}/_manifest.json")
    assert before.schema_ is not None
    objects = {c.name: c for c in before.schema_ if c.source_type == "object"}
    assert {n: (c.keys, c.policy) for n, c in objects.items()} == {
        "tags": (METRICS_KEYS["tags"], "dynamic"),
        "fields": (METRICS_KEYS["fields"], "dynamic"),
    }
    struct = options.get("objects") == "struct"
    assert (
        objects["tags"].file_type
        == {
            "copy": "json",
            "jsonl": "json",
            "csv": "text",
            "parquet": "struct<host: string, name: string, region: string>" if struct else "string (JSON text)",
        }[options.get("format", "copy") if options["engine"] == "stream" else "copy"]
    )

    with crate() as conn:  # a device starts sending a new tag
        stamp = datetime.combine(second, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=5)
        conn.execute(
            f'INSERT INTO {name} ("hash_id", "timestamp", "name", "tags", "fields") VALUES (%s, %s, %s, %s, %s)',
            (1, stamp, "cpu", Json({"host": "h9", "zone": "z1"}), Json({})),
        )
        conn.execute(f"REFRESH TABLE {name}")
    result = run_export(cfg, Window.for_day(second))
    after = read_manifest(backend, s3_conn, f"{folder}/{name}/dt={second}/_manifest.json")
    assert after.schema_changes == [SchemaChange(column="tags['zone']", change="added", after="text")]
    assert after.schema_compared_with == str(first)
    assert result.as_dict()["schema_changes"] == ["tags['zone'] added (text)"]
    assert {c.name: c.keys for c in after.schema_ or [] if c.name == "tags"} == {
        "tags": {**METRICS_KEYS["tags"], "zone": "text"}
    }
    if struct:  # DuckDB reads both days as one table and filters on the nested key
        for day in (first, second):
            for key, data in data_objects(objects_under(store, s3_conn, f"{folder}/{name}/dt={day}/")).items():
                (tmp_path / f"{day}-{key.rsplit('/', 1)[-1]}").write_bytes(data)
        found = duckdb.sql(
            f"SELECT hash_id, tags.zone, tags.host FROM read_parquet('{tmp_path}/*.parquet', union_by_name = true) "
            "WHERE tags.zone IS NOT NULL"
        ).fetchall()
        assert found == [(1, "z1", "h9")]
        with crate() as conn:
            hosts = conn.execute(
                f"SELECT count(*) FROM {name} WHERE tags['host'] = 'host-3' "
                'AND "timestamp" >= %s AND "timestamp" < %s',
                (Window.for_day(first).start, Window.for_day(second).end),
            ).fetchone()
        counted = duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{tmp_path}/*.parquet', union_by_name = true) "
            "WHERE tags.host = 'host-3'"
        ).fetchall()[0]
        assert counted == hosts


def test_objects_as_structs_of_every_kind_read_back_in_duckdb(monkeypatch, s3_conn, store, tmp_path):
    """OBJECT(STRICT), OBJECT(DYNAMIC) with a nested object, ARRAY(OBJECT) as Parquet structs that
    DuckDB filters on; OBJECT(IGNORED) (no listed keys) stays JSON text; restore brings every value back."""
    import duckdb

    with all_types_table(monkeypatch) as name:
        folder = unique("structs")
        cfg = TableExport.model_validate(
            {
                "table": name,
                "timestamp_column": "ts",
                "engine": "stream",
                "format": "parquet",
                "objects": "struct",
                "target": f"s3://{s3_conn}/{folder}",
            }
        )
        assert run_export(cfg, WINDOW).rows == 3
        manifest = read_manifest(store.store(), s3_conn, f"{folder}/{name}/dt={DAY}/_manifest.json")
        (data,) = data_objects(objects_under(store, s3_conn, f"{folder}/{name}/dt={DAY}/")).values()
    types = {c.name: c.file_type for c in manifest.schema_ or [] if c.source_type.startswith("object")}
    assert types == {
        "objs": "list<item: struct<a: int64, b: string>>",
        "strict_o": "struct<x: int32, y: string>",
        "dyn_o": "struct<added: list<item: int64>, k: string, n: struct<m: int64>>",
        "ign_o": "string (JSON text)",
    }
    path = tmp_path / "part.parquet"
    path.write_bytes(data)
    rows = duckdb.sql(
        f"SELECT id, strict_o.y, dyn_o.n.m, dyn_o.added, objs[2].b, ign_o FROM read_parquet('{path}') ORDER BY id"
    ).fetchall()
    assert [(*row[:5], row[5] and json.loads(row[5])) for row in rows] == [
        (1, "why", 2, None, "x", {"anything": [1, 2], "other": "x"}),
        (2, None, None, [1, 2], None, None),
        (3, None, None, None, None, None),
    ]
    assert duckdb.sql(f"SELECT id FROM read_parquet('{path}') WHERE dyn_o.k = 'w'").fetchall() == [(2,)]


def test_a_struct_partition_restores_the_objects_as_they_were(crate_table, s3_conn):
    from cratedb_airflow_export.restore import restore

    name, _ = crate_table
    copy_of = f"doc.{unique('restored')}"
    with crate() as conn:
        create_metrics(conn, [], cratedb=True, table=copy_of)
    try:
        cfg = entry(name, engine="stream", format="parquet", objects="struct", target=f"s3://{s3_conn}/{unique('st')}")
        run_export(cfg, WINDOW)
        (result,) = restore(cfg, [WINDOW], into=copy_of)
        query = (
            'SELECT "hash_id", "name", "tags", "fields" FROM {} WHERE "timestamp" >= %s AND "timestamp" < %s ORDER BY 1'
        )
        with crate() as conn:
            conn.execute(f"REFRESH TABLE {copy_of}")
            source = conn.execute(query.format(name), WINDOW.bounds()).fetchall()
            restored = conn.execute(query.format(copy_of), WINDOW.bounds()).fetchall()
        assert result.rows == len(source) == 40
        # a key a row did not have comes back as NULL (the struct holds every key): compare without them
        assert [(h, n, drop_nulls(t), drop_nulls(f)) for h, n, t, f in restored] == [
            (h, n, drop_nulls(t), drop_nulls(f)) for h, n, t, f in source
        ]
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {copy_of}")


def drop_nulls(value: Any) -> Any:
    return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


# --- Iceberg -------------------------------------------------------------------------------------


@pytest.mark.parametrize("objects", ["json", "struct"])
def test_an_iceberg_export_of_the_tutorial_table_reads_back_exactly_in_duckdb(
    crate_table, s3_conn, store, monkeypatch, tmp_path, objects
):
    from pyiceberg.catalog.sql import SqlCatalog

    from cratedb_airflow_export.iceberg import day_filter
    from cratedb_airflow_export.restore import restore

    name, rows = crate_table
    catalog_uri = f"sqlite:///{tmp_path}/catalog.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ICEBERG_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"type": "sql", "uri": catalog_uri}}),
    )
    cfg = entry(name, engine="stream", format="iceberg", objects=objects, target=f"s3://{s3_conn}/{unique('ice')}")
    for day in SAMPLE_DAYS:
        assert run_export(cfg, Window.for_day(day)).rows == 40
    run_export(cfg, WINDOW)  # a rerun replaces the day
    catalog = SqlCatalog(
        "iceberg_default",
        uri=catalog_uri,
        **{
            "s3.endpoint": store.endpoint_url,
            "s3.access-key-id": store.access_key,
            "s3.secret-access-key": store.secret_key,
            "s3.region": "us-east-1",
        },
    )
    table = catalog.load_table(name)
    scan = table.scan(
        row_filter=day_filter(cfg, WINDOW, False), selected_fields=("hash_id", "timestamp", "name", "tags")
    )
    duck = scan.to_duckdb("day")
    if objects == "struct":
        got = duck.sql("SELECT hash_id, timestamp, name, tags.host, tags.region FROM day ORDER BY hash_id").fetchall()
        want = sorted((h, ts, n, t["host"], t["region"]) for h, ts, n, t, _ in rows_of_day(rows, DAY))
    else:
        got = [
            (h, ts, n, json.loads(t))
            for h, ts, n, t in duck.sql("SELECT hash_id, timestamp, name, tags FROM day ORDER BY hash_id").fetchall()
        ]
        want = sorted((h, ts, n, t) for h, ts, n, t, _ in rows_of_day(rows, DAY))
    millis = [
        (h, ts.astimezone(timezone.utc).replace(microsecond=ts.microsecond // 1000 * 1000), *r) for h, ts, *r in want
    ]
    assert [(h, ts.astimezone(timezone.utc), *rest) for h, ts, *rest in got] == millis  # CrateDB keeps milliseconds
    assert table.scan().count() == 3 * 40  # every day once
    copy_of = f"doc.{unique('from_ice')}"
    with crate() as conn:
        create_metrics(conn, [], cratedb=True, table=copy_of)
    try:
        (restored,) = restore(cfg, [WINDOW], into=copy_of)
        assert restored.rows == 40
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {copy_of}")


@pytest.mark.parametrize("kind", ["TIMESTAMP WITHOUT TIME ZONE", "TIMESTAMP WITH TIME ZONE"])
def test_a_copy_export_partitioned_by_a_plain_timestamp_is_restored_by_the_worker(monkeypatch, s3_conn, kind):
    """COPY TO writes a partition column's value as a JSON string of epoch milliseconds
    (``"1704326400000"``); the worker's restore read it as ISO text and failed ("day is out of range
    for month") on 5.10.16 and 6.4.3."""
    from cratedb_airflow_export.restore import restore

    name, copy_of = f"doc.{unique('plain_part')}", f"doc.{unique('plain_part_back')}"
    ddl = 'CREATE TABLE {} ("id" INTEGER, "ts" TIMESTAMP WITH TIME ZONE, "day" ' + kind + ') PARTITIONED BY ("day")'
    with crate() as conn:
        for table in (name, copy_of):
            conn.execute(ddl.format(table))
        conn.execute(
            f"INSERT INTO {name} VALUES (1, '2024-01-04T01:00:00+00:00', '2024-01-04'), "
            "(2, '2024-01-04T23:00:00+00:00', '2024-01-04'), (3, '2024-01-04T12:00:00+00:00', NULL)"
        )
        conn.execute(f"REFRESH TABLE {name}")
    try:
        with exported_from(name, monkeypatch):
            cfg = TableExport.model_validate(
                {"table": name, "timestamp_column": "ts", "engine": "copy", "target": f"s3://{s3_conn}/{unique('pp')}"}
            )
            assert run_export(cfg, WINDOW).rows == 3
            (result,) = restore(cfg, [WINDOW], into=copy_of, method="worker")
            assert (result.method, result.rows) == ("worker", 3)
        with crate() as conn:
            conn.execute(f"REFRESH TABLE {copy_of}")
            got = conn.execute(f'SELECT "id", "day" FROM {copy_of} ORDER BY "id"').fetchall()
        day = datetime(2024, 1, 4) if "WITHOUT" in kind else datetime(2024, 1, 4, tzinfo=timezone.utc)
        assert [tuple(r) for r in got] == [(1, day), (2, day), (3, None)]
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {copy_of}")


def test_a_purge_in_tokyo_drops_only_partitions_whose_days_were_exported(monkeypatch, s3_conn):
    """A TIMESTAMP WITHOUT TIME ZONE is UTC by definition. Read as the process's local time (Tokyo,
    UTC+9), the 05:00 row of a day never exported counted as the day before, which had been exported:
    its partition was dropped unarchived (and a day with rows before 09:00 looped for ever)."""
    from cratedb_airflow_export.retention import purge
    from tests.conftest import set_process_zone

    name = f"doc.{unique('tokyo')}"
    first, second, third = SAMPLE_DAYS
    with crate() as conn:
        conn.execute(
            f'CREATE TABLE {name} ("id" INTEGER, "ts" TIMESTAMP WITHOUT TIME ZONE, '
            '"day" TIMESTAMP WITHOUT TIME ZONE GENERATED ALWAYS AS date_trunc(\'day\', "ts")) PARTITIONED BY ("day")'
        )
        conn.cursor().executemany(
            f'INSERT INTO {name} ("id", "ts") VALUES (%s, %s)',
            [(1, datetime(2024, 1, 3, 12)), (2, datetime(2024, 1, 3, 3)), (3, datetime(2024, 1, 4, 5))],
        )
        conn.execute(f"REFRESH TABLE {name}")
    before = os.environ.get("TZ")
    try:
        with exported_from(name, monkeypatch):
            cfg = TableExport.model_validate(
                {
                    "table": name,
                    "timestamp_column": "ts",
                    "engine": "stream",
                    "retain_days": 1,
                    "target": f"s3://{s3_conn}/{unique('tokyo')}",
                }
            )
            assert run_export(cfg, Window.for_day(first)).rows == 2  # the second day is never exported
            set_process_zone("Asia/Tokyo")
            outcomes = sorted(purge(cfg, third), key=lambda o: o.what)
            assert [(o.days, o.state) for o in outcomes] == [((first,), "purged"), ((second,), "refused")]
            assert "_SUCCESS is missing" in outcomes[1].reasons[0]
            with crate() as conn:
                conn.execute(f"REFRESH TABLE {name}")
                assert [r[0] for r in conn.execute(f'SELECT "id" FROM {name} ORDER BY "id"')] == [3]
    finally:
        set_process_zone(before)


# --- Azure Blob Storage (Azurite) -------------------------------------------------------------------

AZURE_HOST = os.environ.get("CRATEDB_AZURE_HOST", "devstoreaccount1.localhost")


def azure_host_problem() -> str | None:
    """Why CrateDB cannot reach Azurite here, or None. CrateDB's COPY addresses an Azure account by
    host name (az://<account>.<endpoint>/...: the account is the host's first label), and Azurite
    answers such production-style requests only on a name that starts with its account and resolves
    to it: CRATEDB_AZURE_HOST (default devstoreaccount1.localhost, e.g. from /etc/hosts)."""
    import socket

    try:
        address = socket.gethostbyname(AZURE_HOST)
    except OSError:
        return f"{AZURE_HOST} does not resolve (CRATEDB_AZURE_HOST: a name <account>.<anything> for 127.0.0.1)"
    return None if address == "127.0.0.1" else f"{AZURE_HOST} resolves to {address}, not 127.0.0.1"


@pytest.fixture(scope="module")
def azurite_for_crate() -> Iterator[Any]:
    problem = azure_host_problem()
    if problem:
        pytest.skip(f"CrateDB cannot reach Azurite: {problem}")
    from devtools.emulators import LocalAzurite

    server = LocalAzurite().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def az_conn(monkeypatch: pytest.MonkeyPatch, azurite_for_crate: Any) -> tuple[str, Any]:
    """AIRFLOW_CONN_WASB_DEFAULT for Azurite, host-style (as CrateDB addresses it); a new container."""
    from cratedb_airflow_export.credentials import AzureCredentials
    from cratedb_airflow_export.stores.azure import AzureStore

    creds = azurite_for_crate.credentials()
    endpoint = f"http://{AZURE_HOST}:{azurite_for_crate.port}"
    conn = {"conn_type": "wasb", "login": creds.account, "password": creds.key, "host": endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_WASB_DEFAULT", json.dumps(conn))
    container = azurite_for_crate.create_container(f"it-{uuid.uuid4().hex[:10]}")
    store = AzureStore.from_credentials(AzureCredentials(creds.account, creds.key, endpoint_url=endpoint))
    return container, store


def round_trip(crate_table: tuple[str, list[Any]], store: Any, cfg: TableExport, method: str) -> None:
    """Export ``cfg``'s day into ``store``'s bucket, find it complete and exact with verify, restore
    it into another table by ``method`` and compare the rows with the source's."""
    from cratedb_airflow_export.layout import partition
    from cratedb_airflow_export.verify import verify_partition

    _, rows = crate_table
    expected = rows_of_day(rows, DAY)
    assert run_export(cfg, WINDOW).rows == len(expected)
    names = sorted(o.key.rsplit("/", 1)[1] for o in store.list_objects(partition(cfg, DAY)))
    assert {"_SUCCESS", "_manifest.json"} <= set(names) and len(names) > 2
    with crate() as conn, conn.cursor() as cursor:
        report = verify_partition(store, cursor, cfg, WINDOW)
    assert report.ok, report.problems
    restored_exactly(cfg, expected, method)


def restored_exactly(cfg: TableExport, expected: list[Any], method: str) -> None:
    """Restore ``cfg``'s day into a new table by ``method``: exactly the ``expected`` rows."""
    from cratedb_airflow_export.restore import restore

    copy_of = f"doc.{unique('restored')}"
    with crate() as conn:
        create_metrics(conn, [], cratedb=True, table=copy_of)
    try:
        (result,) = restore(cfg, [WINDOW], into=copy_of)
        assert (result.method, result.rows) == (method, len(expected))
        with crate() as conn:
            got = conn.execute(f'SELECT "hash_id", "name" FROM {copy_of} ORDER BY "hash_id"').fetchall()
        assert [tuple(r) for r in got] == sorted((h, n) for h, _, n, _, _ in expected)
    finally:
        with crate() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {copy_of}")


@pytest.mark.parametrize(
    ("engine", "fmt", "compression"),
    [("copy", "jsonl", "gzip"), ("copy", "jsonl", "none"), ("stream", "parquet", "zstd"), ("stream", "jsonl", "gzip")],
)
def test_every_engine_exports_to_azure_and_restores_from_it(crate_table, az_conn, engine, fmt, compression):
    """CrateDB's COPY TO az:// (the account key as a bind parameter) and the stream engine write
    the day into Azurite; verify finds it complete and exact; a restore (COPY FROM az:// for what
    copy wrote) puts exactly the day's rows into another table."""
    container, store = az_conn
    cfg = entry(crate_table[0], engine=engine, format=fmt, compression=compression, target=f"az://{container}/lake")
    round_trip(crate_table, store, cfg, "copy" if engine == "copy" else "worker")


def test_the_copy_statement_to_azure_keeps_the_key_out_of_its_text(crate_table, az_conn):
    from cratedb_airflow_export.connections import from_environment

    table, _ = crate_table
    container, _ = az_conn
    cfg = entry(table, engine="copy", target=f"az://{container}/lake")
    creds = from_environment(cfg).azure
    assert creds is not None and creds.key is not None
    plan = plan_export(cfg, WINDOW, creds)
    (statement,) = [s for s in plan["statements"] if s.startswith("COPY")]
    assert (
        "TO DIRECTORY $3 WITH (compression = 'gzip', format = 'json_object', wait_for_completion = true, "
        "protocol = 'http', key = $4)" in statement
    )
    assert f"az://{AZURE_HOST}:" in json.dumps(plan["parameters"]) and creds.key not in json.dumps(plan)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_stream_exports_to_gcs_and_restores_from_it(crate_table, fake_gcs, monkeypatch, fmt):
    """The stream engine reads CrateDB and writes the day into fake-gcs-server (CrateDB's COPY has
    no gs:// scheme: engine copy is refused for such a target when the configuration is read);
    verify finds it exact; the worker restores exactly the day's rows."""
    server = fake_gcs
    bucket = server.create_bucket(f"it-{uuid.uuid4().hex[:10]}")
    extra = {"project": "test", "endpoint_url": server.endpoint}
    conn = {"conn_type": "google_cloud_platform", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps(conn))
    cfg = entry(crate_table[0], engine="stream", format=fmt, target=f"gs://{bucket}/lake")
    round_trip(crate_table, server.store(), cfg, "worker")


def test_a_sas_token_that_may_not_write_fails_the_export_at_once(crate_table, az_conn, azurite_for_crate, monkeypatch):
    """A SAS token that may read and list but not write: the container check (a listing) passes, the
    first write (the day's lease) is refused with 403: the attempt fails as not retryable (Airflow's
    retries would meet the same refusal), naming Azure's reason, without the token; nothing is
    published."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from cratedb_airflow_export.errors import ExportError
    from cratedb_airflow_export.layout import partition

    container, store = az_conn
    creds = azurite_for_crate.credentials()
    sas = generate_container_sas(
        creds.account,
        container,
        account_key=creds.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    endpoint = f"http://{AZURE_HOST}:{azurite_for_crate.port}"
    conn = {"conn_type": "wasb", "login": creds.account, "host": endpoint, "extra": {"sas_token": sas}}
    monkeypatch.setenv("AIRFLOW_CONN_WASB_DEFAULT", json.dumps(conn))
    cfg = entry(crate_table[0], engine="copy", target=f"az://{container}/lake")
    with pytest.raises(ExportError) as refused:
        run_export(cfg, WINDOW)
    assert not refused.value.retryable, refused.value
    assert "AuthorizationPermissionMismatch" in str(refused.value) and sas not in str(refused.value)
    assert store.list_objects(partition(cfg, DAY)) == []


@pytest.mark.parametrize("where", ["azure", "gcs"])
def test_an_iceberg_table_on_azure_and_gcs_restores_exactly(
    crate_table, az_conn, fake_gcs, monkeypatch, tmp_path, where
):
    """CrateDB -> Iceberg with the table's files in Azurite or fake-gcs-server (through the package's
    store), verified against CrateDB's count and restored by the worker: exactly the day's rows."""
    from cratedb_airflow_export.connections import from_environment
    from cratedb_airflow_export.verify import verify_iceberg_day

    name, rows = crate_table
    catalog = {"conn_type": "generic", "extra": {"type": "sql", "uri": f"sqlite:///{tmp_path}/catalog.db"}}
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", json.dumps(catalog))
    if where == "azure":
        bucket, _ = az_conn
        target = f"az://{bucket}/{unique('ice')}"
    else:
        server = fake_gcs
        bucket = server.create_bucket(f"it-{uuid.uuid4().hex[:10]}")
        extra = {"project": "test", "endpoint_url": server.endpoint}
        monkeypatch.setenv(
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
        )
        target = f"gs://{bucket}/{unique('ice')}"
    cfg = entry(name, engine="stream", format="iceberg", target=target)
    expected = rows_of_day(rows, DAY)
    assert run_export(cfg, WINDOW).rows == len(expected)
    connections = from_environment(cfg)
    assert connections.catalog is not None
    with crate() as conn, conn.cursor() as cursor:
        report = verify_iceberg_day(connections.store, connections.catalog, cursor, cfg, WINDOW)
    assert report.ok, report.problems
    restored_exactly(cfg, expected, "worker")
