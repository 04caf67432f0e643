"""Restore: export -> restore into an empty table -> the rows equal the source rows, in values and
types, for every format and both engines' output shapes; refusals; the COPY FROM statement."""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from cratedb_sqlparse import sqlparse

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.errors import RestoreRefused, RestoreUnreadable
from cratedb_airflow_export.restore import Column, Converter, check_summary
from cratedb_airflow_export.windows import Window

DAY = date(2024, 1, 4)


WINDOW = Window.for_day(DAY)


SECRET = "wJalr/K7MDENG+bPxRfiCY=EXAMPLEKEY"


def test_the_copy_from_statement_parses_holds_no_credential_and_asks_for_a_summary():
    from cratedb_airflow_export import sql
    from cratedb_airflow_export.engines.copy import cratedb_s3_uri
    from cratedb_airflow_export.storage import Location

    creds = S3Credentials("AKIAEXAMPLE", SECRET, endpoint_url="http://minio:9000")
    keys = ["lake/doc.metrics/dt=2024-01-04/metrics_0_.json.gz", "lake/doc.metrics/dt=2024-01-04/metrics_1_.json.gz"]
    uris = [cratedb_s3_uri(creds, Location("lake", key)) for key in keys]
    cfg = TableExport.model_validate({"table": "doc.metrics", "timestamp_column": "ts", "target": "s3://lake/x"})
    statement = sql.copy_from(cfg, [u for u, _ in uris], gzip=True, protocol=uris[0][1])
    assert statement.wire_sql == (
        "COPY \"doc\".\"metrics\" FROM $1 WITH (compression = 'gzip', shared = true, protocol = 'http') RETURN SUMMARY"
    )
    assert sqlparse(statement.wire_sql, raise_exception=False)[0].exception is None
    assert SECRET not in statement.describe() and "%2F" not in statement.describe()
    (bound,) = statement.bind()
    assert isinstance(bound, sql.TextArray)  # bound as text[]: CrateDB takes an untyped list as one string
    assert bound == [f"s3://AKIAEXAMPLE:wJalr%2FK7MDENG%2BbPxRfiCY%3DEXAMPLEKEY@minio:9000/lake/{k}" for k in keys]
    for text in (sql.describe_target(cfg).wire_sql, sql.delete_window(cfg, WINDOW).wire_sql):
        assert sqlparse(text, raise_exception=False)[0].exception is None
    assert sqlparse(sql.insert_rows(cfg, ["a", "b"]).wire_sql, raise_exception=False)[0].exception is None


def test_every_failed_file_of_the_summary_fails_the_restore():
    assert check_summary([{"uri": "s3://k:***@h/b/a.json", "success_count": 5, "error_count": 0, "errors": {}}]) == 5
    summary = [
        {"uri": "s3://AK:S3CR3T@h/b/a.json.gz", "success_count": 3, "error_count": 2, "errors": {"bad": {"count": 2}}},
        {"uri": "s3://AK:S3CR3T@h/b/b.json.gz", "success_count": None, "error_count": None, "errors": {"404": {}}},
        {"uri": "s3://AK:S3CR3T@h/b/c.json.gz", "success_count": 4, "error_count": 0, "errors": {}},
    ]
    with pytest.raises(RestoreUnreadable) as failure:  # b.json.gz was not read: a retry may read it
        check_summary(summary, lambda text: text.replace("S3CR3T", "***"))
    message = str(failure.value)
    assert "a.json.gz: 2 row(s) failed" in message and "b.json.gz: not read" in message
    assert "c.json.gz" not in message and "S3CR3T" not in message
    assert failure.value.retryable is True  # a file that could not be read may be readable later


UTC = timezone.utc

# --- the converter: values as read from a file -> what the target column takes -----------------------

