"""Type fidelity: for each format, rows read back from S3 equal the source rows (values and
types, NULLs, unicode, nested objects, microsecond timestamps). Through Airflow, against the
local PostgreSQL and S3 servers."""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.types.json import Json, Jsonb

from conftest import data_objects, make_dag, read_objects, run_dag, task_states
from cratedb_airflow_export.manifest import Manifest

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)
UTC = timezone.utc
DDL = """CREATE TABLE {t} (
    id BIGINT, small SMALLINT, num INTEGER, ratio DOUBLE PRECISION, single REAL, ok BOOLEAN, label TEXT,
    ts TIMESTAMP WITH TIME ZONE, local_ts TIMESTAMP WITHOUT TIME ZONE, day DATE, obj JSON, objb JSONB,
    ints BIGINT[], words TEXT[], amount NUMERIC
)"""
ROWS = [
    (
        1,
        7,
        123456,
        3.141592653589793,
        1.5,
        True,
        "plain",
        datetime(2024, 1, 4, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 4, 8, 30),
        date(2024, 1, 4),
        {"a": {"b": [1, 2, {"c": None}]}, "u": "ü"},
        {"k": "v"},
        [1, 2, 3],
        ["x", "y"],
        "12.50",
    ),
    (
        2,
        -1,
        -5,
        -0.0001,
        -2.25,
        False,
        'ünï "q" \\ 🚀\nline2, comma',
        datetime(2024, 1, 4, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 1, 4, 23, 59, 59, 123456),
        date(2024, 1, 3),
        {"empty": {}, "list": []},
        {"n": 1.25},
        [],
        ["ä", None],
        "-0.001",
    ),
    (
        3,
        None,
        None,
        None,
        None,
        None,
        None,
        datetime(2024, 1, 4, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=5))),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ),
    (4, 0, 0, 0.0, 0.0, True, "", datetime(2024, 1, 5, 0, 0, tzinfo=UTC), None, None, None, None, None, None, None),
]
IN_DAY = ROWS[:3]  # row 4 lies at D+1 00:00
NAMES = [
    "id",
    "small",
    "num",
    "ratio",
    "single",
    "ok",
    "label",
    "ts",
    "local_ts",
    "day",
    "obj",
    "objb",
    "ints",
    "words",
    "amount",
]


@pytest.fixture(scope="module")
def typed_table(postgres):
    name = f"doc.types_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(DDL.format(t=name))
        conn.cursor().executemany(
            f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(NAMES))})",
            [
                (*r[:10], None if r[10] is None else Json(r[10]), None if r[11] is None else Jsonb(r[11]), *r[12:])
                for r in ROWS
            ],
        )
    return name


@pytest.fixture(params=["auto", "cursor"])
def reader(request):
    """'auto' reads PostgreSQL through ADBC; 'cursor' is the path CrateDB always takes."""
    return request.param


