"""The source database: what it is and what it supports, connecting to it, the checks before an
export (table, columns, timestamp type) and counting a window.

The source speaks the PostgreSQL wire protocol: CrateDB, or PostgreSQL (the local test stack, and
anyone exporting from PostgreSQL). Their differences live in :class:`Dialect`, so engines ask what
the source supports instead of which database it is (docs/cratedb.md has the CrateDB facts):

- CrateDB exports only refreshed rows (``REFRESH TABLE`` first), has no ``COPY ... TO STDOUT``
  and no ROLLBACK, and writes files itself with ``COPY ... TO DIRECTORY``;
- PostgreSQL streams ``COPY ... TO STDOUT (FORMAT binary)`` (the ADBC fast path) and has no
  ``COPY ... TO DIRECTORY``.

Connections are always in autocommit mode (CrateDB has no transactions). OBJECT arrives as JSON
(OID 114); geo_point arrives as ``point`` (OID 600) and is read as ``[lon, lat]``, the form COPY TO
writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.adapt import Loader

from cratedb_airflow_export import sql
from cratedb_airflow_export.errors import PermanentError

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import SourceParams
    from cratedb_airflow_export.windows import TimeRange

log = logging.getLogger(__name__)

POINT_OID = 600


class SourceError(PermanentError):
    """The source table or a column is missing, of the wrong type, or the source cannot do what
    the configuration asks."""


@dataclass(frozen=True)
class Dialect:
    name: str
    needs_refresh: bool  # only refreshed rows are visible: REFRESH TABLE before reading a window
    copy_binary: bool  # COPY ... TO STDOUT (FORMAT binary): the ADBC fast path
    copy_to_directory: bool  # COPY ... TO DIRECTORY 's3://...': the copy engine

    def __str__(self) -> str:
        return self.name


CRATEDB = Dialect("CrateDB", needs_refresh=True, copy_binary=False, copy_to_directory=True)
POSTGRESQL = Dialect("PostgreSQL", needs_refresh=False, copy_binary=True, copy_to_directory=False)


@dataclass(frozen=True)
class SourceInfo:
    dialect: Dialect
    columns: dict[str, str]  # name -> data_type, in table order
    timestamp_type: str

    @property
    def naive_timestamps(self) -> bool:
        """TIMESTAMP WITHOUT TIME ZONE: the window bounds are bound as naive UTC values."""
        return self.timestamp_type in {"timestamp without time zone", "timestamp"}


class PointLoader(Loader):
    """``(x,y)`` -> ``[x, y]``."""

    def load(self, data: Any) -> list[float]:
        x, y = bytes(data).decode().strip("()").split(",")
        return [float(x), float(y)]


def connect(params: SourceParams) -> psycopg.Connection[Any]:
    """An autocommit psycopg connection to the source."""
    conn = psycopg.connect(**params.kwargs(), autocommit=True)
    conn.adapters.register_loader(POINT_OID, PointLoader)
    return conn


def run(cursor: psycopg.Cursor[Any], statement: sql.Statement) -> psycopg.Cursor[Any]:
    """Execute one statement, logging its wire text with secrets redacted."""
    log.info("Running: %s", statement.describe())
    cursor.execute(statement.sql, statement.bind())
    return cursor


def _one(cursor: psycopg.Cursor[Any], statement: sql.Statement) -> Any:
    row = run(cursor, statement).fetchone()
    return None if row is None else row[0]


def inspect(cursor: psycopg.Cursor[Any], cfg: TableExport) -> SourceInfo:
    """Which database this is, and that the table, the timestamp column and the columns exist
    with the right types; raises :class:`SourceError` naming the table and the cause."""
    dialect = CRATEDB if _one(cursor, sql.detect_cratedb()) else POSTGRESQL
    if _one(cursor, sql.describe_table(cfg)) is None:
        raise SourceError(f"table {cfg.qualified_name} does not exist (not in information_schema.tables)")
    columns = {name: dtype for name, dtype in run(cursor, sql.describe_columns(cfg)).fetchall()}
    available = ", ".join(columns)
    ts_type = columns.get(cfg.timestamp_column)
    if ts_type is None:
        raise SourceError(
            f"timestamp_column {cfg.timestamp_column!r} does not exist in {cfg.qualified_name} (columns: {available})"
        )
    if ts_type.lower() not in sql.TIMESTAMP_TYPES:
        raise SourceError(
            f"timestamp_column {cfg.timestamp_column!r} of {cfg.qualified_name} is {ts_type}, not a timestamp"
        )
    missing = [c for c in cfg.columns or () if c not in columns]
    if missing:
        raise SourceError(f"columns {missing} do not exist in {cfg.qualified_name} (columns: {available})")
    return SourceInfo(dialect=dialect, columns=columns, timestamp_type=ts_type.lower())


def count_window(cursor: psycopg.Cursor[Any], cfg: TableExport, window: TimeRange, source: SourceInfo) -> int:
    """``count(*)`` of ``cfg``'s rows in ``window`` (with the table's filter)."""
    return int(_one(cursor, sql.count_window(cfg, window, naive=source.naive_timestamps)))
