"""Verification, before and after writing.

- Before: the source table, columns and timestamp type (a bad table or column fails here, with a
  message naming the table and the cause, before any object is written).
- After: rows exported vs ``count(*)`` over the same window (strict by default).
- Any time: ``verify_partition`` checks a published partition against its manifest and the source
  (``cratedb-export verify``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cratedb_airflow_export import sql
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.hooks import run_statement
from cratedb_airflow_export.windows import Window

log = logging.getLogger(__name__)


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


class VerificationError(RuntimeError):
    """Exported data and source disagree."""


def count_source(cursor: Any, cfg: TableExport, window: Window, source: SourceInfo) -> int:
    return int(run_statement(cursor, sql.count_window(cfg, window, naive=source.naive_timestamps)).fetchone()[0])


def check_counts(cfg: TableExport, exported: int, source_count: int) -> None:
    """Rows exported vs ``count(*)`` over the same window, per the table's ``row_count_check``."""
    if exported == source_count:
        log.info("%s: row count verified: %d exported = %d in the source", cfg.qualified_name, exported, source_count)
        return
    message = (
        f"row count mismatch for {cfg.qualified_name}: {exported} rows exported, "
        f"but count(*) over the same window is {source_count}"
    )
    if cfg.row_count_check == "strict":
        raise VerificationError(message + " (row_count_check: strict)")
    log.warning("%s (row_count_check: warn, publishing anyway)", message)


@dataclass
class PartitionReport:
    """The result of checking a published partition against its manifest and the source."""

    partition: str
    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [f"{'OK' if self.ok else 'FAILED'}: {self.partition}"]
        lines += [f"  - {fact}" for fact in self.facts]
        lines += [f"  ! {problem}" for problem in self.problems]
        return "\n".join(lines)


def verify_partition(client: Any, cursor: Any | None, cfg: TableExport, window: Window) -> PartitionReport:
    """Check a published partition: ``_SUCCESS``, manifest, every listed object with its size and
    ETag, no unlisted data object, and (with a cursor) the source count of the window."""
    from cratedb_airflow_export.layout import MANIFEST, SUCCESS, is_data_object, partition
    from cratedb_airflow_export.manifest import fetch
    from cratedb_airflow_export.s3 import list_objects

    location = partition(cfg, window.day)
    report = PartitionReport(location.uri)
    stored = {o.key: o for o in list_objects(client, location)}
    if location.key(SUCCESS) not in stored:
        report.problems.append(f"{SUCCESS} is missing: the partition is incomplete or being replaced")
    if location.key(MANIFEST) not in stored:
        report.problems.append(f"{MANIFEST} is missing")
        return report
    try:
        manifest = fetch(client, location.bucket, location.key(MANIFEST))
    except ValueError as exc:
        report.problems.append(f"{MANIFEST} is not a valid manifest: {exc}")
        return report
    report.facts.append(
        f"manifest: {manifest.rows} rows in {len(manifest.objects)} object(s), engine {manifest.engine}, "
        f"exported {manifest.exported_at} by {manifest.dag_id or '-'} / {manifest.run_id or '-'}"
    )
    if manifest.table != cfg.qualified_name or manifest.interval != window.as_dict():
        report.problems.append(
            f"manifest is for {manifest.table} {manifest.interval}, not {cfg.qualified_name} {window.as_dict()}"
        )
    for entry in manifest.objects:
        found = stored.get(entry.key)
        if found is None:
            report.problems.append(f"{entry.key} is listed in the manifest but missing")
        elif (found.size, found.etag) != (entry.size, entry.etag):
            report.problems.append(
                f"{entry.key}: size/ETag {found.size}/{found.etag} differ from the manifest's {entry.size}/{entry.etag}"
            )
    unlisted = sorted(k for k in stored if is_data_object(k) and k not in {o.key for o in manifest.objects})
    if unlisted:
        report.problems.append(f"data objects not in the manifest: {unlisted}")
    if manifest.object_rows is not None and manifest.object_rows != manifest.rows:
        report.problems.append(f"manifest objects hold {manifest.object_rows} rows, its total says {manifest.rows}")
    if cursor is not None:
        source = check_source(cursor, cfg)
        count = count_source(cursor, cfg, window, source)
        if count == manifest.rows:
            report.facts.append(f"source count(*) over the window: {count} = manifest rows")
        else:
            report.problems.append(f"source count(*) over the window is {count}, the manifest says {manifest.rows}")
    return report
