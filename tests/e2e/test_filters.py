"""Filters cannot leave their parentheses, and a count that a filter could fool does not exist.

A corpus of escape attempts goes through the configuration check; every one that passes is then
exported for real (local PostgreSQL + S3) and must stay inside the day. Shape-changing filters that
got past validation (simulated by skipping it) are caught by the window guard of the ``stream``
engine and, independently, by the structural row count."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.loading import parse_tables
from cratedb_airflow_export.windows import Window
from tests.helpers import SAMPLE_DAYS, data_objects, json_lines, read_objects
from tests.samples import ACCEPTED, ENTRY, shape_changing

DAY = date(2024, 1, 4)


WINDOW = Window.for_day(DAY)


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