def export(typed_table, bucket, s3_server, fmt, compression, reader):
    dag_id = f"e2e_fmt_{fmt}_{compression}_{reader}"
    entry = {
        "table": typed_table,
        "timestamp_column": "ts",
        "engine": "stream",
        "format": fmt,
        "compression": compression,
        "target": f"s3://{bucket}/lake",
        "reader": reader,
    }
    assert task_states(run_dag(make_dag(dag_id, [entry]), DAY)) == {f"export_{typed_table}": "success"}
    objects = read_objects(s3_server, bucket)
    manifest = Manifest.from_bytes(next(v for k, v in objects.items() if k.endswith("_manifest.json")))
    assert (manifest.format, manifest.compression, manifest.rows) == (fmt, compression, len(IN_DAY))
    ((key, data),) = data_objects(objects).items()
    assert [o.key for o in manifest.objects] == [key]
    return key, data


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def expected_json(row) -> dict:
    out = dict(zip(NAMES, row, strict=True))
    out["ts"] = iso(row[7])
    out["local_ts"] = None if row[8] is None else iso(row[8])
    out["day"] = None if row[9] is None else row[9].isoformat()
    out["single"] = row[4]  # 1.5 / -2.25 / 0.0 are exact in float32
    return out


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_jsonl(airflow_db, connections, s3_server, bucket, typed_table, compression, reader):
    key, data = export(typed_table, bucket, s3_server, "jsonl", compression, reader)
    assert key.endswith({"gzip": ".jsonl.gz", "zstd": ".jsonl.zst", "none": ".jsonl"}[compression])
    if compression == "gzip":
        data = gzip.decompress(data)
    elif compression == "zstd":
        data = pa.CompressedInputStream(pa.BufferReader(data), "zstd").read()
    got = sorted((json.loads(line) for line in data.decode("utf-8").splitlines()), key=lambda r: r["id"])
    assert got == [expected_json(r) for r in IN_DAY]
    assert isinstance(got[0]["id"], int) and isinstance(got[0]["ratio"], float) and got[0]["ok"] is True


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_csv(airflow_db, connections, s3_server, bucket, typed_table, compression, reader):
    key, data = export(typed_table, bucket, s3_server, "csv", compression, reader)
    assert key.endswith(".csv.gz" if compression == "gzip" else ".csv")
    text = (gzip.decompress(data) if compression == "gzip" else data).decode("utf-8")
    assert text.count("\r\n") == len(IN_DAY) + 1 or "\n" in ROWS[1][6]  # CRLF row ends
    rows = csv.DictReader(io.StringIO(text, newline=""))
    assert rows.fieldnames == NAMES
    got = sorted(rows, key=lambda r: int(r["id"]))
    for row, source in zip(got, IN_DAY, strict=True):
        want = expected_json(source)
        assert int(row["id"]) == want["id"]
        assert row["label"] == (want["label"] or "")  # NULL and '' are both empty in CSV
        assert row["ts"] == want["ts"]
        assert (json.loads(row["obj"]) if row["obj"] else None) == want["obj"]
        assert (json.loads(row["ints"]) if row["ints"] else None) == want["ints"]
        assert (float(row["ratio"]) if row["ratio"] else None) == want["ratio"]
        assert row["ok"] == {True: "true", False: "false", None: ""}[want["ok"]]


@pytest.mark.parametrize("compression", ["zstd", "snappy", "none"])
def test_parquet(airflow_db, connections, s3_server, bucket, typed_table, compression, reader):
    key, data = export(typed_table, bucket, s3_server, "parquet", compression, reader)
    assert key.endswith("part-00000.parquet")
    parquet = pq.ParquetFile(io.BytesIO(data))
    codec = parquet.metadata.row_group(0).column(0).compression
    assert codec == {"zstd": "ZSTD", "snappy": "SNAPPY", "none": "UNCOMPRESSED"}[compression]
    table = parquet.read()
    assert {f.name: str(f.type) for f in table.schema} == {
        "id": "int64",
        "small": "int16",
        "num": "int32",
        "ratio": "double",
        "single": "float",
        "ok": "bool",
        "label": "string",
        "ts": "timestamp[us, tz=UTC]",
        "local_ts": "timestamp[us]",
        "day": "date32[day]",
        "obj": "string",
        "objb": "string",
        "ints": "list<element: int64>",
        "words": "list<element: string>",
        "amount": "string",
    }
    got = sorted(table.to_pylist(), key=lambda r: r["id"])
    for row, source in zip(got, IN_DAY, strict=True):
        want = dict(zip(NAMES, source, strict=True))
        for name in (n for n in NAMES if n not in ("ts", "obj", "objb")):  # those three: below
            assert row[name] == want[name], name
        assert row["ts"] == want["ts"].astimezone(UTC)  # microseconds kept
        assert (json.loads(row["obj"]) if row["obj"] else None) == want["obj"]
        assert (json.loads(row["objb"]) if row["objb"] else None) == want["objb"]


