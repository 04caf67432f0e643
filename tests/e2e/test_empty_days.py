"""A day without rows publishes a partition every reader opens as zero rows, in every format.

Parquet and CSV get one file of zero rows (the schema; the header); JSON Lines gets no data object
(an empty JSON Lines file breaks pyarrow). Read back with pyarrow.dataset from the S3 server and
with DuckDB from a local copy (DuckDB's S3 extension is downloaded at run time, which this
machine cannot), through the table folder (Hive partitions) and the day folder alone.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import duckdb
import psycopg
import pyarrow.dataset as ds
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.manifest import Manifest
from tests.helpers import SAMPLE_DAYS, data_objects, make_dag, read_objects, run_dag, task_states

pytestmark = pytest.mark.e2e
FULL, EMPTY = date(2024, 1, 5), date(2024, 1, 6)  # the sample has rows on 01-03 .. 01-05
CASES = [("jsonl", "gzip"), ("jsonl", "none"), ("csv", "gzip"), ("csv", "none"), ("parquet", "zstd")]
READERS = {  # DuckDB's reader and pyarrow's dataset format per format
    "jsonl": ("read_json_auto", "json"),
    "csv": ("read_csv_auto", "csv"),
    "parquet": ("read_parquet", "parquet"),
}


@pytest.fixture(scope="module")
def columns_table(postgres):
    """hash_id, timestamp and name only: every reader infers the same columns."""
    name = f"doc.e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, 20, seed=21), table=name)
    return name


@pytest.mark.parametrize(("fmt", "compression"), CASES)
def test_an_empty_day_reads_as_zero_rows(
    airflow_db, connections, s3_server, bucket, columns_table, tmp_path, fmt, compression
):
    entry = {
        "table": columns_table,
        "timestamp_column": "timestamp",
        "engine": "stream",
        "format": fmt,
        "compression": compression,
        "columns": ["hash_id", "timestamp", "name"],
        "target": f"s3://{bucket}/lake",
    }
    dag = make_dag(f"e2e_empty_{fmt}_{compression}", [entry])
    for day in (FULL, EMPTY):
        assert set(task_states(run_dag(dag, day)).values()) == {"success"}
    objects = read_objects(s3_server, bucket)
    table_folder = f"lake/{columns_table}"
    empty_folder = f"{table_folder}/dt={EMPTY}"
    manifest = Manifest.from_bytes(objects[f"{empty_folder}/_manifest.json"])
    assert (manifest.rows, manifest.source_count) == (0, 0)
    assert f"{empty_folder}/_SUCCESS" in objects
    empty_files = [k for k in data_objects(objects) if k.startswith(empty_folder + "/")]
    assert [o.key for o in manifest.objects] == empty_files
    assert len(empty_files) == (0 if fmt == "jsonl" else 1)

    duck_reader, arrow_format = READERS[fmt]
    fs = s3_server.arrow_filesystem()
    dataset = ds.dataset(f"{bucket}/{table_folder}", filesystem=fs, format=arrow_format, partitioning="hive")
    assert dataset.to_table(filter=ds.field("dt") == str(EMPTY)).num_rows == 0
    assert dataset.to_table(filter=ds.field("dt") == str(FULL)).num_rows == 20
    day_alone = ds.dataset(f"{bucket}/{empty_folder}", filesystem=fs, format=arrow_format)
    assert day_alone.to_table().num_rows == 0

    local = tmp_path / "copy"
    for key, data in objects.items():
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(data)
    pattern = f"{local / table_folder}/*/part-*"
    by_day = duckdb.sql(
        f"SELECT dt, count(*) FROM {duck_reader}('{pattern}', hive_partitioning = true) GROUP BY dt ORDER BY dt"
    ).fetchall()
    assert [(str(d), n) for d, n in by_day] == [(str(FULL), 20)]  # the empty day: no rows
    if fmt != "jsonl":  # the day alone: its zero-row file
        assert duckdb.sql(f"SELECT count(*) FROM {duck_reader}('{local / empty_folder}/part-*')").fetchall() == [(0,)]
    assert Path(local / empty_folder / "_SUCCESS").exists()
