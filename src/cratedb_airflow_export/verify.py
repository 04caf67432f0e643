"""Checks before an export writes anything: the source table and columns, and the S3 target.

A bad table or column fails here with a message naming the table and the cause, before any
object is written, so nothing that looks like an export is left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cratedb_airflow_export import sql
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.hooks import run_statement


class SourceError(RuntimeError):
    """The source table or a column is missing or of the wrong type."""


@dataclass(frozen=True)
class SourceInfo:
    is_cratedb: bool
    columns: dict[str, str]  # name -> data_type, in table order
    timestamp_type: str

    @property
    def naive_timestamps(self) -> bool:
        """TIMESTAMP WITHOUT TIME ZONE: the window bounds are bound as naive UTC values."""
        return self.timestamp_type in {"timestamp without time zone", "timestamp"}


def check_source(cursor: Any, cfg: TableExport) -> SourceInfo:
    is_cratedb = bool(run_statement(cursor, sql.detect_cratedb()).fetchone()[0])
    if run_statement(cursor, sql.describe_table(cfg)).fetchone() is None:
        raise SourceError(f"table {cfg.qualified_name} does not exist (not in information_schema.tables)")
    columns = {name: dtype for name, dtype in run_statement(cursor, sql.describe_columns(cfg)).fetchall()}
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
    return SourceInfo(is_cratedb=is_cratedb, columns=columns, timestamp_type=ts_type.lower())
