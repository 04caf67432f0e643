"""``json_style: cratedb``: the stream engine writes JSON Lines in the shape of CrateDB's
``COPY TO ... format = 'json_object'``, so moving a table from ``copy`` to ``stream`` does not
change what its readers see. The expected lines are written from CrateDB's documented output rules
(docs/cratedb.md, "What COPY TO writes"), not from our encoder; the CrateDB integration suite
compares with CrateDB's own output where a CrateDB is available."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import psycopg
import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.manifest import read_manifest
from cratedb_airflow_export.windows import Window
from tests.helpers import data_objects, read_objects
from tests.samples import JSON_STYLE_ROWS, copy_to_line

pytestmark = pytest.mark.e2e


DAY = date(2024, 1, 4)


COLUMNS = """
    "id" BIGINT, "ts" TIMESTAMPTZ, "local_ts" TIMESTAMP, "day" DATE, "name" TEXT, "obj" JSON,
    "tags" TEXT[], "ratio" REAL, "amount" DOUBLE PRECISION, "flag" BOOLEAN, "nothing" TEXT
"""


def compact(value: Any) -> str:
    """JSON as CrateDB sends an OBJECT (a json column keeps the text it was given)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def typed(postgres) -> str:
    from psycopg.types.json import Json

    name = f"public.styles_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} ({COLUMNS})")
        conn.cursor().executemany(
            f"INSERT INTO {name} VALUES ({', '.join(['%s'] * 11)})",
            [tuple(Json(v, dumps=compact) if isinstance(v, dict) else v for v in row) for row in JSON_STYLE_ROWS],
        )
    return name


@pytest.mark.parametrize("reader", ["auto", "cursor"])
@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_stream_with_json_style_cratedb_writes_what_copy_to_writes(
    connections, s3_server, bucket, typed, reader, compression
):
    cfg = TableExport.model_validate(
        {
            "table": typed,
            "timestamp_column": "ts",
            "engine": "stream",
            "format": "jsonl",
            "compression": compression,
            "json_style": "cratedb",
            "reader": reader,
            "target": f"s3://{bucket}/styles",
        }
    )
    assert run_export(cfg, Window.for_day(DAY)).rows == 3
    folder = f"styles/{typed}/dt=2024-01-04"
    (data,) = data_objects(read_objects(s3_server, bucket, folder)).values()
    if compression == "gzip":
        import gzip

        data = gzip.decompress(data)
    lines = sorted(data.decode("utf-8").splitlines(), key=lambda line: json.loads(line)["id"])
    assert lines == [copy_to_line(row) for row in JSON_STYLE_ROWS]
    manifest = read_manifest(s3_server.store(), bucket, f"{folder}/_manifest.json")
    assert manifest.json_style == "cratedb"


def test_iso_stays_the_stream_default_and_is_recorded(connections, s3_server, bucket, typed):
    cfg = TableExport.model_validate(
        {"table": typed, "timestamp_column": "ts", "engine": "stream", "target": f"s3://{bucket}/iso"}
    )
    assert cfg.json_style == "iso"
    run_export(cfg, Window.for_day(DAY))
    folder = f"iso/{typed}/dt=2024-01-04"
    manifest = read_manifest(s3_server.store(), bucket, f"{folder}/_manifest.json")
    assert manifest.json_style == "iso"
    (data,) = data_objects(read_objects(s3_server, bucket, folder)).values()
    import gzip

    first = min((json.loads(line) for line in gzip.decompress(data).splitlines()), key=lambda r: r["id"])
    assert first["ts"] == "2024-01-04T10:00:00.123456+00:00" and first["nothing"] is None
