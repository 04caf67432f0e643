"""Retention: delete source rows older than ``retain_days``, and only what is safely archived.

The source is kept small by deleting what the archive holds; nothing else. A unit of deletion is a
whole partition of a CrateDB partitioned table (``DELETE FROM t WHERE <partition column> = <value>``,
which CrateDB turns into dropping the partition, as the tutorial's retention DAG does), or one UTC
day of an unpartitioned table (``DELETE ... WHERE <day window>``). A unit is deleted only when it
lies wholly before the cutoff and **every day it holds rows of** checks out, right before the
DELETE and while this purge holds each day's lease (no export, restore or other purge at work on
them):

- the day's partition is complete (``_SUCCESS``, a valid manifest for this table and day) and its
  objects are as the manifest lists them (size, ETag, SHA-256 checksum; nothing unlisted);
- the partition holds every column the table has now, and every row of the day (no filter);
- the manifest's rows equal its ``source_count`` (the archive holds what the source held);
- ``count(*)`` of the day in the source now equals that ``source_count``, and the day's change
  marker equals the manifest's ``source_marker`` (no row updated since the export);
- no row of a partition has a NULL timestamp (it is in no day, so in no export).

Otherwise nothing of the unit is deleted and the outcome names each day and why (the retention task
then fails, after deleting whatever did check out; the next run checks again). Before the DELETE,
``_PURGED.json`` (``manifest.PurgeRecord``, state ``started``) is written into every day's partition,
and after it again with ``done`` and the row count: from the first write on, nothing exports such a
day over its archive (``publish.refuse_purged``), reconcile leaves it, ``verify`` reports it.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from cratedb_airflow_export import sql
from cratedb_airflow_export.attempt import describe, open_attempt
from cratedb_airflow_export.errors import RetentionRefused
from cratedb_airflow_export.layout import PURGED, partition
from cratedb_airflow_export.lease import held
from cratedb_airflow_export.manifest import PurgeRecord, now_utc, selection_fingerprint
from cratedb_airflow_export.source import PartitionValues, column_ids, execute, partition_scope, window_state
from cratedb_airflow_export.storage import WriteOptions
from cratedb_airflow_export.verify import check_archive
from cratedb_airflow_export.windows import Window, to_utc_datetime

if TYPE_CHECKING:
    import psycopg

    from cratedb_airflow_export.attempt import Attempt
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.export import RunInfo
    from cratedb_airflow_export.manifest import Baseline, Manifest, Partition
    from cratedb_airflow_export.source import SourceInfo, WindowState

log = logging.getLogger(__name__)

State = Literal["purged", "refused", "qualifies"]


def cutoff(last_day: date, retain_days: int) -> date:
    """The first day kept when ``last_day`` is the newest day of the window kept: the days
    ``[cutoff, last_day]`` (``retain_days`` of them) stay, earlier days are purged."""
    return last_day - timedelta(days=retain_days - 1)


@dataclass(frozen=True)
class Unit:
    """One deletion: a whole partition, or one day of an unpartitioned table."""

    what: str
    statement: sql.Statement
    days: tuple[date, ...]  # the days it holds rows of, each of which must check out
    rows: int  # rows of the unit
    problems: tuple[str, ...] = ()  # found while listing it (rows without a timestamp)
    scope: PartitionValues | None = None  # a partition's values: its writes are blocked while it is checked


@dataclass(frozen=True)
class Outcome:
    what: str
    days: tuple[date, ...]
    state: State
    rows: int
    reasons: tuple[str, ...] = ()
    deleted: int | None = None  # the DELETE's row count, where the database reports one
    unarchived: int = 0  # rows the DELETE removed beyond those checked (written in between)

    def describe(self, table: str) -> str:
        span = f"{self.days[0]}..{self.days[-1]}" if len(self.days) > 1 else str(self.days[0]) if self.days else "-"
        head = f"{table} {self.what} ({span}, {self.rows} rows)"
        if self.state == "refused":
            return f"{head}: REFUSED, nothing deleted: " + "; ".join(self.reasons)
        if self.state == "qualifies":
            return f"{head}: would be deleted (dry run): {'; '.join(self.reasons)}"
        said = f"{head}: purged" + (f", {self.deleted} rows deleted" if self.deleted is not None else "")
        if self.unarchived:
            said += f"; {self.unarchived} OF THEM WERE NOT ARCHIVED (written between the check and the DELETE)"
        return said

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "days": [d.isoformat() for d in self.days],
            "state": self.state,
            "rows": self.rows,
            "reasons": list(self.reasons),
            "deleted": self.deleted,
            "unarchived": self.unarchived,
        }


@dataclass(frozen=True)
class Deleted:
    """A unit's DELETE, done: its row count (None: not reported), when the purge started, and per day
    the source's rows checked and the export they were checked against."""

    rows: int | None
    started: str
    checked: dict[date, tuple[int, str]]


