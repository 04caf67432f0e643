"""Restore: export -> restore into an empty table -> the rows equal the source rows, in values and
types, for every format and both engines' output shapes; refusals; the COPY FROM statement."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import date, datetime, timezone

import psycopg
import pytest
from psycopg.types.json import Json, Jsonb

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.manifest import Manifest
from cratedb_airflow_export.restore import restore
from cratedb_airflow_export.windows import Window
from tests.helpers import Lake, make_dag, run_dag, task_states
from tests.samples import TYPED_DDL, TYPED_IN_DAY, TYPED_NAMES, TYPED_ROWS

DAY = date(2024, 1, 4)
WINDOW = Window.for_day(DAY)


def new_table(postgres, prefix: str, ddl: str, insert: str | None = None, rows: list | None = None) -> str:
    """A fresh table ``doc.<prefix>_<random>`` from ``ddl``, with ``rows`` inserted by ``insert``."""
    name = f"doc.{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(ddl.format(t=name))
        if insert and rows:
            conn.cursor().executemany(insert.format(t=name), rows)
    return name


def create(postgres, with_rows: bool) -> str:
    rows = [
        (*r[:10], None if r[10] is None else Json(r[10]), None if r[11] is None else Jsonb(r[11]), *r[12:])
        for r in TYPED_ROWS
    ]
    insert = f"INSERT INTO {{t}} VALUES ({', '.join(['%s'] * len(TYPED_NAMES))})"
    return new_table(postgres, "r", TYPED_DDL, insert, rows if with_rows else None)


def rows_in_day(postgres, table: str) -> list[tuple]:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        return conn.execute(f"SELECT * FROM {table} WHERE ts >= %s AND ts < %s ORDER BY id", WINDOW.bounds()).fetchall()


def entry(table: str, lake: Lake, **extra: object) -> dict[str, object]:
    base = {"table": table, "timestamp_column": "ts", "engine": "stream", "target": lake.target()}
    return {**base, **extra}


ROUND_TRIPS = [
    ("jsonl", "gzip"),
    ("jsonl", "zstd"),
    ("jsonl", "none"),
    ("csv", "gzip"),
    ("csv", "none"),
    ("parquet", "zstd"),
    ("parquet", "snappy"),
]


# every format on S3; each format on one other store too
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("lake", "fmt", "compression"),
    [("s3", *trip) for trip in ROUND_TRIPS]
    + [("azure", "jsonl", "gzip"), ("azure", "parquet", "zstd"), ("gcs", "csv", "gzip"), ("gcs", "parquet", "snappy")],
    indirect=["lake"],
)
def test_round_trip_equals_the_source_rows(connections, postgres, lake, fmt, compression):
    source = create(postgres, with_rows=True)
    target = create(postgres, with_rows=False)
    cfg = TableExport.model_validate(entry(source, lake, format=fmt, compression=compression))
    assert run_export(cfg, WINDOW).rows == len(TYPED_IN_DAY)
    (result,) = restore(cfg, [WINDOW], into=target)
    assert (result.table, result.rows, result.method, result.deleted) == (target, len(TYPED_IN_DAY), "worker", 0)
    assert rows_in_day(postgres, target) == rows_in_day(postgres, source)
    restored = rows_in_day(postgres, target)
    assert [type(v) for v in restored[0]] == [type(v) for v in rows_in_day(postgres, source)[0]]


COPY_DDL = (
    'CREATE TABLE {t} ("hash_id" BIGINT, "timestamp" TIMESTAMPTZ, "name" TEXT, "tags" JSON, "fields" JSON, '
    '"month" TIMESTAMPTZ GENERATED ALWAYS AS '
    "(date_trunc('month', \"timestamp\" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') STORED)"
)


def cratedb_copy_line(row: tuple) -> str:
    """A row as CrateDB's COPY TO writes it (docs/cratedb.md): epoch milliseconds, NULL columns left
    out (5.10+), partition columns as JSON strings (5.9+), objects nested."""
    hash_id, stamp, name, tags, fields = row
    millis = int(stamp.timestamp() * 1000)
    line = {"hash_id": hash_id, "timestamp": millis, "name": name, "tags": tags, "fields": fields}
    month = datetime(stamp.year, stamp.month, 1, tzinfo=timezone.utc)
    line["month"] = str(int(month.timestamp() * 1000))
    return json.dumps({k: v for k, v in line.items() if v is not None})


@pytest.mark.e2e
@pytest.mark.parametrize("lake", ["s3", "azure"], indirect=True)  # where CrateDB's COPY TO writes
def test_a_copy_engine_partition_is_restored_by_the_worker(connections, postgres, lake):
    """CrateDB's own output shape, written as its COPY TO would (no CrateDB can run here), restored
    into PostgreSQL, which cannot COPY FROM S3: the worker converts epoch milliseconds and fills
    the missing NULL columns; the generated partition column is left to the database."""
    bucket = lake.bucket
    rows = [
        (1, datetime(2024, 1, 4, 0, 0, 0, 123000, tzinfo=timezone.utc), "cpu", {"host": "a"}, {"v": 1.5}),
        (2, datetime(2024, 1, 4, 23, 59, 59, 999000, tzinfo=timezone.utc), None, {"host": "b"}, None),
    ]
    target = f"doc.c_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(COPY_DDL.format(t=target))
    cfg = TableExport.model_validate(
        {"table": "doc.metrics", "timestamp_column": "timestamp", "target": f"{lake.scheme}://{bucket}/cp"}
    )
    folder = f"cp/doc.metrics/dt={DAY}"
    store = lake.store
    bodies = {
        f"{folder}/metrics_0_.json.gz": gzip.compress((cratedb_copy_line(rows[0]) + "\n").encode()),
        f"{folder}/metrics_1_.json.gz": gzip.compress((cratedb_copy_line(rows[1]) + "\n").encode()),
    }
    for key, body in bodies.items():
        store.put(bucket, key, body)
    objects = [{**o.as_dict(), "rows": None} for o in store.list_objects(lake.location(folder))]
    manifest = Manifest(
        table="doc.metrics",
        interval=WINDOW.as_dict(),
        partition=f"{lake.scheme}://{bucket}/{folder}/",
        engine="copy",
        format="jsonl",
        compression="gzip",
        rows=2,
        source_count=2,
        row_count_check="strict",
        objects=objects,
        statements_fingerprint="sha256:x",
        exported_at="2024-01-05T00:00:00+00:00",
    )
    store.put(bucket, f"{folder}/_manifest.json", manifest.to_bytes())
    store.put(bucket, f"{folder}/_SUCCESS", b"")
    (result,) = restore(cfg, [WINDOW], into=target, method="auto")
    assert (result.method, result.rows) == ("worker", 2)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        restored = conn.execute(f'SELECT * FROM {target} ORDER BY "hash_id"').fetchall()
    assert restored == [
        (*rows[0], datetime(2024, 1, 1, tzinfo=timezone.utc)),
        (*rows[1], datetime(2024, 1, 1, tzinfo=timezone.utc)),
    ]
    with pytest.raises(
        ExportError, match=r"method 'copy' needs a partition of the copy engine .* and a CrateDB target"
    ):
        restore(cfg, [WINDOW], into=target, replace=True, method="copy")


@pytest.mark.e2e
def test_a_second_restore_is_refused_and_replace_leaves_exactly_one_copy(connections, postgres, lake):
    source = create(postgres, with_rows=True)
    target = create(postgres, with_rows=False)
    cfg = TableExport.model_validate(entry(source, lake))
    run_export(cfg, WINDOW)
    restore(cfg, [WINDOW], into=target)
    with pytest.raises(ExportError) as refused:
        restore(cfg, [WINDOW], into=target)
    assert f"{target} already holds 3 rows in [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00)" in str(
        refused.value
    )
    assert "restore with replace (--replace)" in str(refused.value) and refused.value.retryable is False
    (again,) = restore(cfg, [WINDOW], into=target, replace=True)
    assert (again.rows, again.deleted) == (3, 3)
    assert rows_in_day(postgres, target) == rows_in_day(postgres, source)  # one copy, not two


@pytest.mark.e2e
def test_an_incomplete_partition_is_not_restored(connections, postgres, lake):
    bucket = lake.bucket
    source = create(postgres, with_rows=True)
    target = create(postgres, with_rows=False)
    cfg = TableExport.model_validate(entry(source, lake))
    run_export(cfg, WINDOW)
    lake.store.delete(bucket, [f"lake/{source}/dt={DAY}/_SUCCESS"])
    with pytest.raises(ExportError, match="is not a complete partition \\(_SUCCESS missing\\)"):
        restore(cfg, [WINDOW], into=target)
    assert rows_in_day(postgres, target) == []


@pytest.mark.e2e
def test_the_restore_dag_restores_what_its_trigger_form_asks(airflow_db, connections, postgres, lake):
    source = create(postgres, with_rows=True)
    target = create(postgres, with_rows=False)
    cfg = TableExport.model_validate(entry(source, lake, format="parquet"))
    run_export(cfg, WINDOW)
    dag = make_dag("e2e_restore", [entry(source, lake, format="parquet")], kind="restore")
    dag_run = run_dag(dag, DAY, conf={"table": source, "day": str(DAY), "into": target})
    assert task_states(dag_run) == {"restore": "success"}
    assert rows_in_day(postgres, target) == rows_in_day(postgres, source)
    (summary,) = dag_run.get_task_instance("restore").xcom_pull(task_ids="restore")
    assert (summary["table"], summary["rows"], summary["method"]) == (target, 3, "worker")


@pytest.mark.e2e
def test_the_command_line_restores(connections, postgres, lake, tmp_path, capsys):
    bucket = lake.bucket
    from cratedb_airflow_export.cli import main

    source = create(postgres, with_rows=True)
    target = create(postgres, with_rows=False)
    config = tmp_path / "exports.yaml"
    config.write_text(json.dumps({"tables": [entry(source, lake, format="csv")]}))
    run_export(TableExport.model_validate(entry(source, lake, format="csv")), WINDOW)
    args = ["restore", "--table", source, "--date", str(DAY), "--into", target, "--config", str(config)]
    assert main(args) == 0
    said = f"OK {lake.scheme}://{bucket}/lake/{source}/dt={DAY}/ -> {target}: 3 rows (worker)"
    assert capsys.readouterr().out.strip() == said
    assert main(args) == 1  # refused: the rows are there
    assert "already holds 3 rows" in capsys.readouterr().out
    assert main([*args, "--replace"]) == 0
    assert "3 rows (worker, 3 rows replaced)" in capsys.readouterr().out
    assert rows_in_day(postgres, target) == rows_in_day(postgres, source)


# --- values at the edges: exported and restored exactly, in every format ---------------------------

EDGE_DDL = """CREATE TABLE {t} (
    id BIGINT, at TIMESTAMP WITH TIME ZONE, d DOUBLE PRECISION, r REAL, t TEXT, n NUMERIC, big BIGINT,
    ts TIMESTAMP WITH TIME ZONE, local_ts TIMESTAMP WITHOUT TIME ZONE, day DATE, ds DOUBLE PRECISION[]
)"""
NAN, INF = float("nan"), float("inf")
EDGE_ROWS = [
    (
        1,
        NAN,
        NAN,
        "",
        "12345678901234567890.123456789012345678",
        2**53 + 1,
        "0001-01-01 00:00:00+00",
        "0001-01-01 00:00:00",
        "0001-01-01",
        [NAN, -0.0, INF],
    ),
    (
        2,
        INF,
        -INF,
        "NULL",
        "-0.000000000000000000001",
        -(2**63),
        "9999-12-31 23:59:59.999999+00",
        "9999-12-31 23:59:59.999999",
        "9999-12-31",
        [],
    ),
    (3, -INF, -0.0, "NA", "100000", 2**63 - 1, "1970-01-01 00:00:00+00", None, None, None),
    (
        4,
        -0.0,
        3.4e38,
        "nan",
        None,
        0,
        "1969-12-31 23:59:59.999999+00",
        "2024-01-04 00:00:00.000001",
        "2024-01-04",
        [-INF],
    ),
    (5, 5e-324, 1.4e-45, "null", "0", -1, None, "1969-12-31 23:59:59.999999", "1970-01-01", [5e-324]),
    (6, 0.1, 0.1, "N/A", "-1.5", 2**53 - 1, "2024-01-04 12:00:00.000001+05:30", None, None, [0.1, None]),
    (7, None, None, None, None, None, None, None, None, None),
    (8, 1e308, -1e-7, "NaN", "3.14159265358979323846264338327950288", -(2**53) - 1, None, None, None, [1e308]),
    (9, 2.0, 1.0, " ", "-0", 7, None, None, None, None),
]


def edge_table(postgres, with_rows: bool) -> str:
    insert = (
        "INSERT INTO {t} VALUES (%s, '2024-01-04 10:00:00+00'::timestamptz + %s * interval '1 second', "
        "%s, %s, %s, %s::numeric, %s, %s::timestamptz, %s::timestamp, %s::date, %s)"
    )
    return new_table(postgres, "e", EDGE_DDL, insert, [(r[0], r[0], *r[1:]) for r in EDGE_ROWS] if with_rows else None)


def exact(postgres, table: str, *, milliseconds: bool = False) -> list[str]:
    """The rows as text that tells -0.0 from 0.0 and NaN from NULL; with ``milliseconds``, timestamps
    cut to what the ``cratedb`` JSON style keeps (CrateDB's COPY TO writes milliseconds)."""

    def kept(value):
        if milliseconds and isinstance(value, datetime):
            return value.replace(microsecond=value.microsecond // 1000 * 1000)
        return value

    with psycopg.connect(postgres.url, autocommit=True) as conn:
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall()
    return [repr(tuple(kept(v) for v in row)) for row in rows]


@pytest.mark.e2e
@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the values' formats; every store: the tests above
@pytest.mark.parametrize(
    ("fmt", "compression", "json_style"),
    [
        ("jsonl", "gzip", "iso"),
        ("jsonl", "zstd", "iso"),
        ("jsonl", "none", "iso"),
        ("jsonl", "gzip", "cratedb"),
        ("jsonl", "none", "cratedb"),
        ("csv", "gzip", None),
        ("csv", "none", None),
        ("parquet", "zstd", None),
        ("parquet", "snappy", None),
        ("parquet", "gzip", None),
        ("parquet", "none", None),
    ],
)
def test_values_at_the_edges_come_back_exactly(connections, postgres, lake, fmt, compression, json_style):
    """NaN, the infinities and -0.0 (also inside arrays), text that other tools read as NULL, integers
    beyond 2^53, long numerics, subnormal floats, the first and the last microsecond of the calendar:
    restored, they equal the source (the ``cratedb`` JSON style keeps milliseconds, as COPY TO does)."""
    source, target = edge_table(postgres, with_rows=True), edge_table(postgres, with_rows=False)
    extra = {"format": fmt, "compression": compression, **({"json_style": json_style} if json_style else {})}
    cfg = TableExport.model_validate({**entry(source, lake, **extra), "timestamp_column": "at"})
    assert run_export(cfg, WINDOW).rows == len(EDGE_ROWS)
    (result,) = restore(cfg, [WINDOW], into=target)
    assert result.rows == len(EDGE_ROWS)
    milliseconds = json_style == "cratedb"
    expected = exact(postgres, source, milliseconds=milliseconds)
    assert "nan" in expected[0] and "-0.0" in expected[3] and "'NULL'" in expected[1]  # the corpus is what it says
    assert exact(postgres, target, milliseconds=milliseconds) == expected


@pytest.mark.e2e
@pytest.mark.parametrize("lake", ["s3"], indirect=True)
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_json_null_value_comes_back_apart_from_sql_null(connections, postgres, lake, fmt):
    """Formats that keep JSON as text tell ``'null'::json`` from SQL NULL; so does the restore. (JSON
    Lines writes both as ``null``: one of the limits in docs/engines-and-formats.md.)"""
    ddl = "CREATE TABLE {t} (id INT, ts TIMESTAMPTZ, doc JSON, docb JSONB)"
    insert = "INSERT INTO {t} VALUES (%s, '2024-01-04 12:00:00+00', %s::json, %s::jsonb)"
    rows = [(1, "null", "null"), (2, None, None), (3, '{"a": null}', "[null]")]
    source, target = new_table(postgres, "jn", ddl, insert, rows), new_table(postgres, "jn", ddl)
    cfg = TableExport.model_validate(entry(source, lake, format=fmt))
    assert run_export(cfg, WINDOW).rows == 3
    restore(cfg, [WINDOW], into=target)
    query = "SELECT id, doc IS NULL, doc::text, docb IS NULL, docb::text FROM {} ORDER BY id"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        assert conn.execute(query.format(target)).fetchall() == [
            (1, False, "null", False, "null"),
            (2, True, None, True, None),
            (3, False, '{"a": null}', False, "[null]"),
        ]
