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

ONE_DAY = timedelta(days=1)


class WindowError(ValueError):
    """The run's data interval is not a whole UTC day."""


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

    def slices(self, count: int) -> list[TimeRange]:
        """``count`` adjacent half-open sub-ranges covering the window exactly (microsecond cuts)."""
        total = (self.end - self.start) // timedelta(microseconds=1)
        cuts = [self.start + timedelta(microseconds=total * i // count) for i in range(count)] + [self.end]
        return [TimeRange(a, b) for a, b in pairwise(cuts)]


def to_utc_datetime(value: datetime) -> datetime:
    """Any aware datetime (pendulum's too) as a plain ``datetime.datetime`` in UTC, the same instant,
    so psycopg binds a standard type."""
    v = value.astimezone(timezone.utc)
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=timezone.utc)