class RolledBack(Exception):
    """The DELETE of a unit inside a transaction did not remove exactly the rows checked: undone."""


@dataclass
class Purger:
    """One purge of one table: the attempt's connections, and who runs it (for the records)."""

    attempt: Attempt
    run: RunInfo | None
    holder: str = field(default_factory=lambda: f"purge-{uuid.uuid4().hex[:8]}")

    @property
    def cfg(self) -> TableExport:
        return self.attempt.cfg

    @property
    def cursor(self) -> psycopg.Cursor[Any]:
        return self.attempt.cursor

    @property
    def source(self) -> SourceInfo:
        return self.attempt.database

    def _one(self, statement: sql.Statement) -> Any:
        return execute(self.cursor, statement, self.cfg.attempt_seconds).fetchone()

    def _bound(self, moment: datetime) -> datetime:
        """A bound as the timestamp column takes it (naive UTC for TIMESTAMP WITHOUT TIME ZONE)."""
        return moment.replace(tzinfo=None) if self.source.naive_timestamps else moment

    def _days_with_rows(self, before: date, scope: PartitionValues | None = None) -> Iterator[date]:
        """Each UTC day before ``before`` that holds rows (of one partition), oldest first: one
        ``min()`` per day with rows, so empty stretches cost nothing."""
        end = self._bound(Window.for_day(before).start)
        after: datetime | None = None
        while True:
            row = self._one(sql.first_timestamp(self.cfg, end, after=after, partition=scope))
            if row is None or row[0] is None:
                return
            day = to_utc_datetime(row[0]).date()
            yield day
            after = self._bound(Window.for_day(day).end)

    def units(self, before: date) -> list[Unit]:
        """What could be deleted before ``before``: the table's partitions that hold only rows of
        earlier days, or (unpartitioned) each earlier day that holds rows."""
        if not self.source.partition_columns:
            units = []
            for day in self._days_with_rows(before):
                window = Window.for_day(day)
                statement = sql.delete_window(self.cfg, window, naive=self.source.naive_timestamps)
                rows = window_state(self.cursor, self.cfg, window, self.source).count
                units.append(Unit(f"day {day}", statement, (day,), rows, self._unpartitioned_problems()))
            return units
        units = []
        listed = execute(self.cursor, sql.list_partitions(self.cfg), self.cfg.attempt_seconds).fetchall()
        for _, values in listed:
            scope = partition_scope(values, self.source, self.cfg.qualified_name)
            total, stamped, latest = self._one(sql.partition_rows(self.cfg, scope))
            if not total or (latest is not None and to_utc_datetime(latest).date() >= before):
                continue  # empty, or holds rows of days that are kept
            what = "partition (" + ", ".join(f"{c} = {_shown(v)}" for c, v in scope) + ")"
            problems: tuple[str, ...] = ()
            if stamped != total:
                column = self.cfg.timestamp_column
                problems = (f"{total - stamped} of its {total} rows have no {column}: no export holds them",)
            days = tuple(self._days_with_rows(before, scope))
            units.append(Unit(what, sql.delete_partition(self.cfg, scope), days, int(total), problems, scope))
        return units

    def _unpartitioned_problems(self) -> tuple[str, ...]:
        """Why a day of this unpartitioned table may not be deleted whatever its archive says: on a
        source without transactions (CrateDB) a row written between the last check and the DELETE
        would be deleted unarchived, unless the configuration accepts that window."""
        if self.source.dialect.transactions or self.cfg.unpartitioned_retention == "accept_window":
            return ()
        return (
            f"{self.cfg.qualified_name} is not partitioned and {self.source.dialect} has no transaction that keeps "
            "writers out between the checks and the DELETE: a row written into the day in that moment would be "
            "deleted unarchived. Partition the table (each partition is blocked for writes while it is checked), "
            "or set unpartitioned_retention: accept_window to delete anyway (such rows are then counted and "
            "reported, and the retention run fails)",
        )

    def check_archives(self, unit: Unit) -> tuple[list[str], dict[date, Partition]]:
        """Each day of ``unit`` against its archive in the bucket (no source involved): why it is no
        archive of the day's rows (empty: every day's partition is), and each day's partition."""
        problems, found = list(unit.problems), {}
        for day in unit.days:
            report, partition_read = check_archive(self.attempt.store, self.cfg, Window.for_day(day))
            manifest = partition_read.manifest
            if not report.ok or manifest is None:
                problems.append(f"{day}: {'; '.join(report.problems) or 'no partition'} ({report.partition})")
                continue
            lacking = self._lacking(manifest)
            if lacking:
                problems.append(f"{day}: {lacking}: export the day again first")
                continue
            if manifest.source_count is None or manifest.rows != manifest.source_count:
                problems.append(
                    f"{day}: the partition holds {manifest.rows} rows, the source held {manifest.source_count} "
                    "when it was exported"
                )
                continue
            found[day] = partition_read
        return problems, found

    def check_source(self, found: dict[date, Partition]) -> tuple[list[str], dict[date, tuple[int, str]]]:
        """Each day against the source as it is now: it still holds exactly what its archive is the
        copy of (:attr:`~.manifest.Partition.baseline`). Why not (empty: every day does), and per day
        the source's rows and the export they were checked against."""
        problems, checked = [], {}
        numbers = column_ids(self.cursor, self.cfg)
        for day, partition_read in found.items():
            manifest, baseline = partition_read.manifest, partition_read.baseline
            assert manifest is not None and baseline is not None
            now = window_state(self.cursor, self.cfg, Window.for_day(day), self.source, identify=True)
            moved = differences(baseline, now, numbers, manifest.columns or [])
            if moved:
                problems.append(f"{day}: {moved}")
            else:
                checked[day] = (now.count, manifest.exported_at)
        return problems, checked

    def _lacking(self, manifest: Manifest) -> str | None:
        """What the archive lacks of the table's rows as they are chosen now (None: nothing): columns
        not exported (a column list, or columns added since), rows a filter left out, or rows chosen
        otherwise (another timestamp column or type, another statement)."""
        if manifest.columns is None:
            return "the manifest does not say which columns the partition holds"
        if manifest.selection_fingerprint is None or manifest.timestamp_column is None:
            return "the manifest does not record what chose the day's rows (it was written by an earlier version)"
        if manifest.filter is not None:
            return f"the partition holds only the rows of the filter {manifest.filter!r}"
        column = self.cfg.timestamp_column
        if manifest.timestamp_column != column:
            return (
                f"the day's rows were chosen by the column {manifest.timestamp_column!r}, the table is configured "
                f"with timestamp_column {column!r} now"
            )
        if manifest.timestamp_type != self.source.timestamp_type:
            was, now = manifest.timestamp_type, self.source.timestamp_type
            return f"{column} was {was} when the day was exported, it is {now} now"
        if manifest.selection_fingerprint != selection_fingerprint(self.cfg, self.source):
            return "the statement that chooses the day's rows differs from the one the export counted them with"
        missing = [c for c in self.source.top_level if c not in manifest.columns]
        return f"the partition lacks the column(s) {', '.join(missing)}" if missing else None

    def _record(self, unit: Unit, day: date, checked: tuple[int, str], started: str, **done: Any) -> None:
        """Write ``_PURGED.json`` into ``day``'s partition: ``started`` (no ``done``), or ``done``."""
        location, (rows, exported_at) = partition(self.cfg, day), checked
        record = PurgeRecord(
            table=self.cfg.qualified_name,
            interval=Window.for_day(day).as_dict(),
            state="done" if done else "started",
            what=unit.what,
            statement=unit.statement.describe(),
            rows=rows,
            manifest_exported_at=exported_at,
            started_at=started,
            dag_id=self.run.dag_id if self.run else None,
            run_id=self.run.run_id if self.run else None,
            **done,
        )
        options = WriteOptions(self.cfg.sse, self.cfg.sse_kms_key_id)
        self.attempt.store.put(location.bucket, location.key(PURGED), record.to_bytes(), "application/json", options)

    def _unrecord(self, unit: Unit) -> None:
        """Remove the ``started`` records of a DELETE that was rolled back (best effort: a record left
        makes exports of the day refuse, and the next purge checks the day again)."""
        for day in unit.days:
            location = partition(self.cfg, day)
            try:
                self.attempt.store.delete(location.bucket, [location.key(PURGED)])
            except Exception as exc:
                log.warning("could not remove %s of %s: %s", PURGED, location.uri, exc)

    @contextlib.contextmanager
    def _writes_blocked(self, scope: PartitionValues) -> Iterator[None]:
        """A partition that refuses writes while it is checked and deleted; writable again when it
        is not deleted (a purge killed in between leaves the block: the next purge of the partition
        sets it again, and deletes the partition or lifts it)."""
        if any(value is None for _, value in scope):
            yield  # such a partition holds rows without a day: refused anyway
            return
        seconds = self.cfg.attempt_seconds
        execute(self.cursor, sql.block_writes(self.cfg, scope, blocked=True), seconds)
        try:
            yield
        finally:
            if self._partition_exists(scope):
                execute(self.cursor, sql.block_writes(self.cfg, scope, blocked=False), seconds)

    @contextlib.contextmanager
    def _writers_locked_out(self) -> Iterator[None]:
        """PostgreSQL: one transaction that holds a lock keeping every other writer of the table out
        (waiting at most the stall timeout for it) until it commits or, on an exception, rolls back:
        no row can arrive or change between the checks and the DELETE."""
        with self.cursor.connection.transaction():
            for statement in sql.lock_writers_out(self.cfg, self.cfg.stall_timeout_seconds * 1000):
                execute(self.cursor, statement, self.cfg.attempt_seconds)
            yield

    def _partition_exists(self, scope: PartitionValues) -> bool:
        total = self._one(sql.partition_rows(self.cfg, scope))[0]
        return bool(total)

    def purge(self, unit: Unit, *, dry_run: bool) -> Outcome:
        """Check ``unit`` under its days' leases and, unless ``dry_run`` or refused, delete it."""
        with contextlib.ExitStack() as leases:
            if not dry_run:  # a dry run writes nothing, not even a lease
                for day in unit.days:
                    what = describe("purge", self.cfg, Window.for_day(day))
                    leases.enter_context(held(self.attempt.store, partition(self.cfg, day), self.holder, what))
            problems, found = self.check_archives(unit)  # the bucket, before the source is held still
            if problems:
                return self._refused(unit, problems)
            try:
                done = self._check_and_delete(unit, found, dry_run=dry_run)
            except RolledBack as exc:  # the transaction is undone: nothing was deleted
                self._unrecord(unit)
                return self._refused(unit, [str(exc)])
            if isinstance(done, Outcome):
                return done
            reported, checked = done.rows, done.checked
            for day in unit.days:  # committed: the DELETE is final
                self._record(unit, day, checked[day], done.started, deleted=reported, finished_at=now_utc())
        facts = (f"{len(unit.days)} archived day(s) verified: {unit.statement.describe()}",)
        archived = sum(rows for rows, _ in checked.values())
        if reported is not None and reported > archived:  # rows written into the day between count and DELETE
            lost = f"the DELETE removed {reported} rows, {reported - archived} more than the {archived} archived"
            log.error("%s %s: %s", self.cfg.qualified_name, unit.what, lost)
            return Outcome(unit.what, unit.days, "purged", unit.rows, (*facts, lost), reported, reported - archived)
        log.info(
            "%s %s: purged (%s rows deleted; %d day(s) archived)",
            self.cfg.qualified_name,
            unit.what,
            reported if reported is not None else "?",
            len(unit.days),
        )
        return Outcome(unit.what, unit.days, "purged", unit.rows, facts, reported)

    def _check_and_delete(self, unit: Unit, found: dict[date, Partition], *, dry_run: bool) -> Outcome | Deleted:
        """With the unit held still (a partition's writes blocked; PostgreSQL: the table locked for
        writers in a transaction that this commits, or rolls back by :class:`RolledBack`), check the
        source and delete; or the outcome that ends it here (refused, or a dry run's)."""
        in_transaction = not dry_run and unit.scope is None and self.source.dialect.transactions
        with contextlib.ExitStack() as still:
            if not dry_run and unit.scope is not None:
                still.enter_context(self._writes_blocked(unit.scope))
            if in_transaction:
                still.enter_context(self._writers_locked_out())
            if self.source.dialect.needs_refresh:  # count what is there right now
                execute(self.cursor, sql.refresh(self.cfg), self.cfg.attempt_seconds)
            problems, checked = self.check_source(found)
            if problems:
                return self._refused(unit, problems)
            if dry_run:
                facts = (f"{len(unit.days)} archived day(s) verified: {unit.statement.describe()}",)
                return Outcome(unit.what, unit.days, "qualifies", unit.rows, facts)
            archived = sum(rows for rows, _ in checked.values())
            started = now_utc()
            for day in unit.days:  # from here on, nothing exports these days over their archive
                self._record(unit, day, checked[day], started)
            deleted = execute(self.cursor, unit.statement, self.cfg.attempt_seconds).rowcount
            if in_transaction and deleted != archived:
                raise RolledBack(f"the DELETE would have removed {deleted} rows, {archived} were checked: rolled back")
        return Deleted(deleted if deleted is not None and deleted >= 0 else None, started, checked)

    def _refused(self, unit: Unit, problems: Sequence[str]) -> Outcome:
        log.error("%s %s: deleting nothing: %s", self.cfg.qualified_name, unit.what, "; ".join(problems))
        return Outcome(unit.what, unit.days, "refused", unit.rows, tuple(problems))


