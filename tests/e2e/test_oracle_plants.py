"""The oracle must be able to fail: each test plants a bug the product had (the code as it was before
its fix, or the class of it) and runs the oracle (tests/oracle.py) until it fails. ``make test-deep``
runs them (ORACLE_PLANTS=1); ``make test`` skips them, saying so (they take minutes).

A plant that the oracle does not find within its examples fails its test: the oracle would let such
a bug through. (Not here: the manifest without the timestamp column. The oracle did not find that
one in 100 sequences: the rows another column chooses must have the same count and change marker,
and one of them must be in no archive at all. tests/e2e/test_retention.py builds that case.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

import tests.oracle as oracle
from tests.e2e.test_oracle import oracle_settings
from tests.oracle import ArchiveOracle, IcebergOracle, run

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not os.environ.get("ORACLE_PLANTS"), reason="make test-deep runs the planted bugs (ORACLE_PLANTS=1)"
    ),
]

EXAMPLES = int(os.environ.get("ORACLE_PLANT_EXAMPLES", "150"))


def hunt(setting: oracle.Setting, machine: type[ArchiveOracle], plant: Any, steps: int = 30) -> str:
    """Run the oracle with ``plant`` in place until it fails; what it said."""
    started = time.monotonic()
    with pytest.raises(Exception) as found:
        run(setting, machine, oracle_settings(EXAMPLES, steps, shrink=False), plant=plant)
    said = str(found.value).strip().splitlines()
    print(f"found in {time.monotonic() - started:.0f} s: {type(found.value).__name__}: {said[0] if said else ''}")
    return str(found.value)


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(target, name, value)
        yield


def test_naive_timestamps_read_in_the_process_zone_are_found(oracle_setting, monkeypatch):
    """Before: ``to_utc_datetime`` called ``astimezone`` on a naive value, reading it as the process's
    local time: purges deleted days after ``--before``, or looped for ever."""
    import cratedb_airflow_export.retention as retention

    def old(value: datetime) -> datetime:
        v = value.astimezone(timezone.utc)
        return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=timezone.utc)

    monkeypatch.setattr(oracle, "STEP_SECONDS", 20)
    naive = dataclasses.replace(oracle_setting, timestamp_types=(True,))
    said = hunt(naive, ArchiveOracle, lambda: patched(retention, "to_utc_datetime", old))
    assert "purge" in said or "StepTimeout" in said or "took more than" in said


def test_the_change_marker_ignored_after_a_restore_is_found(oracle_setting):
    """Before: the marker was compared only while no ``_PURGED.json`` existed: after a purge and a
    restore, an updated row was deleted by the next purge without ever being archived."""
    import cratedb_airflow_export.retention as retention

    real = retention.differences

    def ignoring(baseline: Any, now: Any, numbers: Any, columns: Any) -> Any:
        if baseline.since.startswith("the restore"):
            now = dataclasses.replace(now, marker=baseline.marker)
        return real(baseline, now, numbers, columns)

    said = hunt(oracle_setting, ArchiveOracle, lambda: patched(retention, "differences", ignoring), steps=40)
    assert "neither in the source nor in a complete archive" in said


def test_verify_comparing_arrows_list_item_names_is_found(oracle_setting):
    """Before: verify compared ``list<element: string>`` (the file) with ``list<item: string>`` (the
    manifest) and failed every correct Parquet partition with an array."""
    import cratedb_airflow_export.verify as verify

    parquet = dataclasses.replace(oracle_setting, formats=("parquet",))
    said = hunt(parquet, ArchiveOracle, lambda: patched(verify, "as_read", lambda text: text))
    assert "verify said FAILED" in said


def test_a_json_null_restored_as_sql_null_is_found(oracle_setting):
    """Before: the text ``null`` of a JSON column was parsed into None, and restored as SQL NULL."""
    import cratedb_airflow_export.formats.parquet as parquet_format

    parquet = dataclasses.replace(oracle_setting, formats=("parquet",))
    said = hunt(parquet, ArchiveOracle, lambda: patched(parquet_format, "json_value", json.loads))
    assert "after the restore the source holds" in said


def test_an_iceberg_rerun_as_two_snapshots_is_found(oracle_iceberg_setting):
    """Before: a day's commit deleted the day in one snapshot and added its files in a second: time
    travel (or a reader in between) saw the day empty."""
    import cratedb_airflow_export.iceberg as iceberg

    real = iceberg._commit

    def two_snapshots(catalog: Any, cfg: Any, window: Any, schema: Any, paths: Any, summary: Any, **kw: Any) -> Any:
        if not paths:  # the bug is the split of a day's replacement, not the empty day's
            return real(catalog, cfg, window, schema, paths, summary, **kw)
        properties = {iceberg.SUMMARY_PREFIX + k: v for k, v in summary.items()}
        table = catalog.load_table(cfg.iceberg_identifier)
        with table.transaction() as tx:
            if kw["evolve"]:
                with tx.update_schema() as update:
                    update.union_by_name(iceberg.plain_schema(schema))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                tx.delete(iceberg.day_filter(cfg, window, kw["naive"]), snapshot_properties=properties)
            if paths:
                tx.add_files(paths, snapshot_properties=properties)
        current = table.current_snapshot()
        return current.snapshot_id, table.metadata_location

    said = hunt(oracle_iceberg_setting, IcebergOracle, lambda: patched(iceberg, "_commit", two_snapshots))
    assert "shows" in said or "current snapshot" in said


def test_an_iceberg_read_one_byte_off_is_found(oracle_other_iceberg_setting):
    """A ranged read of the store's file IO one byte past where the reader stands (the class of an
    inclusive / exclusive end mixed up between stores: GCS takes an inclusive end, Azure a length),
    the byte count right: verify and restore read Parquet chunks through it."""
    import cratedb_airflow_export.iceberg_io as iceberg_io

    real = iceberg_io.RangeReader.read

    def shifted(self: Any, size: int | None = -1) -> bytes:
        if self.position:
            self.position += 1
            self.size += 1  # the same number of bytes, from the wrong place
        return real(self, size)

    said = hunt(oracle_other_iceberg_setting, IcebergOracle, lambda: patched(iceberg_io.RangeReader, "read", shifted))
    assert "restore" in said or "File" in said or "bytes" in said


def test_a_reader_that_leaves_its_last_sub_window_unread_is_found(oracle_cursor_setting):
    """On the cursor path each connection reads its sub-windows one after the other: one left
    unread is rows missing from the partition. The count check refuses such an export; the oracle
    must see it refused."""
    from cratedb_airflow_export.readers import CursorReader

    real_init = CursorReader.__init__

    def leaves_the_last(self: Any, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self.pieces = self.pieces[:-1]

    said = hunt(oracle_cursor_setting, ArchiveOracle, lambda: patched(CursorReader, "__init__", leaves_the_last))
    assert "row count" in said, said


def test_a_histogram_cut_that_leaves_a_sub_window_out_is_found(oracle_fetch_phase_setting):
    """On CrateDB's default path the histogram decides where the window is cut: cuts that do not
    cover it leave rows unread. The count check refuses such an export; the oracle must see it."""
    from cratedb_airflow_export.engines import stream

    real_cut = stream.cut_by_counts

    def leaves_the_last_out(*args: Any, **kwargs: Any) -> Any:
        cuts, held, rows = real_cut(*args, **kwargs)
        return (cuts[:-1], held[:-1], rows) if len(cuts) > 1 else (cuts, held, rows)

    plant = lambda: patched(stream, "cut_by_counts", leaves_the_last_out)  # noqa: E731
    said = hunt(oracle_fetch_phase_setting, ArchiveOracle, plant)
    assert "row count" in said, said
