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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal

from cratedb_airflow_export import sql
from cratedb_airflow_export.attempt import describe, open_attempt
from cratedb_airflow_export.errors import RetentionRefused
from cratedb_airflow_export.layout import PURGED, partition
from cratedb_airflow_export.lease import held
from cratedb_airflow_export.manifest import PurgeRecord, now_utc
from cratedb_airflow_export.source import execute, window_state
from cratedb_airflow_export.storage import put_object, write_args
from cratedb_airflow_export.verify import check_archive
from cratedb_airflow_export.windows import Window, to_utc_datetime

if TYPE_CHECKING:
    import psycopg

    from cratedb_airflow_export.attempt import Attempt
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.export import RunInfo
    from cratedb_airflow_export.source import SourceInfo

log = logging.getLogger(__name__)

State = Literal["purged", "refused", "qualifies"]
PartitionValues = tuple[tuple[str, Any], ...]


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
        return f"{head}: purged" + (f", {self.deleted} rows deleted" if self.deleted is not None else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "days": [d.isoformat() for d in self.days],
            "state": self.state,
            "rows": self.rows,
            "reasons": list(self.reasons),
            "deleted": self.deleted,
        }


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
                units.append(Unit(f"day {day}", statement, (day,), rows))
            return units
        units = []
        for (values,) in execute(self.cursor, sql.list_partitions(self.cfg), self.cfg.attempt_seconds).fetchall():
            scope = self._partition_values(values)
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

    def _partition_values(self, values: Any) -> PartitionValues:
        """The partition's values in ``partitioned_by`` order, as its columns take them: CrateDB lists a
        timestamp partition value as epoch milliseconds."""
        if not isinstance(values, dict):
            raise RetentionRefused(f"{self.cfg.qualified_name}: unreadable partition values {values!r}")
        scope = []
        for column in self.source.partition_columns:
            value = values.get(column)
            kind = self.source.columns.get(column, "").lower()
            if value is not None and kind in sql.TIMESTAMP_TYPES and isinstance(value, int | float):
                moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
                value = moment.replace(tzinfo=None) if kind != "timestamp with time zone" else moment
            scope.append((column, value))
        return tuple(scope)

    def check(self, unit: Unit) -> tuple[list[str], dict[date, tuple[int, str]]]:
        """Why ``unit`` may not be deleted now (empty: it may), having checked every day it holds rows
        of against its archive and the source as it is now; and, per day, the source's rows and the
        export they were checked against."""
        problems, checked = list(unit.problems), {}
        for day in unit.days:
            window = Window.for_day(day)
            report, found = check_archive(self.attempt.client, self.cfg, window)
            manifest = found.manifest
            if not report.ok or manifest is None:
                problems.append(f"{day}: {'; '.join(report.problems) or 'no partition'} ({report.partition})")
                continue
            lacking = self._lacking(manifest.columns, manifest.filter)
            if lacking:
                problems.append(f"{day}: {lacking}: export the day again first")
                continue
            if manifest.source_count is None or manifest.rows != manifest.source_count:
                problems.append(
                    f"{day}: the partition holds {manifest.rows} rows, the source held {manifest.source_count} "
                    "when it was exported"
                )
                continue
            now = window_state(self.cursor, self.cfg, window, self.source)
            if now.count != manifest.source_count:
                problems.append(
                    f"{day}: the source holds {now.count} rows of the day now, the partition {manifest.source_count} "
                    "(rows arrived or were deleted since the export: export the day again first)"
                )
            elif found.purge is None and manifest.source_marker is not None and now.marker != manifest.source_marker:
                # after a purge and a restore the rows are new copies, with new versions: the count decides
                problems.append(
                    f"{day}: rows of the day were updated since the export ({manifest.source_marker} -> {now.marker}): "
                    "export the day again first"
                )
            else:
                checked[day] = (now.count, manifest.exported_at)
        return problems, checked

    def _lacking(self, columns: list[str] | None, condition: str | None) -> str | None:
        """What the archive lacks of the table's rows as they are now (None: nothing): columns not
        exported (a column list, or columns added since), rows a filter left out."""
        if columns is None:
            return "the manifest does not say which columns the partition holds"
        if condition is not None:
            return f"the partition holds only the rows of the filter {condition!r}"
        missing = [c for c in self.source.top_level if c not in columns]
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
        args = write_args(self.cfg.sse, self.cfg.sse_kms_key_id)
        put_object(
            self.attempt.client, location.bucket, location.key(PURGED), record.to_bytes(), "application/json", **args
        )

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

    def _partition_exists(self, scope: PartitionValues) -> bool:
        total = self._one(sql.partition_rows(self.cfg, scope))[0]
        return bool(total)

    def purge(self, unit: Unit, *, dry_run: bool) -> Outcome:
        """Check ``unit`` under its days' leases and, unless ``dry_run`` or refused, delete it."""
        with contextlib.ExitStack() as holding:  # the days' leases, the partition's write block
            if not dry_run:  # a dry run writes nothing, not even a lease
                for day in unit.days:
                    what = describe("purge", self.cfg, Window.for_day(day))
                    holding.enter_context(held(self.attempt.client, partition(self.cfg, day), self.holder, what))
            if not dry_run and unit.scope is not None and not unit.problems:
                holding.enter_context(self._writes_blocked(unit.scope))
            if self.source.dialect.needs_refresh:  # count what is there right now
                execute(self.cursor, sql.refresh(self.cfg), self.cfg.attempt_seconds)
            problems, checked = self.check(unit)
            if problems:
                log.error("%s %s: deleting nothing: %s", self.cfg.qualified_name, unit.what, "; ".join(problems))
                return Outcome(unit.what, unit.days, "refused", unit.rows, tuple(problems))
            facts = (f"{len(unit.days)} archived day(s) verified: {unit.statement.describe()}",)
            if dry_run:
                return Outcome(unit.what, unit.days, "qualifies", unit.rows, facts)
            started = now_utc()
            for day in unit.days:  # from here on, nothing exports these days over their archive
                self._record(unit, day, checked[day], started)
            deleted = execute(self.cursor, unit.statement, self.cfg.attempt_seconds).rowcount
            reported = deleted if deleted is not None and deleted >= 0 else None
            for day in unit.days:
                self._record(unit, day, checked[day], started, deleted=reported, finished_at=now_utc())
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
