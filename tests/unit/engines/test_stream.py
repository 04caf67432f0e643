"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

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