def differences(baseline: Baseline, now: WindowState, numbers: Mapping[str, int], columns: Sequence[str]) -> str | None:
    """How the source's rows of a day differ now from what its archive is the copy of (None: they do
    not): the count, the change marker, the table's identity, the exported columns' numbers."""
    since = baseline.since
    if now.count != baseline.count:
        return (
            f"the source holds {now.count} rows of the day now, it held {baseline.count} at {since} (rows arrived "
            "or were deleted since: export the day again first)"
        )
    if baseline.marker is None:
        return f"no change marker was recorded at {since}: export the day again first"
    if now.marker != baseline.marker:
        moved = f"{baseline.marker} -> {now.marker}"
        return f"rows of the day were updated since {since} ({moved}): export the day again first"
    if baseline.table_id is None or now.table_id is None:
        when = f"at {since}" if baseline.table_id is None else "now"
        return (
            f"the table's identity could not be read {when} (CrateDB: sys.shards; the export's and the purge's users "
            "need DQL on the schema sys): export the day again first"
        )
    if now.table_id != baseline.table_id:
        return (
            f"the table holding the day is not the one of {since} ({baseline.table_id} -> {now.table_id}: dropped "
            "and created again): export the day again first"
        )
    recorded = baseline.column_ids or {}
    renumbered = [c for c in columns if numbers.get(c) != recorded.get(c)]
    if renumbered:
        named = ", ".join(renumbered)
        return f"the column(s) {named} were dropped and added again since {since}: export the day again first"
    return None


