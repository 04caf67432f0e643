"""Time windows: the half-open UTC interval [start, end) a run exports.

Windows come from the run's data interval (``data_interval_start`` / ``data_interval_end``), never
from ``ds``: under Airflow 3 ``ds`` differs between scheduled and manual runs, the data interval
does not. The DAG exports whole UTC days, so a window must be exactly one day aligned on midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from itertools import pairwise
from typing import Any

from cratedb_airflow_export.errors import WindowError

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class TimeRange:
    """Half-open interval ``start <= t < end``, both timezone-aware, normalised to UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for name, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is None or value.utcoffset() is None:
                raise WindowError(f"window {name} {value!r} has no time zone; windows are UTC")
        object.__setattr__(self, "start", self.start.astimezone(timezone.utc))
        object.__setattr__(self, "end", self.end.astimezone(timezone.utc))
        if self.end <= self.start:
            raise WindowError(
                f"empty data interval [{self.start.isoformat()}, {self.end.isoformat()}): the DAG needs a "
                "data-interval timetable (CronDataIntervalTimetable), not a trigger timetable"
            )

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    def slices(self, count: int) -> list[TimeRange]:
        """``count`` adjacent half-open sub-ranges covering the range exactly (microsecond cuts)."""
        total = (self.end - self.start) // timedelta(microseconds=1)
        cuts = [self.start + timedelta(microseconds=total * i // count) for i in range(count)] + [self.end]
        return [TimeRange(a, b) for a, b in pairwise(cuts)]

    def bounds(self, *, naive: bool = False) -> tuple[datetime, datetime]:
        """Bounds as bind parameters; naive UTC for TIMESTAMP WITHOUT TIME ZONE columns."""
        if naive:
            return self.start.replace(tzinfo=None), self.end.replace(tzinfo=None)
        return self.start, self.end


@dataclass(frozen=True)
class Window(TimeRange):
    """The run's window: one whole UTC day, ``start <= t < end``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.end - self.start != ONE_DAY or self.start.timetz() != time(0, tzinfo=timezone.utc):
            raise WindowError(
                f"data interval [{self.start.isoformat()}, {self.end.isoformat()}) is not one whole UTC day"
            )

    @classmethod
    def for_day(cls, day: date) -> Window:
        start = datetime.combine(day, time(0), tzinfo=timezone.utc)
        return cls(start, start + ONE_DAY)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Window:
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None:
            raise WindowError("the run has no data interval (data_interval_start/_end are unset)")
        return cls(to_utc_datetime(start), to_utc_datetime(end))

    @property
    def day(self) -> date:
        """The UTC day this window covers; it names the partition."""
        return self.start.date()


def to_utc_datetime(value: datetime) -> datetime:
    """A moment as a plain aware ``datetime.datetime`` in UTC, so psycopg binds a standard type: an
    aware value (pendulum's too) is the same instant; a naive one (a ``TIMESTAMP WITHOUT TIME ZONE``
    from the database) **is UTC by definition here**. The process's time zone never enters: a naive
    ``astimezone`` would read the value as local time and move days on a worker outside UTC."""
    v = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=timezone.utc)


MAX_DAYS = 366  # days one request may export: a typo in a year should not start thousands of exports


def days_between(first: date, last: date | None = None) -> list[date]:
    """The days from ``first`` to ``last`` (inclusive; default: ``first`` alone), at most MAX_DAYS."""
    last = first if last is None else last
    if last < first:
        raise WindowError(f"the last day {last.isoformat()} is before the first day {first.isoformat()}")
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise WindowError(f"{count} days from {first} to {last}: at most {MAX_DAYS} days per request")
    return [first + timedelta(days=offset) for offset in range(count)]


def parse_day(text: object, what: str = "day") -> date:
    """A day given as ``YYYY-MM-DD`` (a person's input: the Trigger form, the command line)."""
    if isinstance(text, date) and not isinstance(text, datetime):
        return text
    try:
        return date.fromisoformat(str(text).strip())
    except ValueError:
        raise WindowError(f"{what} {text!r} is not a date in the form YYYY-MM-DD") from None
