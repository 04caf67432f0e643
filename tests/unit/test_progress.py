"""Progress lines (src/cratedb_airflow_export/progress.py)."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.progress import duration, position_note, progress_line


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.4, "0 s"), (45, "45 s"), (200, "3 min 20 s"), (3599.6, "1 h 00 min"), (7500, "2 h 05 min")],
)
def test_durations(seconds, shown):
    assert duration(seconds) == shown


def test_a_progress_line_has_the_percent_and_the_time_left_once_the_count_is_in():
    assert progress_line("doc.metrics 2024-01-04", 1_200_000, None, 120_500_000, 10.0) == (
        "doc.metrics 2024-01-04: 1,200,000 rows, 120.5 MB written, 120,000 rows/s"
    )
    assert progress_line("doc.metrics 2024-01-04", 1_200_000, 2_000_000, 120_500_000, 10.0) == (
        "doc.metrics 2024-01-04: 1,200,000 of 2,000,000 rows (60%), 120.5 MB written, 120,000 rows/s, about 7 s left"
    )
    # rows written since the count: never "100%" before the end, nor a negative time left
    assert progress_line("t", 1_999_999, 2_000_000, 0, 1.0).startswith("t: 1,999,999 of 2,000,000 rows (99%)")
    assert progress_line("t", 2_000_100, 2_000_000, 0, 1.0) == (
        "t: 2,000,100 of 2,000,000 rows (100%), 0.0 MB written, 2,000,100 rows/s"
    )


def test_the_position_of_a_day_is_named_only_among_several():
    assert position_note(None) == ""
    assert position_note((1, 1)) == ""
    assert position_note((2, 5)) == " (day 2 of 5)"