def test_files_roll_over_at_the_target_size(airflow_db, connections, postgres, s3_server, bucket, reader):
    name = f"doc.big_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(f"CREATE TABLE {name} (id BIGINT, ts TIMESTAMPTZ, payload TEXT)")
        conn.execute(
            f"INSERT INTO {name} SELECT g, '2024-01-04'::timestamptz + g * interval '1 millisecond', "
            "md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 120000) g"
        )
    entry = {
        "table": name,
        "timestamp_column": "ts",
        "engine": "stream",
        "compression": "none",
        "file_size_mb": 5,
        "part_size_mb": 5,
        "target": f"s3://{bucket}/big",
    }
    entry["reader"] = reader
    assert task_states(run_dag(make_dag(f"e2e_rollover_{reader}", [entry]), DAY)) == {f"export_{name}": "success"}
    objects = data_objects(read_objects(s3_server, bucket))
    folder = f"big/{name}/dt=2024-01-04"
    assert list(objects) == [f"{folder}/part-0000{i}.jsonl" for i in range(len(objects))]
    assert len(objects) >= 2
    assert all(len(data) >= 5 * 1024 * 1024 for data in list(objects.values())[:-1])
    ids = [json.loads(line)["id"] for data in objects.values() for line in data.splitlines()]
    assert ids == list(range(1, 120001))  # every row once, files in order


@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_parallel_slices_make_one_partition(airflow_db, connections, metrics, s3_server, bucket, reader):
    """The day split into 3 sub-windows, exported by mapped tasks, published as one partition."""
    from conftest import rows_of_day, task_states

    entry = {
        "table": "doc.metrics",
        "timestamp_column": "timestamp",
        "engine": "stream",
        "format": "parquet",
        "slices": 3,
        "reader": reader,
        "target": f"s3://{bucket}/sliced",
    }
    dag = make_dag(f"e2e_slices_{reader}", [entry])
    assert [t.task_id for t in dag.tasks] == ["export_doc.metrics.slices", "export_doc.metrics"]
    dag_run = run_dag(dag, DAY)
    states = task_states(dag_run)
    assert states == {"export_doc.metrics.slices": "success", "export_doc.metrics": "success"}
    assert sorted(ti.map_index for ti in dag_run.get_task_instances() if ti.task_id.endswith(".slices")) == [0, 1, 2]

    objects = read_objects(s3_server, bucket)
    folder = "sliced/doc.metrics/dt=2024-01-04"
    data = data_objects(objects)
    assert list(data) == [f"{folder}/slice-00{i}-part-00000.parquet" for i in range(3)]
    assert f"{folder}/_SUCCESS" in objects
    assert not [k for k in objects if "_cratedb_export_staging" in k]
    got = sorted(r["hash_id"] for blob in data.values() for r in pq.read_table(io.BytesIO(blob)).to_pylist())
    assert got == sorted(r[0] for r in rows_of_day(metrics, DAY))
    manifest = Manifest.from_bytes(objects[f"{folder}/_manifest.json"])
    assert manifest.rows == manifest.source_count == 50 == sum(o.rows for o in manifest.objects)


def test_compression_level_is_applied_and_recorded(airflow_db, connections, s3_server, bucket, typed_table):
    entry = {
        "table": typed_table,
        "timestamp_column": "ts",
        "engine": "stream",
        "format": "csv",
        "compression_level": 1,
        "target": f"s3://{bucket}/levels",
    }
    assert task_states(run_dag(make_dag("e2e_fmt_level", [entry]), DAY)) == {f"export_{typed_table}": "success"}
    objects = read_objects(s3_server, bucket, "levels/")
    manifest = Manifest.from_bytes(next(v for k, v in objects.items() if k.endswith("_manifest.json")))
    assert (manifest.compression, manifest.compression_level, manifest.rows) == ("gzip", 1, len(IN_DAY))
    ((key, data),) = data_objects(objects).items()
    assert key.endswith("part-00000.csv.gz")
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"), newline="")))
    assert len(rows) == len(IN_DAY) + 1  # header + rows
