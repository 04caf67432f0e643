"""Type fidelity: for each format, rows read back from S3 equal the source rows (values and
types, NULLs, unicode, nested objects, microsecond timestamps). Through Airflow, against the
local PostgreSQL and S3 servers."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from datetime import date, datetime, timezone

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.types.json import Json, Jsonb

from cratedb_airflow_export.manifest import Manifest
from tests.helpers import data_objects, make_dag, read_objects, rows_of_day, run_dag, task_states
from tests.samples import TYPED_DDL, TYPED_IN_DAY, TYPED_NAMES, TYPED_ROWS

pytestmark = pytest.mark.e2e
UTC = timezone.utc
DAY = date(2024, 1, 4)


@pytest.fixture(scope="module")
def typed_table(postgres):
    name = f"doc.types_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(TYPED_DDL.format(t=name))
        conn.cursor().executemany(
            f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(TYPED_NAMES))})",
            [
                (*r[:10], None if r[10] is None else Json(r[10]), None if r[11] is None else Jsonb(r[11]), *r[12:])
                for r in TYPED_ROWS
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
    assert (manifest.format, manifest.compression, manifest.rows) == (fmt, compression, len(TYPED_IN_DAY))
    ((key, data),) = data_objects(objects).items()
    assert [o.key for o in manifest.objects] == [key]
    return key, data


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def expected_json(row) -> dict:
    out = dict(zip(TYPED_NAMES, row, strict=True))
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
    assert got == [expected_json(r) for r in TYPED_IN_DAY]
    assert isinstance(got[0]["id"], int) and isinstance(got[0]["ratio"], float) and got[0]["ok"] is True


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_csv(airflow_db, connections, s3_server, bucket, typed_table, compression, reader):
    key, data = export(typed_table, bucket, s3_server, "csv", compression, reader)
    assert key.endswith(".csv.gz" if compression == "gzip" else ".csv")
    text = (gzip.decompress(data) if compression == "gzip" else data).decode("utf-8")
    assert text.count("\r\n") == len(TYPED_IN_DAY) + 1 or "\n" in TYPED_ROWS[1][6]  # CRLF row ends
    rows = csv.DictReader(io.StringIO(text, newline=""))
    assert rows.fieldnames == TYPED_NAMES
    got = sorted(rows, key=lambda r: int(r["id"]))
    for row, source in zip(got, TYPED_IN_DAY, strict=True):
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
    for row, source in zip(got, TYPED_IN_DAY, strict=True):
        want = dict(zip(TYPED_NAMES, source, strict=True))
        for name in (n for n in TYPED_NAMES if n not in ("ts", "obj", "objb")):  # those three: below
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
    from tests.helpers import rows_of_day, task_states

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
    assert (manifest.compression, manifest.compression_level, manifest.rows) == ("gzip", 1, len(TYPED_IN_DAY))
    ((key, data),) = data_objects(objects).items()
    assert key.endswith("part-00000.csv.gz")
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"), newline="")))
    assert len(rows) == len(TYPED_IN_DAY) + 1  # header + rows


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_the_columnar_path_does_not_import_pandas(airflow_db, connections, metrics, bucket, fmt):
    """pyarrow imports pandas (40 MB resident) the first time it converts a Python value; the
    PostgreSQL path never needs to. Run in a fresh interpreter, pandas being installed here."""
    script = f"""
import sys
from datetime import date
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.windows import Window
cfg = TableExport.model_validate({{"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream",
                                   "format": "{fmt}", "target": "s3://{bucket}/no-pandas"}})
result = run_export(cfg, Window.for_day(date(2024, 1, 4)))
print(result.rows, "pandas" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == [str(len(rows_of_day(metrics, date(2024, 1, 4)))), "False"]
