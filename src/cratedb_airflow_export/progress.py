"""Progress of long work, as logged (by the command line to stderr, in Airflow to the task log):
rows so far, percent of the window's count and time left once that count is in, bytes, rate."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``2 h 05 min``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def progress_line(what: str, rows: int, expected: int | None, written: int, elapsed: float) -> str:
    """One progress line: ``doc.metrics 2024-01-04: 1,200,000 of 2,000,000 rows (60%), 120.5 MB
    written, 110,000 rows/s, about 7 s left``. ``expected``: the window's ``count(*)`` taken while
    the rows are read (None until it is in; rows written since may make the total larger)."""
    rate = rows / elapsed if elapsed > 0 else 0.0
    done = f"{rows:,} rows"
    left = ""
    if expected:
        percent = min(99, int(100 * rows / expected)) if rows < expected else 100
        done = f"{rows:,} of {expected:,} rows ({percent}%)"
        if rows < expected and rate > 0:
            left = f", about {duration((expected - rows) / rate)} left"
    return f"{what}: {done}, {written / 1e6:.1f} MB written, {rate:,.0f} rows/s{left}"


def position_note(position: tuple[int, int] | None) -> str:
    """`` (day 2 of 5)`` for one of several days; nothing for a day alone."""
    if position is None or position[1] <= 1:
        return ""
    return f" (day {position[0]} of {position[1]})"