COLUMNS = {
    "id": Column("id", "bigint", False),
    "ratio": Column("ratio", "double precision", False),
    "ok": Column("ok", "boolean", False),
    "amount": Column("amount", "numeric", False),
    "ts": Column("ts", "timestamp with time zone", False),
    "local_ts": Column("local_ts", "timestamp without time zone", False),
    "day": Column("day", "date", False),
    "obj": Column("obj", "object", False),
    "tags": Column("tags", "text_array", False),
    "raw": Column("raw", "bytea", False),
    "month": Column("month", "timestamp with time zone", True),
}


def test_json_lines_and_parquet_values_are_converted_by_the_target_type():
    convert = Converter(COLUMNS, text=False)
    assert convert("id", 7) == 7 and convert("ratio", 1) == 1.0 and convert("ok", True) is True
    assert convert("amount", "12345678901234567890.000000001") == Decimal("12345678901234567890.000000001")
    assert convert("ts", "2024-01-04T10:00:00.123456+00:00") == datetime(2024, 1, 4, 10, 0, 0, 123456, tzinfo=UTC)
    assert convert("ts", 1704362400123) == datetime(2024, 1, 4, 10, 0, 0, 123000, tzinfo=UTC)  # COPY TO: epoch ms
    assert convert("local_ts", "2024-01-04T10:00:00") == datetime(2024, 1, 4, 10, 0)
    assert convert("local_ts", "2024-01-04T10:00:00+01:00") == datetime(2024, 1, 4, 9, 0)  # as UTC, naive
    assert convert("day", "2024-01-04") == date(2024, 1, 4) and convert("day", 1704326400000) == date(2024, 1, 4)
    assert convert("obj", {"a": [1, 2]}).obj == {"a": [1, 2]}  # psycopg's Json wrapper
    assert convert("tags", ["a", "b"]) == ["a", "b"]
    assert convert("raw", "AAEC") == b"\x00\x01\x02"  # base64, as the encoders write bytea
    assert [convert(name, None) for name in COLUMNS] == [None] * len(COLUMNS)


def test_csv_values_arrive_as_text():
    convert = Converter(COLUMNS, text=True)
    assert convert("id", "7") == 7 and convert("ok", "false") is False and convert("ratio", "0.5") == 0.5
    assert convert("obj", '{"a": 1}').obj == {"a": 1}
    assert convert("tags", '["a","b"]') == ["a", "b"]


def test_generated_columns_are_left_to_the_database_and_unknown_keys_are_refused():
    convert = Converter(COLUMNS, text=False)
    assert convert.columns_of([{"id": 1, "month": "2024-01-01T00:00:00+00:00"}, {"ts": None}]) == ["id", "ts"]
    with pytest.raises(RestoreRefused, match=r"column\(s\) \['lost'\] that the target table does not have"):
        convert.columns_of([{"id": 1, "lost": 2}])


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("2024-01-04T23:30:00", "timestamp without time zone", datetime(2024, 1, 4, 23, 30)),
        ("2024-01-04T23:30:00+00:00", "timestamp without time zone", datetime(2024, 1, 4, 23, 30)),
        ("2024-01-05T05:15:00+05:45", "timestamp without time zone", datetime(2024, 1, 4, 23, 30)),
        ("2024-01-04T23:30:00", "timestamp with time zone", datetime(2024, 1, 4, 23, 30, tzinfo=timezone.utc)),
        (1704411000000, "timestamp without time zone", datetime(2024, 1, 4, 23, 30)),
        # CrateDB's COPY TO writes a partition column's value as a JSON string of epoch milliseconds
        ("1704411000000", "timestamp without time zone", datetime(2024, 1, 4, 23, 30)),
        ("1704411000000", "timestamp with time zone", datetime(2024, 1, 4, 23, 30, tzinfo=timezone.utc)),
        ("-86400000", "timestamp with time zone", datetime(1969, 12, 31, tzinfo=timezone.utc)),
        ("1704411000000", "date", date(2024, 1, 4)),
    ],
)
def test_timestamps_come_back_as_the_same_utc_moment_in_every_process_zone(process_zone, value, kind, expected):
    convert = Converter({"t": Column("t", kind, False)}, text=False)
    assert convert("t", value) == expected
