"""Data and small functions that several test modules share (no fixtures: those are conftest.py's)."""

from __future__ import annotations

import io
import json
import zlib
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pyarrow as pa

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.formats import FORMATS, make_encoder
from cratedb_airflow_export.loading import parse_tables
from cratedb_airflow_export.readers import field_for, to_batch

UTC = timezone.utc
ENTRY = {"table": "doc.metrics", "timestamp_column": "timestamp", "target": "s3://lake/x", "engine": "stream"}


ACCEPTED = [
    "name = ')'",
    "\"name\" = 'it''s'",
    "name IN ('cpu', 'disk') OR hash_id > 0",
    "lower(name) LIKE 'cpu%' OR name = '('",
    "(name = 'cpu') OR (1 = 1)",
    "NOT (name = 'x') OR true",
    "name = '--not a comment' OR name = '/* nor this */' OR name = 'cpu'",
    "\"timestamp\" > '2000-01-01T00:00:00+00:00' AND name <> ';'",
    "coalesce(name, '') <> '' AND length(name) < 100",
    "name = ')' OR (name = 'memory') OR (name = '''')",
]


def shape_changing(bucket: str, table: str) -> TableExport:
    """A filter validation would refuse, as if it had slipped through."""
    (cfg,) = parse_tables([{**ENTRY, "table": table, "target": f"s3://{bucket}/s"}])
    return cfg.model_copy(update={"filter": "1=1) OR (1=1"})


OIDS = {
    "id": 20,
    "ts": 1184,
    "obj": 114,
    "arr": 1022,
    "nothing": 25,
    "text": 25,
    "dec": 1700,
    "uuid": 2950,
    "raw": 17,
    "naive": 1114,
    "flag": 16,
    "nan": 701,
    "point": 600,
    "objs": 199,
}


ROW = (
    1,
    datetime(2024, 1, 4, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=1))),
    '{"a": {"b": [1, 2]}}',
    [1.5, None],
    None,
    'ünï "q" \\ 🚀\n\x01',
    Decimal("12.50"),
    UUID(int=1),
    b"\x00\xff",
    datetime(2024, 1, 4, 5),
    True,
    float("nan"),
    [9.5, 47.25],
    ['{"k": 1}', None],
)


def encode(fmt: str, compression: str, rows) -> bytes:
    schema = pa.schema([field_for(name, oid) for name, oid in OIDS.items()])
    sink = io.BytesIO()
    encoder = make_encoder(FORMATS[fmt], schema, sink, compression, row_group_size=1000)
    encoder.write(to_batch(rows, schema))
    encoder.close()
    return sink.getvalue()


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


JSON_STYLE_ROWS: list[tuple[Any, ...]] = [
    (
        1,
        datetime(2024, 1, 4, 10, 0, 0, 123456, tzinfo=UTC),  # microseconds: CrateDB keeps milliseconds
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
    (2, datetime(2024, 1, 4, 23, 59, 59, 999999, tzinfo=UTC), *[None] * 9),  # only id and ts
    (
        3,
        datetime(2024, 1, 4, tzinfo=UTC),
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
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)) - EPOCH
            value = value // timedelta(milliseconds=1)
        elif isinstance(value, date):
            value = (value - EPOCH.date()) // timedelta(milliseconds=1)
        members.append(f"{json.dumps(name)}:{json.dumps(value, ensure_ascii=False, separators=(',', ':'))}")
    return "{" + ",".join(members) + "}"


def one_member(data: bytes) -> bytes:
    """Decompress exactly one gzip member and check nothing follows it."""
    member = zlib.decompressobj(31)
    text = member.decompress(data)
    assert member.eof and member.unused_data == b""
    return text


# The typed table of the format tests: every type the formats carry, with NULLs, unicode, nested
# objects and microsecond timestamps (row 4 lies at D+1 00:00).

TYPED_ROWS = [
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
    (
        4,
        0,
        0,
        0.0,
        0.0,
        True,
        "",
        datetime(2024, 1, 5, 0, 0, tzinfo=UTC),
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ),
]

TYPED_DDL = """CREATE TABLE {t} (
    id BIGINT, small SMALLINT, num INTEGER, ratio DOUBLE PRECISION, single REAL, ok BOOLEAN, label TEXT,
    ts TIMESTAMP WITH TIME ZONE, local_ts TIMESTAMP WITHOUT TIME ZONE, day DATE, obj JSON, objb JSONB,
    ints BIGINT[], words TEXT[], amount NUMERIC
)"""

TYPED_IN_DAY = TYPED_ROWS[:3]  # row 4 lies at D+1 00:00

TYPED_NAMES = [
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
