"""Schemas against the local PostgreSQL and S3 server: every manifest records the columns written;
a day whose table changed shape since the day before evolves (recorded), or is refused before
anything is published (``schema_change: fail``, or a type change that breaks readers of the folder);
DuckDB and pyarrow read the evolved folder by name with the right values, in every format. (OBJECT
keys are CrateDB's: tests/cratedb.)"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError, PermanentError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.manifest import Manifest
from cratedb_airflow_export.schema import SchemaChange, SchemaColumn
from cratedb_airflow_export.verify import verify_partition
from cratedb_airflow_export.windows import Window
from tests.helpers import SAMPLE_DAYS, read_objects

pytestmark = pytest.mark.e2e

FIRST, SECOND, THIRD = SAMPLE_DAYS
PER_DAY = 12
READERS = {"jsonl": "read_json_auto", "csv": "read_csv_auto", "parquet": "read_parquet"}


@pytest.fixture
def table(postgres):
    name = f"doc.shape_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, PER_DAY, seed=11), table=name)
        conn.execute(f'ALTER TABLE {name} ADD COLUMN "reading" INTEGER')
        conn.execute(f'UPDATE {name} SET "reading" = (hash_id % 1000)::integer')
    return name


def config(table: str, bucket: str, fmt: str = "parquet", **extra: object) -> TableExport:
    entry = {"table": table, "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{bucket}/lake"}
    return TableExport.model_validate({**entry, "format": fmt, **extra})


def run_sql(postgres, *statements: str) -> None:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def rows(postgres, query: str) -> list[tuple]:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


def manifest(s3_server, bucket: str, table: str, day: date) -> Manifest:
    key = f"lake/{table}/dt={day}/_manifest.json"
    return Manifest.from_bytes(read_objects(s3_server, bucket, key)[key])


def day_folder(s3_server, bucket: str, table: str, day: date) -> list[str]:
    return sorted(k.rsplit("/", 1)[-1] for k in read_objects(s3_server, bucket, f"lake/{table}/dt={day}/"))


def download(s3_server, bucket: str, table: str, into: Path) -> Path:
    for key, data in read_objects(s3_server, bucket, f"lake/{table}/").items():
        (into / key).parent.mkdir(parents=True, exist_ok=True)
        (into / key).write_bytes(data)
    return into / "lake" / table


def test_the_manifest_records_each_column_with_its_types_and_nullability(
    connections, postgres, s3_server, bucket, table
):
    run_sql(postgres, f'ALTER TABLE {table} ALTER COLUMN "hash_id" SET NOT NULL')
    expected_types = {
        "parquet": ["int64", "timestamp[us, tz=UTC]", "string", "string (JSON text)", "string (JSON text)", "int32"],
        "jsonl": ["integer", "string (ISO 8601)", "string", "json", "json", "integer"],
        "csv": ["text"] * 6,
    }
    for fmt, file_types in expected_types.items():
        cfg = config(table, bucket, fmt, target=f"s3://{bucket}/{fmt}")
        run_export(cfg, Window.for_day(FIRST))
        key = f"{fmt}/{table}/dt={FIRST}/_manifest.json"
        written = Manifest.from_bytes(read_objects(s3_server, bucket, key)[key])
        source_types = ["bigint", "timestamp with time zone", "text", "json", "json", "integer"]
        names = ["hash_id", "timestamp", "name", "tags", "fields", "reading"]
        assert written.schema_ == [
            SchemaColumn(name=n, source_type=s, file_type=f, nullable=n != "hash_id")
            for n, s, f in zip(names, source_types, file_types, strict=True)
        ], fmt
        assert (written.schema_changes, written.schema_compared_with) == (None, None)  # the table's first day
        assert b'"schema": [' in read_objects(s3_server, bucket, key)[key]  # by that name in the file


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_a_column_added_and_a_type_widened_evolve_and_the_folder_reads_by_name(
    connections, postgres, s3_server, bucket, table, fmt, tmp_path
):
    cfg = config(table, bucket, fmt)
    run_export(cfg, Window.for_day(FIRST))
    run_sql(postgres, f'ALTER TABLE {table} ADD COLUMN "unit" TEXT', f"UPDATE {table} SET \"unit\" = 'C'")
    second = run_export(cfg, Window.for_day(SECOND))
    run_sql(postgres, f'ALTER TABLE {table} ALTER COLUMN "reading" TYPE BIGINT')
    run_sql(postgres, f'UPDATE {table} SET "reading" = "reading" + 5000000000')
    third = run_export(cfg, Window.for_day(THIRD))

    assert second.as_dict()["schema_changes"] == ["unit added (text)"]
    assert manifest(s3_server, bucket, table, SECOND).schema_changes == [
        SchemaChange(column="unit", change="added", after="text")
    ]
    assert manifest(s3_server, bucket, table, SECOND).schema_compared_with == str(FIRST)
    widened = manifest(s3_server, bucket, table, THIRD)
    assert widened.schema_compared_with == str(SECOND)
    file_type = {"parquet": ("int32", "int64"), "jsonl": ("integer", "integer"), "csv": ("text", "text")}[fmt]
    assert widened.schema_changes == [
        SchemaChange(column="reading", change="type changed", before="integer", after="bigint")
    ]
    assert [c.file_type for c in widened.schema_ or [] if c.name == "reading"] == [file_type[1]]
    assert third.as_dict()["schema_changes"] == ["reading changed from integer to bigint"]

    # the source as each day was exported: day 1 without unit, day 3 with the widened reading
    source = rows(postgres, f'SELECT hash_id, "timestamp", "unit", "reading" FROM {table} ORDER BY hash_id')
    expected = []
    for hash_id, stamp, unit, reading in source:
        day = stamp.astimezone(Window.for_day(FIRST).start.tzinfo).date()
        if day == FIRST:
            expected.append((hash_id, None, reading - 5_000_000_000))
        elif day == SECOND:
            expected.append((hash_id, unit, reading - 5_000_000_000))
        else:
            expected.append((hash_id, unit, reading))
    folder = download(s3_server, bucket, table, tmp_path)
    read = duckdb.sql(
        f"SELECT hash_id, unit, reading FROM {READERS[fmt]}('{folder}/*/part-*', union_by_name = true) ORDER BY hash_id"
    ).fetchall()
    assert [(int(h), u, int(r)) for h, u, r in read] == sorted(expected)
    if fmt == "parquet":  # pyarrow: one dataset over the days, the newest schema promoting the older
        files = sorted(str(p) for p in folder.glob("*/part-*"))
        schemas = [ds.dataset(f, format="parquet").schema for f in files]
        unified = pa.unify_schemas(schemas, promote_options="permissive")
        table_read = ds.dataset(files, format="parquet", schema=unified).to_table(
            columns=["hash_id", "unit", "reading"]
        )
        assert sorted(tuple(r.values()) for r in table_read.to_pylist()) == sorted(expected)


def test_schema_change_fail_refuses_before_publishing_and_leaves_the_day_as_it_was(
    connections, postgres, s3_server, bucket, table
):
    cfg = config(table, bucket, schema_change="fail")
    run_export(cfg, Window.for_day(FIRST))
    run_export(cfg, Window.for_day(SECOND))
    before = manifest(s3_server, bucket, table, SECOND)
    run_sql(postgres, f'ALTER TABLE {table} ADD COLUMN "unit" TEXT', f'ALTER TABLE {table} DROP COLUMN "name"')
    with pytest.raises(ExportError) as failed:
        run_export(cfg, Window.for_day(SECOND))  # a rerun of day 2: compared with day 1
    assert isinstance(failed.value, PermanentError)
    message = str(failed.value)
    assert f"the schema of {SECOND} differs from {FIRST}'s (unit added (text); name removed (was text))" in message
    assert "nothing was published" in message
    assert manifest(s3_server, bucket, table, SECOND) == before  # the day's partition as it was
    with pytest.raises(ExportError, match="unit added"):
        run_export(cfg, Window.for_day(THIRD))
    assert day_folder(s3_server, bucket, table, THIRD) == []  # nothing of day 3
    evolving = config(table, bucket, schema_change="evolve")
    assert run_export(evolving, Window.for_day(THIRD)).as_dict()["schema_changes"] == [
        "unit added (text)",
        "name removed (was text)",
    ]


def test_a_type_change_that_breaks_readers_is_refused_unless_allowed(connections, postgres, s3_server, bucket, table):
    cfg = config(table, bucket)
    run_export(cfg, Window.for_day(FIRST))
    run_sql(postgres, f'ALTER TABLE {table} ALTER COLUMN "reading" TYPE TEXT')
    with pytest.raises(ExportError) as failed:
        run_export(cfg, Window.for_day(SECOND))
    assert isinstance(failed.value, PermanentError)
    assert "reading changed from integer to text (breaking)" in str(failed.value)
    assert "allow_type_change" in str(failed.value)
    assert day_folder(s3_server, bucket, table, SECOND) == []
    allowed = config(table, bucket, allow_type_change=["reading"])
    result = run_export(allowed, Window.for_day(SECOND))
    assert result.rows == PER_DAY
    assert manifest(s3_server, bucket, table, SECOND).schema_changes == [
        SchemaChange(column="reading", change="type changed", before="integer", after="text", breaking=True)
    ]


@pytest.mark.parametrize(
    ("fmt", "compression"), [("parquet", "zstd"), ("csv", "gzip"), ("jsonl", "zstd"), ("jsonl", "none")]
)
def test_verify_checks_each_file_against_the_manifests_schema(
    connections, postgres, s3_server, bucket, table, fmt, compression
):
    """A file swapped for one of another shape, with the manifest's size, ETag and checksum made to
    match it: only the schema check can tell."""
    cfg = config(table, bucket, fmt, compression=compression)
    first = run_export(cfg, Window.for_day(FIRST))
    store = s3_server.store()
    client = store.client
    assert verify_partition(store, None, cfg, Window.for_day(FIRST)).problems == []

    run_sql(postgres, f'ALTER TABLE {table} ADD COLUMN "unit" TEXT', f"UPDATE {table} SET \"unit\" = 'C'")
    other = config(table, bucket, fmt, compression=compression, target=f"s3://{bucket}/other")
    (swapped,) = run_export(other, Window.for_day(FIRST)).objects
    (original,) = first.objects
    client.copy_object(Bucket=bucket, Key=original.key, CopySource={"Bucket": bucket, "Key": swapped.key})
    key = f"lake/{table}/dt={FIRST}/_manifest.json"
    written = manifest(s3_server, bucket, table, FIRST)
    head = client.head_object(Bucket=bucket, Key=original.key, ChecksumMode="ENABLED")
    entry = written.objects[0].model_copy(
        update={"size": head["ContentLength"], "etag": head["ETag"].strip('"'), "checksum_sha256": None}
    )
    client.put_object(Bucket=bucket, Key=key, Body=written.model_copy(update={"objects": [entry]}).to_bytes())

    problems = verify_partition(store, None, cfg, Window.for_day(FIRST)).problems
    names = ["hash_id", "timestamp", "name", "tags", "fields", "reading"]
    expected = {
        "parquet": f"{original.key}: its Parquet schema [hash_id: int64, timestamp: timestamp[us, tz=UTC], "
        "name: string, tags: string (JSON text), fields: string (JSON text), reading: int32, unit: string] is not "
        "the manifest's [hash_id: int64, timestamp: timestamp[us, tz=UTC], name: string, tags: string (JSON text), "
        "fields: string (JSON text), reading: int32]",
        "csv": f"{original.key}: its header {[*names, 'unit']} is not the manifest's columns {names}",
        "jsonl": f"{original.key}: its first row holds {[*names, 'unit']}, the manifest's columns are {names}",
    }[fmt]
    assert problems == [expected]


def test_days_in_another_format_are_not_compared(connections, postgres, s3_server, bucket, table):
    """A table that moves from JSON Lines to Parquet: the Parquet day has no Parquet day before it
    (every column's file type differs from JSON Lines', which no reader of one format meets)."""
    run_export(config(table, bucket, "jsonl"), Window.for_day(FIRST))
    parquet = run_export(config(table, bucket, "parquet"), Window.for_day(SECOND))
    assert parquet.as_dict()["schema_changes"] == []
    written = manifest(s3_server, bucket, table, SECOND)
    assert (written.schema_changes, written.schema_compared_with) == (None, None)
    run_export(config(table, bucket, "parquet"), Window.for_day(THIRD))
    assert manifest(s3_server, bucket, table, THIRD).schema_compared_with == str(SECOND)
