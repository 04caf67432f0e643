"""What one attempt at a table's export has open: its connections, the checked bucket, a cursor
on the source and what the source turned out to be.

:func:`open_attempt` resolves nothing itself when given :class:`~.connections.Connections` (the
Airflow edge resolves them once per task); without, it reads them from the environment (the
command line). Any failure inside, including the engine's, becomes one :class:`~.errors.ExportError`
naming the table, the interval and the cause, with every secret scrubbed.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export import sql
from cratedb_airflow_export.connections import Connections, from_environment
from cratedb_airflow_export.credentials import Redactor
from cratedb_airflow_export.errors import failures_named
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.source import (
    SourceCounts,
    SourceInfo,
    WindowState,
    check_table,
    connect,
    execute,
    window_state,
)

if TYPE_CHECKING:
    import psycopg

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import StoreCredentials
    from cratedb_airflow_export.storage import Store
    from cratedb_airflow_export.windows import TimeRange, Window


@dataclass
class Attempt:
    cfg: TableExport
    connections: Connections
    cursor: psycopg.Cursor[Any]
    database: SourceInfo  # what the database turned out to be (the target's, when restoring)
    _count: Future[WindowState] | None = field(default=None, repr=False)

    @property
    def store(self) -> Store:
        return self.connections.store

    @property
    def creds(self) -> StoreCredentials:
        """What the target's store was reached with (CrateDB's COPY needs it too)."""
        connections = self.connections
        return connections.azure or connections.gcs or connections.s3

    def count_in_background(self, window: TimeRange) -> None:
        """Start ``count(*)`` over ``window`` on a connection of its own, to run while the engine
        reads and writes. Engines call it once the rows to export are settled (after REFRESH): it
        sees what the export starts to read; :meth:`counts` takes the decisive one after."""

        def count() -> WindowState:
            with closing(connect(self.connections.database, self.cfg.attempt_seconds)) as conn, conn.cursor() as cursor:
                return window_state(cursor, self.cfg, window, self.database)

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="count")
        self._count = pool.submit(count)
        pool.shutdown(wait=False)  # not a with block: leaving one waits for the count

    def expected_rows(self) -> int | None:
        """The window's count taken while the engine reads (:meth:`count_in_background`), once it
        is in; None before, or when it failed (:meth:`counts` raises that)."""
        running = self._count
        if running is None or not running.done() or running.exception() is not None:
            return None
        return running.result().count

    def counts(self, window: TimeRange) -> SourceCounts:
        """``count(*)`` over ``window`` once the engine has read its last row (REFRESH first where
        the source needs it, so that rows written while the export ran are counted), and the count
        that ran while it read (None when none did), with the change marker of the earlier one."""
        while_reading = self._count.result() if self._count is not None else None
        if self.database.dialect.needs_refresh:
            execute(self.cursor, sql.refresh(self.cfg), self.cfg.attempt_seconds)
        after = window_state(self.cursor, self.cfg, window, self.database, identify=True)
        first = while_reading or after
        return SourceCounts(after.count, while_reading.count if while_reading else None, first.marker, after.table_id)


def describe(what: str, cfg: TableExport, window: TimeRange) -> str:
    """``export of doc.metrics for [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00)``."""
    return f"{what} of {cfg.qualified_name} for [{window.start.isoformat()}, {window.end.isoformat()})"


@contextmanager
def open_attempt(
    cfg: TableExport, window: Window, what: str, connections: Connections | None = None
) -> Iterator[Attempt]:
    """Check the bucket, connect to the source and check the table; yield the attempt."""
    redact = Redactor()
    with failures_named(describe(what, cfg, window), redact):
        resolved = connections if connections is not None else from_environment(cfg)
        redact.add(resolved.secrets)
        resolved.store.check(partition(cfg, window.day))
        with closing(connect(resolved.database, cfg.attempt_seconds)) as conn, conn.cursor() as cursor:
            yield Attempt(cfg, resolved, cursor, check_table(cursor, cfg))
