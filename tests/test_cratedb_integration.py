"""Against a real CrateDB: runs whenever CRATEDB_URL is set (postgresql://user:pass@host:5432/doc).

The ``copy`` engine needs CrateDB itself to reach the S3 endpoint: by default the local moto
server on 127.0.0.1 (so CrateDB must run on this machine), or set CRATEDB_S3_ENDPOINT,
CRATEDB_S3_ACCESS_KEY, CRATEDB_S3_SECRET_KEY and CRATEDB_S3_BUCKET for another store.
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
from datetime import date

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from conftest import SAMPLE_DAYS, as_exported, data_objects, json_lines, read_objects, rows_of_day
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.connections import environment_lookup, source_params
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.source import CRATEDB, connect, inspect
from cratedb_airflow_export.windows import Window

CRATEDB_URL = os.environ.get("CRATEDB_URL")
pytestmark = [
    pytest.mark.cratedb,
    pytest.mark.skipif(not CRATEDB_URL, reason="CRATEDB_URL is not set: no CrateDB server to test against"),
]
DAY = date(2024, 1, 4)


@pytest.fixture
def crate_table(monkeypatch):
    name = f"doc.export_it_{uuid.uuid4().hex[:8]}"
    rows = sample_metrics(SAMPLE_DAYS, 40, seed=7)
    with psycopg.connect(CRATEDB_URL, autocommit=True) as conn:
        create_metrics(conn, rows, cratedb=True, table=name)
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", CRATEDB_URL)
    try:
        yield name, rows
    finally:
        with psycopg.connect(CRATEDB_URL, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def s3_conn(monkeypatch, s3_server, bucket):
    endpoint = os.environ.get("CRATEDB_S3_ENDPOINT", s3_server.endpoint_url)
    key = os.environ.get("CRATEDB_S3_ACCESS_KEY", s3_server.access_key)
    secret = os.environ.get("CRATEDB_S3_SECRET_KEY", s3_server.secret_key)
    target_bucket = os.environ.get("CRATEDB_S3_BUCKET", bucket)
    extra = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": key, "password": secret, "extra": extra})
    )
    return target_bucket


def test_source_checks_detect_cratedb(crate_table):
    name, _ = crate_table
    cfg = TableExport.model_validate({"table": name, "timestamp_column": "timestamp", "target": "s3://lake/x"})
    spec = environment_lookup()("cratedb_connection")
    with connect(source_params(spec)) as conn, conn.cursor() as cursor:
        info = inspect(cursor, cfg)
    assert info.dialect == CRATEDB
    assert info.timestamp_type == "timestamp with time zone"
    assert info.columns["tags"] == "object"


def test_stream_engine_against_cratedb(crate_table, s3_conn, s3_server):
    name, rows = crate_table
    cfg = TableExport.model_validate(
        {"table": name, "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{s3_conn}/it"}
    )
    result = run_export(cfg, Window.for_day(DAY))
    expected = rows_of_day(rows, DAY)
    assert result.rows == len(expected)
    (data,) = data_objects(read_objects(s3_server, s3_conn, f"it/{name}/dt=2024-01-04/")).values()
    exported = json_lines(data)
    wanted = [as_exported(r) for r in expected]
    for row in exported:
        row.pop("month", None)  # CrateDB's generated partition column
    key = lambda r: r["hash_id"]  # noqa: E731
    assert sorted(exported, key=key) == sorted(wanted, key=key)


def test_copy_engine_against_cratedb(crate_table, s3_conn, s3_server):
    name, rows = crate_table
    cfg = TableExport.model_validate(
        {"table": name, "timestamp_column": "timestamp", "engine": "copy", "target": f"s3://{s3_conn}/cp"}
    )
    result = run_export(cfg, Window.for_day(DAY))
    expected = rows_of_day(rows, DAY)
    assert result.rows == len(expected)  # from the COPY command tag
    objects = data_objects(read_objects(s3_server, s3_conn, f"cp/{name}/dt=2024-01-04/"))
    assert objects and all(key.endswith(".json.gz") for key in objects)
    lines = [json.loads(line) for data in objects.values() for line in gzip.decompress(data).splitlines() if line]
    assert sorted(line["hash_id"] for line in lines) == sorted(r[0] for r in expected)