def _shown(value: Any) -> str:
    return "NULL" if value is None else value.isoformat() if isinstance(value, datetime) else repr(value)


def purge(
    cfg: TableExport,
    before: date,
    *,
    dry_run: bool = False,
    run: RunInfo | None = None,
    connections: Connections | None = None,
) -> list[Outcome]:
    """Delete ``cfg``'s source rows of the days before ``before`` that are safely archived (see the
    module's text); one outcome per partition or day. Deletes nothing of a unit that does not check
    out; raise nothing for it (the caller decides: :func:`refusals`)."""
    today = datetime.now(timezone.utc).date()
    if before > today:
        raise RetentionRefused(f"{cfg.qualified_name}: purging before {before} would delete days that are not over yet")
    window = Window.for_day(before - timedelta(days=1))
    with open_attempt(cfg, window, "purge", connections) as attempt:
        purger = Purger(attempt, run)
        if purger.source.dialect.needs_refresh:
            execute(attempt.cursor, sql.refresh(cfg), cfg.attempt_seconds)
        units = purger.units(before)
        log.info("%s: %d unit(s) to purge before %s", cfg.qualified_name, len(units), before)
        return [purger.purge(unit, dry_run=dry_run) for unit in units]


def plan_retention(cfg: TableExport, day: date) -> dict[str, Any] | None:
    """What the retention run of ``day`` would do, without touching the source or S3 (None: the table
    keeps everything): the first day kept, and the statement that deletes a day of an unpartitioned
    table (the newest day it could delete); a partitioned table loses whole partitions instead."""
    if cfg.retain_days is None:
        return None
    before = cutoff(day, cfg.retain_days)
    example = sql.delete_window(cfg, Window.for_day(before - timedelta(days=1)))
    return {
        "retain_days": cfg.retain_days,
        "before": before.isoformat(),
        "statements": [example.wire_sql],
        "parameters": [example.shown_params()],
        "note": "per day before 'before' that holds rows (partitioned tables: per partition, "
        "DELETE ... WHERE <partition columns> = <values>), each only after its archive checks out; "
        f"the checks alone: cratedb-export purge --table {cfg.qualified_name} --before {before} --dry-run",
    }


def refusals(cfg: TableExport, outcomes: Sequence[Outcome]) -> RetentionRefused | None:
    """One error naming every refused unit, its days and why, and every DELETE that removed rows
    written after the check (None: neither)."""
    refused = [o for o in outcomes if o.state == "refused"]
    overrun = [o for o in outcomes if o.unarchived]
    if not refused and not overrun:
        return None
    told = [f"{o.what}: {o.reasons[-1]}" for o in overrun]
    if refused:
        described = " | ".join(o.describe(cfg.qualified_name) for o in refused)
        told.insert(0, f"deleted nothing of {len(refused)} unit(s): {described}")
    return RetentionRefused(f"retention of {cfg.qualified_name} " + "; ".join(told))
