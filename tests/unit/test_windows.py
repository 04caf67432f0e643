"""Time windows come from the data interval: half-open, UTC, one whole day."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from itertools import pairwise

import pendulum
import pytest

from cratedb_airflow_export.errors import WindowError
from cratedb_airflow_export.windows import Window

UTC = timezone.utc


def test_for_day_is_half_open_utc_day():
    window = Window.for_day(date(2024, 1, 4))
    assert window.start == datetime(2024, 1, 4, tzinfo=UTC)
    assert window.end == datetime(2024, 1, 5, tzinfo=UTC)
    assert window.day == date(2024, 1, 4)
    assert window.as_dict() == {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"}


def test_from_context_uses_data_interval_not_ds():
    context = {
        "ds": "2024-01-05",  # what a manual run's ds would say; must be ignored
        "data_interval_start": pendulum.datetime(2024, 1, 4, tz="UTC"),
        "data_interval_end": pendulum.datetime(2024, 1, 5, tz="UTC"),
    }
    window = Window.from_context(context)
    assert window == Window.for_day(date(2024, 1, 4))
    assert type(window.start) is datetime  # plain datetime for psycopg, not pendulum


def test_interval_given_in_another_zone_is_normalised_to_utc():
    berlin = pendulum.timezone("Europe/Berlin")
    window = Window(datetime(2024, 1, 4, 1, tzinfo=berlin), datetime(2024, 1, 5, 1, tzinfo=berlin))
    assert window.start.utcoffset() == timedelta(0)
    assert window == Window.for_day(date(2024, 1, 4))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (datetime(2024, 1, 4), datetime(2024, 1, 5), "has no time zone"),
        (datetime(2024, 1, 5, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC), "empty data interval"),
        (datetime(2024, 1, 4, tzinfo=UTC), datetime(2024, 1, 6, tzinfo=UTC), "is not one whole UTC day"),
        (datetime(2024, 1, 4, 6, tzinfo=UTC), datetime(2024, 1, 5, 6, tzinfo=UTC), "is not one whole UTC day"),
    ],
)
def test_invalid_windows(start, end, message):
    with pytest.raises(WindowError, match=message):
        Window(start, end)


def test_missing_interval():
    with pytest.raises(WindowError, match="no data interval"):
        Window.from_context({"data_interval_start": None, "data_interval_end": None})


def test_naive_bounds_for_timestamp_without_time_zone():
    start, end = Window.for_day(date(2024, 1, 4)).bounds(naive=True)
    assert (start, end) == (datetime(2024, 1, 4), datetime(2024, 1, 5))


@pytest.mark.parametrize("count", [1, 2, 3, 7, 24])
def test_slices_cover_the_day_exactly(count):
    window = Window.for_day(date(2024, 1, 4))
    parts = window.slices(count)
    assert len(parts) == count
    assert parts[0].start == window.start and parts[-1].end == window.end
    assert all(a.end == b.start for a, b in pairwise(parts))  # adjacent, half-open: no gap, no overlap
    lengths = {p.end - p.start for p in parts}
    assert max(lengths) - min(lengths) <= timedelta(microseconds=1)


def test_a_naive_moment_is_utc_in_every_process_zone(process_zone):
    """A TIMESTAMP WITHOUT TIME ZONE from the database is UTC by definition, whatever the process's
    zone (``astimezone`` on a naive value would read it as local time)."""
    from cratedb_airflow_export.windows import to_utc_datetime

    late = datetime(2024, 1, 4, 23, 30)
    early = datetime(2024, 1, 4, 0, 15)
    assert to_utc_datetime(late) == datetime(2024, 1, 4, 23, 30, tzinfo=timezone.utc)
    assert to_utc_datetime(early).date() == date(2024, 1, 4)
    assert to_utc_datetime(datetime(2024, 1, 4, 5, 45, tzinfo=timezone(timedelta(hours=5, minutes=45)))) == datetime(
        2024, 1, 4, tzinfo=timezone.utc
    )
    assert type(to_utc_datetime(pendulum.datetime(2024, 1, 4, tz="Asia/Tokyo"))) is datetime
    assert Window.for_day(date(2024, 1, 4)).bounds(naive=True) == (datetime(2024, 1, 4), datetime(2024, 1, 5))


def test_the_suite_runs_in_the_zone_it_was_given():
    """make test sets TZ (Asia/Kathmandu): a zone name glibc does not know would leave the process in UTC
    without a word, and the suite would prove nothing about other zones."""
    import os
    import time

    zone = os.environ.get("TZ")
    if not zone or zone.upper() in ("UTC", "UTC0", "GMT"):
        pytest.skip("the process runs in UTC (make test sets TZ=Asia/Kathmandu)")
    assert time.localtime().tm_gmtoff != 0 or zone in ("Europe/London", "Africa/Abidjan"), zone
