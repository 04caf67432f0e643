"""``json_style: cratedb``: the stream engine writes JSON Lines in the shape of CrateDB's
``COPY TO ... format = 'json_object'``, so moving a table from ``copy`` to ``stream`` does not
change what its readers see. The expected lines are written from CrateDB's documented output rules
(docs/cratedb.md, "What COPY TO writes"), not from our encoder; the CrateDB integration suite
compares with CrateDB's own output where a CrateDB is available."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from conftest import data_objects, read_objects
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.manifest import read_manifest
from cratedb_airflow_export.windows import Window

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

COLUMNS = """
    "id" BIGINT, "ts" TIMESTAMPTZ, "local_ts" TIMESTAMP, "day" DATE, "name" TEXT, "obj" JSON,
    "tags" TEXT[], "ratio" REAL, "amount" DOUBLE PRECISION, "flag" BOOLEAN, "nothing" TEXT
"""
ROWS: list[tuple[Any, ...]] = [
    (
        1,
        datetime(2024, 1, 4, 10, 0, 0, 123456, tzinfo=timezone.utc),  # microseconds: CrateDB keeps milliseconds
        datetime(2024, 1, 4, 8, 30),
        date(2024, 1, 4),
        'ünï "quoted" \\ back',
        {"a": 1, "nested": {"b": "x", "deeper": {"c": [1, 2]}, "gone": None}},
        ["a", "b"],
        1.5,
        -0.25,
        True,
        None,
    ),
    (2, datetime(2024, 1, 4, 23, 59, 59, 999999, tzinfo=timezone.utc), *[None] * 9),  # only id and ts
    (
        3,
        datetime(2024, 1, 4, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, 59, 999500),
        date(1969, 12, 31),
        "",
        {},
        [],
        None,
        None,
        False,
        None,
    ),
]


def copy_to_line(row: tuple[Any, ...]) -> str:
    """What CrateDB's COPY TO writes for ``row`` (json_object, no column list), by its rules:
    timestamps and dates as epoch milliseconds (floored), NULL columns left out, objects nested
    (CrateDB sends them as compact JSON text), the other values as JSON; columns in table order.
    (geo_point, CrateDB-only, is in the CrateDB integration suite.)"""
    names = ["id", "ts", "local_ts", "day", "name", "obj", "tags", "ratio", "amount", "flag", "nothing"]
    members = []
    for name, value in zip(names, row, strict=True):
        if value is None:
            continue
        if isinstance(value, datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=timezone.utc)) - EPOCH
            value = value // timedelta(milliseconds=1)
        elif isinstance(value, date):
            value = (value - EPOCH.date()) // timedelta(milliseconds=1)
        members.append(f"{json.dumps(name)}:{json.dumps(value, ensure_ascii=False, separators=(',', ':'))}")
    return "{" + ",".join(members) + "}"


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
            [tuple(Json(v, dumps=compact) if isinstance(v, dict) else v for v in row) for row in ROWS],
        )
    return name


def test_the_expected_lines_follow_the_documented_rules():
    """The reference itself, on one row: what docs/cratedb.md says COPY TO writes."""
    assert copy_to_line(ROWS[1]) == '{"id":2,"ts":1704412799999}'
    assert copy_to_line(ROWS[2]).startswith('{"id":3,"ts":1704326400000,"local_ts":-1,"day":-86400000,"name":""')


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
    assert lines == [copy_to_line(row) for row in ROWS]
    manifest = read_manifest(s3_server.client(), bucket, f"{folder}/_manifest.json")
    assert manifest.json_style == "cratedb"


def test_iso_stays_the_stream_default_and_is_recorded(connections, s3_server, bucket, typed):
    cfg = TableExport.model_validate(
        {"table": typed, "timestamp_column": "ts", "engine": "stream", "target": f"s3://{bucket}/iso"}
    )
    assert cfg.json_style == "iso"
    run_export(cfg, Window.for_day(DAY))
    folder = f"iso/{typed}/dt=2024-01-04"
    manifest = read_manifest(s3_server.client(), bucket, f"{folder}/_manifest.json")
    assert manifest.json_style == "iso"
    (data,) = data_objects(read_objects(s3_server, bucket, folder)).values()
    import gzip

    first = min((json.loads(line) for line in gzip.decompress(data).splitlines()), key=lambda r: r["id"])
    assert first["ts"] == "2024-01-04T10:00:00.123456+00:00" and first["nothing"] is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"engine": "copy", "json_style": "iso"}, "json_style: 'iso' is not available for jsonl with engine 'copy'"),
        ({"engine": "stream", "format": "csv", "json_style": "cratedb"}, "it applies to JSON Lines"),
        ({"engine": "stream", "json_style": "epoch"}, "json_style"),
    ],
)
def test_json_style_is_checked_against_engine_and_format(overrides, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TableExport.model_validate(
            {"table": "doc.t", "timestamp_column": "ts", "target": "s3://lake-bucket/p", **overrides}
        )


def test_each_engine_and_format_gets_its_default_style():
    def style(**overrides: Any) -> str | None:
        base = {"table": "doc.t", "timestamp_column": "ts", "target": "s3://lake-bucket/p"}
        return TableExport.model_validate({**base, **overrides}).json_style

    assert style() == "cratedb"  # engine copy: CrateDB's own shape
    assert style(engine="stream") == "iso"
    assert style(engine="stream", format="parquet") is None
