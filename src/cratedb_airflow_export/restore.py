"""Restore: exported partitions back into a table (disaster recovery, moving data between clusters,
reprocessing).

Only complete partitions are restored (``_SUCCESS`` and ``_manifest.json``), and only the objects
the manifest lists. Two ways in:

- ``copy``: CrateDB reads the files itself (``COPY ... FROM [...] RETURN SUMMARY``, the URIs with
  their keys as one bind parameter, never in the statement text): for partitions of the ``copy``
  engine (CrateDB's own JSON) into a CrateDB. Every file's failed rows are reported, and any
  failure fails the restore (without RETURN SUMMARY, CrateDB's COPY FROM passes failures silently).
- ``worker``: any partition (JSON Lines, CSV, Parquet; any compression; either engine's shape) is
  read a file at a time (downloaded to a temporary file) and inserted in batches of
  :data:`INSERT_BATCH_ROWS` rows, converted to the target column's type: memory stays bounded.

A target that already holds rows in the day's window (with the table's filter) is refused unless
``replace`` is set, which deletes those rows first: a rerun never duplicates rows. Afterwards
``count(*)`` over the window in the target must equal the manifest's rows, or the restore fails.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from cratedb_airflow_export import sql
from cratedb_airflow_export.attempt import Attempt, describe, open_attempt
from cratedb_airflow_export.errors import RestoreFailed, RestoreRefused, RestoreUnreadable
from cratedb_airflow_export.formats import COPY_JSONL, FORMATS, read_rows
from cratedb_airflow_export.formats.fields import JSON_NULL, json_value
from cratedb_airflow_export.layout import RESTORED, partition
from cratedb_airflow_export.lease import held
from cratedb_airflow_export.manifest import Manifest, RestoreRecord, now_utc, read_partition
from cratedb_airflow_export.source import WindowState, column_ids, count_window, execute, window_state
from cratedb_airflow_export.storage import Location, WriteOptions, parse_target

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.windows import Window

log = logging.getLogger(__name__)

Method = Literal["auto", "copy", "worker"]
INSERT_BATCH_ROWS = 5_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_DIGITS = re.compile(r"-?[0-9]+")  # epoch milliseconds as text; never an ISO 8601 form we write


@dataclass(frozen=True)
class RestoreResult:
    table: str  # the target
    day: date
    partition: str
    method: str
    rows: int
    deleted: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "day": self.day.isoformat(),
            "partition": self.partition,
            "method": self.method,
            "rows": self.rows,
            "deleted": self.deleted,
        }


def target_of(cfg: TableExport, into: str | None) -> TableExport:
    """``cfg`` with its rows going into ``into`` (``schema.table`` or ``table``; checked like a table name)."""
    if not into:
        return cfg
    return type(cfg).model_validate({**cfg.model_dump(exclude_none=True), "table": into})


def restore(
    cfg: TableExport,
    windows: Iterable[Window],
    *,
    into: str | None = None,
    replace: bool = False,
    method: Method = "auto",
    connections: Connections | None = None,
) -> list[RestoreResult]:
    """Restore ``cfg``'s partition of each window into ``into`` (default: ``cfg``'s table)."""
    target = target_of(cfg, into)
    if cfg.format == "iceberg":
        return [_restore_iceberg_day(cfg, target, window, replace, connections) for window in windows]
    return [_restore_day(cfg, target, window, replace, method, connections) for window in windows]


def _restore_iceberg_day(
    cfg: TableExport, target: TableExport, window: Window, replace: bool, connections: Connections | None
) -> RestoreResult:
    """The day's rows of the Iceberg table's current snapshot, read a batch at a time by the worker
    and inserted; counted against the commit that names the day."""
    from cratedb_airflow_export.iceberg import read_day, released

    where = f"iceberg:{cfg.iceberg_identifier}"
    log.info("Restoring %s into %s from %s", cfg.qualified_name, target.qualified_name, where)
    with (
        open_attempt(target, window, "restore", connections) as attempt,
        held(
            attempt.store,
            partition(cfg, window.day),
            f"restore-{uuid.uuid4().hex[:8]}",
            describe("restore", cfg, window),
        ),
    ):
        assert attempt.connections.catalog is not None
        naive = attempt.database.naive_timestamps
        day = read_day(attempt.store, attempt.connections.catalog, cfg, window, naive)
        expected, summary = day.rows, day.summary
        if not summary:
            raise RestoreRefused(f"{where} has no commit of this export for {window.day}: export the day first")
        columns = _target_columns(attempt, target)
        refuse_unknown(day.columns, columns)  # before anything is deleted: CrateDB cannot roll back
        deleted = _make_room(attempt, target, window, replace)
        with _deleted_first(attempt, target, window, deleted):
            with released():
                _insert_iceberg_day(attempt, cfg, target, window, columns)
            if attempt.database.dialect.needs_refresh:
                execute(attempt.cursor, sql.refresh(target), target.attempt_seconds)
            restored = count_window(attempt.cursor, target, window, attempt.database)
            if restored != expected:
                raise RestoreFailed(
                    f"{target.qualified_name} holds {restored} rows in the window after the restore, "
                    f"{where} holds {expected}"
                )
    log.info("Restored %d rows of %s into %s (worker)", restored, where, target.qualified_name)
    return RestoreResult(target.qualified_name, window.day, where, "worker", restored, deleted)


def _restore_day(
    cfg: TableExport,
    target: TableExport,
    window: Window,
    replace: bool,
    method: Method,
    connections: Connections | None,
) -> RestoreResult:
    location = partition(cfg, window.day)
    log.info("Restoring %s into %s from %s", cfg.qualified_name, target.qualified_name, location.uri)
    holder = f"restore-{uuid.uuid4().hex[:8]}"
    with (
        open_attempt(target, window, "restore", connections) as attempt,
        held(attempt.store, location, holder, describe("restore", cfg, window)),
    ):
        manifest = _complete_manifest(attempt, cfg, window, location)
        columns = _target_columns(attempt, target)
        # before anything is deleted (CrateDB cannot roll back), and for COPY FROM, which would load
        # the other rows and report those with a value in such a column as failed
        refuse_unknown([column.name for column in manifest.schema_ or ()], columns)
        chosen = _choose(method, manifest, attempt)
        # PostgreSQL: all or nothing (a restore that fails leaves the table as it was); CrateDB has no
        # transactions: a failed restore can leave rows, and says so
        with _all_or_nothing(attempt):
            deleted = _make_room(attempt, target, window, replace)
            with _deleted_first(attempt, target, window, deleted):
                if chosen == "copy":
                    _copy_from(attempt, target, manifest)
                else:
                    _insert_files(attempt, target, manifest, location, columns)
                if attempt.database.dialect.needs_refresh:
                    execute(attempt.cursor, sql.refresh(target), target.attempt_seconds)
                now = window_state(attempt.cursor, target, window, attempt.database, identify=True)
                restored = now.count
                if restored != manifest.rows:
                    raise RestoreFailed(
                        f"{target.qualified_name} holds {restored} rows in the window after the restore, the "
                        f"manifest says {manifest.rows}"
                        + ("" if attempt.database.dialect.transactions else " (rows inserted stay)")
                    )
        if target.qualified_name == cfg.qualified_name:
            _record_baseline(attempt, cfg, window, location, manifest, chosen, now)
    log.info("Restored %d rows of %s into %s (%s)", restored, location.uri, target.qualified_name, chosen)
    return RestoreResult(target.qualified_name, window.day, location.uri, chosen, restored, deleted)


def _record_baseline(
    attempt: Attempt,
    cfg: TableExport,
    window: Window,
    location: Location,
    manifest: Manifest,
    method: str,
    now: WindowState,
) -> None:
    """``_RESTORED.json``: the table holds exactly the archive's rows of the day again, as new copies
    (new row versions, maybe a new partition); what they look like now is what retention and
    reconcile compare the source with from here on (``manifest.Partition.baseline``)."""
    record = RestoreRecord(
        table=cfg.qualified_name,
        interval=window.as_dict(),
        manifest_exported_at=manifest.exported_at,
        method=method,
        rows=now.count,
        source_marker=now.marker,
        table_id=now.table_id,
        column_ids=column_ids(attempt.cursor, cfg),
        restored_at=now_utc(),
    )
    options = WriteOptions(cfg.sse, cfg.sse_kms_key_id)
    attempt.store.put(location.bucket, location.key(RESTORED), record.to_bytes(), "application/json", options)
    log.info(
        "%s: recorded the restored day %s as the source's new baseline (%s)", cfg.qualified_name, window.day, RESTORED
    )


def _insert_iceberg_day(
    attempt: Attempt, cfg: TableExport, target: TableExport, window: Window, columns: dict[str, Column]
) -> None:
    """The day's rows of the table's current snapshot, a batch at a time, into ``target``."""
    from cratedb_airflow_export.formats.objects import plain
    from cratedb_airflow_export.iceberg import day_filter, load_catalog

    assert attempt.connections.catalog is not None
    table = load_catalog(attempt.connections.catalog, attempt.store).load_table(cfg.iceberg_identifier)
    convert = Converter(columns, text=False)
    objects = {name for name, column in columns.items() if column.data_type in ("object", "json", "jsonb")}
    scan = table.scan(row_filter=day_filter(cfg, window, attempt.database.naive_timestamps))
    for batch in scan.to_arrow_batch_reader():
        rows = batch.to_pylist()
        for row in rows:  # JSON text and structs back into objects
            for name in objects & row.keys():
                value = row[name]
                row[name] = json_value(value) if isinstance(value, str) else plain(value)
        for chunk in _batches(iter(rows)):
            _insert(attempt, target, convert, chunk)


def _complete_manifest(attempt: Attempt, cfg: TableExport, window: Window, location: Location) -> Manifest:
    found = read_partition(attempt.store, location, cfg.qualified_name, window.as_dict())
    if found.missing:
        raise RestoreRefused(
            f"{location.uri} is not a complete partition ({' and '.join(found.missing)} missing): only complete "
            "partitions are restored; export the day again first"
        )
    if not found.complete or found.manifest is None:
        raise RestoreRefused(f"{location.uri} is not a complete partition: {'; '.join(found.problems)}")
    chosen_by = found.manifest.timestamp_column
    if chosen_by is not None and chosen_by != cfg.timestamp_column:
        raise RestoreRefused(
            f"{location.uri} holds the rows whose {chosen_by!r} is in the day, the table is configured with "
            f"timestamp_column {cfg.timestamp_column!r} now: the restored rows would not be the day's by it "
            "(restore with the configuration the day was exported with)"
        )
    return found.manifest


@contextmanager
def _all_or_nothing(attempt: Attempt) -> Iterator[None]:
    """A transaction where the target has them (committed at the end, rolled back on any failure)."""
    if not attempt.database.dialect.transactions:
        yield
        return
    with attempt.cursor.connection.transaction():
        yield


@contextmanager
def _deleted_first(attempt: Attempt, target: TableExport, window: Window, deleted: int) -> Iterator[None]:
    """Without transactions (CrateDB), a load that fails after ``--replace`` deleted the day's rows
    leaves them deleted: the failure says so, and that the archive still holds them."""
    try:
        yield
    except Exception as exc:
        if not deleted or attempt.database.dialect.transactions:
            raise
        note = (
            f"the {deleted} rows of {target.qualified_name} in [{window.start.isoformat()}, "
            f"{window.end.isoformat()}) deleted first (--replace) are not back ({attempt.database.dialect} cannot roll "
            "back); the archive still holds the day: restore again once the cause is fixed"
        )
        log.error("%s", note)
        if isinstance(exc, (RestoreFailed, RestoreRefused, RestoreUnreadable)):
            raise type(exc)(f"{exc}; {note}") from exc
        raise


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    generated: bool
    udt_name: str | None = None  # PostgreSQL's name of the type: an array's element, as in "_float8"

    @property
    def floats(self) -> bool:
        """An array of floats (whose NaN and infinities JSON Lines holds as strings)."""
        element = self.data_type.removesuffix("_array") if self.data_type.endswith("_array") else None
        return element in FLOATS or (self.udt_name or "") in ("_float8", "_float4")


def _target_columns(attempt: Attempt, target: TableExport) -> dict[str, Column]:
    rows = execute(attempt.cursor, sql.describe_target(target), target.stall_timeout_seconds).fetchall()
    return {
        name: Column(name, str(dtype).lower(), str(generated).upper() not in ("NEVER", "NO", "FALSE"), udt)
        for name, dtype, generated, udt in rows
    }


def refuse_unknown(names: Iterable[str], columns: Mapping[str, Column]) -> None:
    """Refuse to restore a partition with a column the target lacks: its values would be lost."""
    unknown = sorted(set(names) - set(columns))
    if unknown:
        raise RestoreRefused(f"the partition has column(s) {unknown} that the target table does not have")


def _make_room(attempt: Attempt, target: TableExport, window: Window, replace: bool) -> int:
    existing = count_window(attempt.cursor, target, window, attempt.database)
    if not existing:
        return 0
    interval = f"[{window.start.isoformat()}, {window.end.isoformat()})"
    if not replace:
        raise RestoreRefused(
            f"{target.qualified_name} already holds {existing} rows in {interval}: restoring would add a second "
            "copy; restore with replace (--replace) to delete them first"
        )
    naive = attempt.database.naive_timestamps
    execute(attempt.cursor, sql.delete_window(target, window, naive=naive), target.attempt_seconds)
    if attempt.database.dialect.needs_refresh:
        execute(attempt.cursor, sql.refresh(target), target.attempt_seconds)
    log.info("deleted %d rows of %s in %s before the restore", existing, target.qualified_name, interval)
    return existing


def _choose(method: Method, manifest: Manifest, attempt: Attempt) -> Literal["copy", "worker"]:
    can_copy = manifest.engine == "copy" and attempt.database.dialect.copy_from_uri
    if method == "copy" and not can_copy:
        raise RestoreRefused(
            f"method 'copy' needs a partition of the copy engine (this one: {manifest.engine}) and a CrateDB "
            f"target (this one: {attempt.database.dialect}); use method 'worker' or 'auto'"
        )
    return "copy" if method != "worker" and can_copy else "worker"


# --- CrateDB reads the files ---------------------------------------------------------------------


def _copy_from(attempt: Attempt, target: TableExport, manifest: Manifest) -> None:
    from cratedb_airflow_export.engines.copy import check_endpoint_kept, cratedb_target

    if not manifest.objects:
        return
    root = parse_target(manifest.partition).at("")
    check_endpoint_kept(attempt, root.bucket)
    files = [cratedb_target(attempt.creds, root.at(o.key)) for o in manifest.objects]
    statement = sql.copy_from(
        target,
        [f.uri for f in files],
        gzip=manifest.compression == "gzip",
        protocol=files[0].protocol,
        secrets=files[0].secrets,
    )
    cursor = execute(attempt.cursor, statement, target.attempt_seconds)
    names = [column.name for column in cursor.description or ()]
    summary = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    check_summary(summary, attempt.connections.redactor())


def check_summary(summary: Sequence[Mapping[str, Any]], redact: Any = str) -> int:
    """The rows a ``COPY FROM ... RETURN SUMMARY`` loaded; raises listing every file that failed
    (a file that could not be read at all has NULL counts)."""
    problems, loaded, unreadable = [], 0, False
    for entry in summary:
        uri = redact(str(entry.get("uri")))
        errors, failed = entry.get("errors") or {}, entry.get("error_count")
        if failed is None:
            unreadable = True
            problems.append(f"{uri}: not read: {redact(json.dumps(errors))}")
        elif failed:
            problems.append(f"{uri}: {failed} row(s) failed: {redact(json.dumps(errors))}")
        loaded += int(entry.get("success_count") or 0)
    if problems:
        failure = RestoreUnreadable if unreadable else RestoreFailed  # a file not read may be readable later
        raise failure("COPY FROM reported failures: " + "; ".join(problems))
    return loaded


# --- the worker reads the files ------------------------------------------------------------------


def _insert_files(
    attempt: Attempt, target: TableExport, manifest: Manifest, location: Location, columns: dict[str, Column]
) -> None:
    spec = COPY_JSONL if manifest.engine == "copy" else FORMATS[manifest.format]
    convert = Converter(columns, text=manifest.format == "csv")
    for obj in manifest.objects:
        with tempfile.NamedTemporaryFile(prefix="cratedb-restore-", suffix=spec.extension) as local:
            attempt.store.download(location.bucket, obj.key, local)
            local.flush()
            rows = read_rows(spec, local.name, manifest.compression)
            count = sum(_insert(attempt, target, convert, batch) for batch in _batches(rows))
        log.info("inserted %d rows of %s", count, obj.key)


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= INSERT_BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _insert(attempt: Attempt, target: TableExport, convert: Converter, rows: list[dict[str, Any]]) -> int:
    names = convert.columns_of(rows)
    statement = sql.insert_rows(target, names)
    values = [[convert(name, row.get(name)) for name in names] for row in rows]
    from cratedb_airflow_export.source import bounded

    with bounded(attempt.cursor.connection, target.attempt_seconds, "inserting rows"):
        attempt.cursor.executemany(statement.sql, values)
    return len(rows)


class Converter:
    """Values as read from a file -> what the target column takes. ``text``: every value arrives as
    text (CSV); otherwise JSON Lines/Parquet values (objects nested, timestamps as ISO 8601 text
    or, from CrateDB's COPY TO, epoch milliseconds)."""

    def __init__(self, columns: Mapping[str, Column], *, text: bool) -> None:
        self.columns, self.text = columns, text

    def columns_of(self, rows: list[dict[str, Any]]) -> list[str]:
        """The target columns a batch fills: every key that is a column and not generated (the
        database computes those; CrateDB's COPY TO writes partition columns). A key the target
        lacks would lose data: refused."""
        keys = {key for row in rows for key in row}
        refuse_unknown(keys, self.columns)
        return [name for name, column in self.columns.items() if name in keys and not column.generated]

    def __call__(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        column = self.columns[name]
        kind = column.data_type
        if value is JSON_NULL:  # a JSON null value, not SQL NULL (CrateDB's objects have no such value)
            from psycopg.types.json import Json

            return Json(None) if kind in ("json", "jsonb") else None
        if kind in STRUCTURED or kind.endswith("_array"):
            return self._structured(column, value)
        return _scalar(kind, value)

    def _structured(self, column: Column, value: Any) -> Any:
        from psycopg.types.json import Json

        kind = column.data_type
        if isinstance(value, str) and (self.text or kind not in ("json", "jsonb", "object")):
            value = json.loads(value)  # CSV (and Parquet lists kept as text) hold JSON text
        if kind in ("json", "jsonb", "object"):
            return Json(value)
        if kind == "point":  # PostgreSQL's point from [x, y]
            return f"({value[0]},{value[1]})"
        if column.floats:
            return _floats(value)
        return value


STRUCTURED = frozenset({"json", "jsonb", "object", "array", "geo_point", "point"})
INTEGERS = frozenset({"bigint", "integer", "smallint", "long", "int", "short", "byte"})
FLOATS = frozenset({"double precision", "real", "double", "float"})


def _floats(value: Any) -> Any:
    """An array of floats as read from JSON: ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` as floats."""
    if isinstance(value, list):
        return [_floats(item) for item in value]
    return None if value is None else float(value)


def _scalar(kind: str, value: Any) -> Any:
    if kind in INTEGERS:
        return int(value)
    if kind in FLOATS:
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind in ("numeric", "decimal"):
        return Decimal(str(value))
    if kind.startswith("timestamp"):
        return _timestamp(value, naive="without" in kind)
    if kind == "date":
        return value if isinstance(value, date) else _timestamp(value, naive=True).date()
    if kind == "bytea":
        return value if isinstance(value, bytes) else base64.b64decode(json.loads(value) if value[:1] == '"' else value)
    return value


def _timestamp(value: Any, *, naive: bool) -> datetime:
    """A timestamp as a file holds it: ISO 8601 text, or epoch milliseconds (CrateDB's COPY TO; as a
    JSON string for a partition column: ``"1704326400000"``). A value without a zone is UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)):  # CrateDB's COPY TO: epoch milliseconds
        moment = EPOCH + timedelta(milliseconds=value)
    elif isinstance(value, str) and EPOCH_DIGITS.fullmatch(value):  # COPY TO's partition column value
        moment = EPOCH + timedelta(milliseconds=int(value))
    else:
        moment = datetime.fromisoformat(str(value))
    if naive:
        return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
