"""Filters cannot leave their parentheses, and a count that a filter could fool does not exist.

A corpus of escape attempts goes through the configuration check; every one that passes is then
exported for real (local PostgreSQL + S3) and must stay inside the day. Shape-changing filters that
got past validation (simulated by skipping it) are caught by the window guard of the ``stream``
engine and, independently, by the structural row count.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from conftest import SAMPLE_DAYS, data_objects, json_lines, read_objects
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ConfigError, ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.loading import parse_tables
from cratedb_airflow_export.windows import Window

DAY = date(2024, 1, 4)
WINDOW = Window.for_day(DAY)
ENTRY = {"table": "doc.metrics", "timestamp_column": "timestamp", "target": "s3://lake/x", "engine": "stream"}

REFUSED = {
    "1=1) OR (1=1": "unbalanced parentheses",
    "name = 'x') OR ('a' = 'a": "an unterminated quote",
    "E'\\'' = name) OR (1=1": "an escape string (E'...')",
    "name = E'x\\' OR 1=1 --'": "an escape string (E'...')",
    "$$x$$ = name) OR (true": "dollar quoting",
    "$tag$)$tag$ = name": "dollar quoting",
    "U&'\\0029' = name": "'&' (it starts Unicode escape strings",
    "name = 'a' -- ) OR (1=1": "must not contain SQL comments",
    "name = 'a' /* ) OR (1=1 */": "must not contain SQL comments",
    "name = 'a'; DELETE FROM doc.metrics": "filter must be one SQL condition; ';' is not allowed",
    "hash_id IN (SELECT hash_id FROM doc.metrics)": "a subquery or statement (SELECT)",
    "EXISTS (SELECT 1)": "a subquery or statement (EXISTS)",
    "name IN ('a') UNION SELECT 1": "a subquery or statement (UNION)",
    "nextval('some_seq') > 0": "the function nextval(...)",
    "pg_sleep(10) IS NOT NULL": "the function pg_sleep(...)",
    "lo_import('/etc/passwd') > 0": "the function lo_import(...)",
    "current_setting('search_path') = 'x'": "the function current_setting(...)",
    "\"lower\"(name) = 'x'": 'the function "lower"(...)',
    "metrics.name = 'cpu'": "a qualified name",
    "name = 'a\\') OR (1=1 --'": "must not contain SQL comments",
    "name = 'a\\' OR '1'='1'": "a backslash in a string",  # one string where backslashes escape
    "name = X'29'": "a prefixed string literal (X'...')",
    "name = B'1'": "a bit string",
    "name = $1": "a bind parameter ($1)",
    "name = ?": "a bind parameter (?)",
    "(name = 'a'))((name = 'b'": "unbalanced parentheses",
    "tags['host']) OR (tags['host'] = 'x'": "unbalanced parentheses",
    "\"na)me\" = 'x') OR (1=1": "unbalanced parentheses",
    "name = 'a' OR 1=1)--": "must not contain SQL comments",
}
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


def test_the_corpus_is_large():
    assert len(REFUSED) + len(ACCEPTED) >= 20 and len(REFUSED) >= 20


@pytest.mark.parametrize(("condition", "reason"), list(REFUSED.items()))
def test_escape_attempts_are_refused_naming_entry_and_field(condition, reason):
    with pytest.raises(ConfigError) as failure:
        parse_tables([{**ENTRY, "filter": condition}])
    text = str(failure.value)
    assert text.startswith("TABLES: entry 0 (table 'doc.metrics'): field 'filter': ")
    assert reason in text


@pytest.fixture
def own_table(postgres):
    name = f"doc.f_{uuid.uuid4().hex[:8]}"
    rows = sample_metrics(SAMPLE_DAYS, 40, seed=13)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, rows, table=name)
    return name


def rows_by_structure(postgres, table: str, condition: str) -> list[int]:
    """The day's rows matching the filter, the filter applied outside a subquery holding the day."""
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        found = conn.execute(
            f'SELECT hash_id FROM (SELECT * FROM {table} WHERE "timestamp" >= %s AND "timestamp" < %s) AS w '
            f"WHERE ({condition.replace('%', '%%')})",
            WINDOW.bounds(),
        ).fetchall()
    return sorted(h for (h,) in found)


