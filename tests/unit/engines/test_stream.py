"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cratedb_airflow_export.loading import parse_tables
from cratedb_airflow_export.windows import Window
from tests.samples import ENTRY


def test_fewer_gc_passes_restores_the_collector():
    import gc

    from cratedb_airflow_export.engines.stream import GC_THRESHOLD, fewer_gc_passes

    gc.unfreeze()  # from nothing frozen: Airflow, run in this process by an earlier test, may have frozen
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError), fewer_gc_passes():
        assert gc.get_threshold()[0] == GC_THRESHOLD and gc.get_freeze_count() > frozen
        raise RuntimeError("export failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_fewer_gc_passes_leaves_objects_frozen_by_others_frozen():
    import gc

    from cratedb_airflow_export.engines.stream import fewer_gc_passes

    mine = [object()]  # a container the collector tracks
    gc.freeze()  # as Airflow's LocalExecutor does before forking its workers
    try:
        # frozen objects are in no generation (the count alone moves as frozen objects are freed)
        assert not any(o is mine for o in gc.get_objects())
        with fewer_gc_passes():
            pass
        assert not any(o is mine for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(o is mine for o in gc.get_objects())  # the check can fail: unfrozen, it is seen


DAY = date(2024, 1, 4)


WINDOW = Window.for_day(DAY)


def test_the_guard_reads_the_timestamp_column_when_columns_leave_it_out():
    from cratedb_airflow_export import sql

    (cfg,) = parse_tables([{**ENTRY, "columns": ["hash_id", "name"]}])
    assert sql.read_columns(cfg) == ["hash_id", "name", "timestamp"]
    assert sql.select_window(cfg, WINDOW).wire_sql.startswith('SELECT "hash_id", "name", "timestamp" FROM')


def test_window_bounds_are_checked_to_the_microsecond():

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


# CrateDB's fetch phase: the window cut by a histogram of its rows

DAY = Window.for_day(date(2024, 1, 4))


@given(  # small and large numbers both: runs of empty parts, parts above ``rows``, the cap
    counts=st.lists(st.integers(0, 5) | st.integers(0, 50_000), min_size=1, max_size=300),
    rows=st.integers(1, 10) | st.integers(1, 120_000),
)
def test_the_histogram_cuts_cover_the_window_exactly_and_hold_at_most_the_rows_asked(counts, rows):
    """Invariants of the cut: the sub-windows are adjacent, half-open and cover the window exactly
    (no row in two, none in none: whatever the counts say); each holds at most ``rows`` by the
    counts unless one part alone holds more; two neighbours hold more than ``rows`` (none could
    have been merged); never more than MAX_SUB_WINDOWS."""
    from cratedb_airflow_export.engines.stream import MAX_SUB_WINDOWS, cut_by_counts

    cuts, held, used = cut_by_counts(DAY, counts, rows)
    assert used >= rows and len(cuts) == len(held) <= MAX_SUB_WINDOWS
    assert cuts[0].start == DAY.start and cuts[-1].end == DAY.end
    assert all(a.end == b.start and a.start < a.end for a, b in itertools.pairwise(cuts))
    assert sum(held) == sum(counts)
    parts = DAY.slices(len(counts))
    for cut, holds in zip(cuts, held, strict=True):
        inside = [n for part, n in zip(parts, counts, strict=True) if cut.start <= part.start < cut.end]
        assert sum(inside) == holds
        assert holds <= used or len([n for n in inside if n]) == 1
    assert all(a + b > used for a, b in itertools.pairwise(held))
    assert all(held) or held == [0]  # no cursor over a sub-window the counts say is empty


def test_a_window_of_many_rows_is_cut_into_no_more_than_the_cap():
    from cratedb_airflow_export.engines.stream import MAX_SUB_WINDOWS, cut_by_counts

    counts = [1_000_000] * 4096  # 4,096,000,000 rows in a day
    cuts, _held, used = cut_by_counts(DAY, counts, 20_000)
    assert len(cuts) <= MAX_SUB_WINDOWS and used == 2 * sum(counts) // MAX_SUB_WINDOWS
    empty = cut_by_counts(DAY, [0] * 4096, 20_000)[0]
    assert [(c.start, c.end) for c in empty] == [(DAY.start, DAY.end)]  # an empty window: one cursor over it


@pytest.mark.parametrize(
    ("heap", "per_row", "readers", "rows"),
    [
        (2**31, 127.6, 2, 21_037),  # the benchmark's table on this machine's CrateDB (2 GB heap)
        (2**31, 127.6, 16, 2_629),
        (2**28, 5_000, 8, 1_000),  # wide rows on a small heap: the floor
        (30 * 2**30, 50, 2, 100_000),  # the ceiling
        (2**31, 0, 2, 100_000),  # an empty table: no size to go by
    ],
)
def test_a_sub_window_holds_what_the_heap_allows_per_connection(heap, per_row, readers, rows):
    from cratedb_airflow_export.engines.stream import window_rows

    assert window_rows(heap, per_row, readers) == rows


def test_the_fetch_phase_needs_cratedb_its_heap_and_the_setting():
    import dataclasses

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.engines.base import ExportJob
    from cratedb_airflow_export.engines.stream import fetch_phase, histogram_buckets
    from cratedb_airflow_export.source import CRATEDB, POSTGRESQL, SourceInfo

    cfg = TableExport.model_validate(
        {"table": "t", "timestamp_column": "ts", "target": "s3://lake/x", "engine": "stream"}
    )
    crate = SourceInfo(CRATEDB, {}, "timestamp with time zone", heap_bytes=2**31)
    assert fetch_phase(ExportJob(cfg, DAY), crate)
    assert not fetch_phase(ExportJob(cfg, DAY), dataclasses.replace(crate, heap_bytes=None))  # may not read sys.nodes
    assert fetch_phase(ExportJob(cfg.model_copy(update={"fetch_phase": "always"}), DAY), crate)
    assert not fetch_phase(ExportJob(cfg.model_copy(update={"fetch_phase": "never"}), DAY), crate)
    assert not fetch_phase(ExportJob(cfg, DAY), dataclasses.replace(crate, dialect=POSTGRESQL))
    assert histogram_buckets(DAY) == 4096
    assert histogram_buckets(DAY.slices(86_400 // 10)[0]) == 10  # at least a second per part