@pytest.mark.e2e
@pytest.mark.parametrize("condition", ACCEPTED)
@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_accepted_filters_keep_the_export_inside_the_day(
    connections, postgres, s3_server, bucket, own_table, condition, reader
):
    (cfg,) = parse_tables(
        [{**ENTRY, "table": own_table, "filter": condition, "reader": reader, "target": f"s3://{bucket}/f"}]
    )
    result = run_export(cfg, WINDOW)
    exported = [row for data in data_objects(read_objects(s3_server, bucket)).values() for row in json_lines(data)]
    start, end = WINDOW.start, WINDOW.end
    stamps = [datetime.fromisoformat(r["timestamp"]) for r in exported]
    assert all(start <= s < end for s in stamps)
    assert sorted(r["hash_id"] for r in exported) == rows_by_structure(postgres, own_table, condition)
    assert result.rows == result.source_count == len(exported)


def shape_changing(bucket: str, table: str) -> TableExport:
    """A filter validation would refuse, as if it had slipped through."""
    (cfg,) = parse_tables([{**ENTRY, "table": table, "target": f"s3://{bucket}/s"}])
    return cfg.model_copy(update={"filter": "1=1) OR (1=1"})


@pytest.mark.e2e
@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_a_filter_that_escaped_is_caught_by_the_window_guard(connections, s3_server, bucket, own_table, reader):
    cfg = shape_changing(bucket, own_table).model_copy(update={"reader": reader})
    with pytest.raises(ExportError) as failure:
        run_export(cfg, WINDOW)
    assert "WindowViolation: rows of " in str(failure.value) and "outside the window" in str(failure.value)
    assert failure.value.retryable is False
    assert read_objects(s3_server, bucket) == {}  # nothing published, staging removed


@pytest.mark.e2e
def test_a_filter_that_escaped_is_caught_by_the_count(connections, s3_server, bucket, own_table, monkeypatch):
    """Independently of validation and of the guard (both switched off here), the count holds the
    window in a subquery: the 120 rows of three days against the day's 40 fail the export."""
    from cratedb_airflow_export.engines import stream

    monkeypatch.setattr(stream.WindowGuard, "check", lambda self, batch: batch)
    with pytest.raises(ExportError, match=r"120 rows exported, but count\(\*\) over the same window is 40"):
        run_export(shape_changing(bucket, own_table), WINDOW)
    assert read_objects(s3_server, bucket) == {}


def test_the_count_holds_the_window_in_a_subquery():
    from cratedb_airflow_export import sql

    cfg = shape_changing("lake", "doc.metrics")
    count = sql.count_window(cfg, WINDOW)
    assert count.wire_sql == (
        'SELECT count(*) FROM (SELECT * FROM "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2) '
        'AS "window_rows" WHERE (1=1) OR (1=1)'
    )


def test_the_guard_reads_the_timestamp_column_when_columns_leave_it_out():
    from cratedb_airflow_export import sql

    (cfg,) = parse_tables([{**ENTRY, "columns": ["hash_id", "name"]}])
    assert sql.read_columns(cfg) == ["hash_id", "name", "timestamp"]
    assert sql.select_window(cfg, WINDOW).wire_sql.startswith('SELECT "hash_id", "name", "timestamp" FROM')


def test_window_bounds_are_checked_to_the_microsecond():
    import pyarrow as pa

    from cratedb_airflow_export.engines.base import ExportJob
    from cratedb_airflow_export.engines.stream import WindowGuard
    from cratedb_airflow_export.errors import WindowViolation

    (cfg,) = parse_tables([{**ENTRY, "columns": ["hash_id"]}])
    schema = pa.schema([("hash_id", pa.int64()), ("timestamp", pa.timestamp("us", tz="UTC"))])
    guard = WindowGuard(ExportJob(cfg, WINDOW), schema)
    assert guard.schema.names == ["hash_id"]
    last = WINDOW.end - timedelta(microseconds=1)
    inside = pa.record_batch([pa.array([1, 2]), pa.array([WINDOW.start, last], schema.field(1).type)], schema=schema)
    assert guard.check(inside).schema.names == ["hash_id"]
    for outside in (WINDOW.end, WINDOW.start - timedelta(microseconds=1)):
        batch = pa.record_batch([pa.array([1]), pa.array([outside], schema.field(1).type)], schema=schema)
        with pytest.raises(WindowViolation, match="outside the window"):
            guard.check(batch)
    assert datetime(2024, 1, 5, tzinfo=timezone.utc) == WINDOW.end
