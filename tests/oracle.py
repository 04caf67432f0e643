"""The oracle: a Hypothesis state machine that drives random sequences of source changes (inserts,
updates, deletes, a delete and an insert that keep the count, rows written in one transaction, a
column added or dropped, the configured timestamp column changed), exports, reruns, reconciles,
purges, restores, verifies and tampered objects against a real database and S3 server, each step in
a process time zone of its own (``TZ``; on PostgreSQL the session's zone too, by ``PGTZ``), and
checks after every step what must hold:

(a) **nothing lost**: every live row (written by the user and not deleted or updated by the user
    since) is in the source, or in a complete, intact archive with identical values;
(b) **archives exact**: every complete partition holds exactly the source's rows of its window as of
    its export (a failed export or a refused rerun leaves the earlier one);
(c) **verify truthful**: ``verify`` says OK exactly when (b) holds, its objects are intact and the
    source agrees with it now (or the day was purged and not restored since);
(d) **restore exact**: a restore adds exactly the archive's rows (and, with ``replace``, removes
    exactly the day's rows before); a refused restore changes nothing;
(e) **purges happen**: a day whose archive is the exact copy of its rows, untouched since, is purged
    (an oracle that only checks refusals would pass a purge that refuses everything).

It reads archives with pyarrow, ``json`` and ``csv``, not with the product's readers. A failure
prints the steps that reproduce it (Hypothesis shrinks them). ``tests/e2e/test_oracle.py`` runs it
on PostgreSQL, ``tests/cratedb/test_oracle.py`` on CrateDB; ``make test-deep`` runs it longer, and
with planted bugs that it must find.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError, RestoreRefused
from cratedb_airflow_export.storage import Location
from cratedb_airflow_export.windows import Window

DAYS = [date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5)]
# moments near the day's edges, and where a zone's offset would move them across midnight
MOMENTS = [
    timedelta(0),
    timedelta(minutes=30),
    timedelta(hours=5, minutes=44, seconds=59),
    timedelta(hours=12),
    timedelta(hours=23, minutes=30),
    timedelta(days=1) - timedelta(microseconds=1),
]
OFFSETS = [timedelta(0), timedelta(days=1), timedelta(days=-1), timedelta(hours=6)]  # ts_b - ts_a
DOCS = ["sql null", "json null", "number", "text"]
ZONES = ["UTC", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns", "Asia/Tokyo", "America/Los_Angeles"]
STEP_SECONDS = 120  # a step that takes longer (a purge that loops) fails the run

EPOCH = datetime(1970, 1, 1)
Row = tuple[Any, ...]  # (id, ts_a, ts_b, val, note, tags, doc, extra): timestamps naive UTC, doc canonical JSON


class StepTimeout(Exception):
    pass


@contextmanager
def bounded_step(seconds: int | None = None) -> Iterator[None]:
    """Fail a step that does not end (SIGALRM: the main thread, where pytest runs the test)."""
    seconds = seconds or STEP_SECONDS

    def expire(signum: int, frame: Any) -> None:
        raise StepTimeout(f"the step took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def set_zone(zone: str, session: bool) -> None:
    os.environ["TZ"] = zone
    time.tzset()
    if session:
        os.environ["PGTZ"] = zone  # libpq sets the session's TimeZone: psycopg returns timestamptz in it


def utc_naive(value: Any) -> datetime | None:
    """A timestamp as a file or the database gives it, as a naive UTC datetime (the oracle's own
    conversion: ISO text, epoch milliseconds, aware or naive datetimes; naive is UTC)."""
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, int | float):
        return EPOCH + timedelta(milliseconds=value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def canonical_json(value: Any, *, parsed: bool) -> str | None:
    """A JSON column's value as canonical text; None for SQL NULL, ``"null"`` for a JSON null."""
    if value is None:
        return None
    if not parsed:
        value = json.loads(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# --- the source ------------------------------------------------------------------------------


@dataclass
class Source:
    """The database under test: PostgreSQL or CrateDB (the dialect's DDL and reading)."""

    url: str
    cratedb: bool
    # CrateDB: partitioned by a generated day of ts_a (retention drops whole partitions)
    partitioned: bool = False

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, options="-c TimeZone=UTC" if not self.cratedb else "")

    def create(self, table: str, naive: bool) -> None:
        kind = "TIMESTAMP WITHOUT TIME ZONE" if naive else "TIMESTAMP WITH TIME ZONE"
        doc = "OBJECT(DYNAMIC)" if self.cratedb else "JSON"
        columns = f"id INT, ts_a {kind}, ts_b {kind}, val INT, note TEXT, tags ARRAY(TEXT), doc {doc}"
        if not self.cratedb:
            columns = columns.replace("ARRAY(TEXT)", "TEXT[]")
        with self.connect() as conn:
            if self.cratedb:
                generated = ", day TIMESTAMP WITH TIME ZONE GENERATED ALWAYS AS date_trunc('day', ts_a)"
                partition = " PARTITIONED BY (day)" if self.partitioned else ""
                conn.execute(
                    f"CREATE TABLE {table} ({columns}{generated if self.partitioned else ''}){partition} "
                    "CLUSTERED INTO 2 SHARDS WITH (number_of_replicas = 0)"
                )
            else:
                conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
                conn.execute(f"CREATE TABLE {table} ({columns})")

    def drop(self, table: str) -> None:
        with self.connect() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")

    def refresh(self, conn: psycopg.Connection[Any], table: str) -> None:
        if self.cratedb:
            conn.execute(f"REFRESH TABLE {table}")

    def rows(self, table: str, extra: bool, json_null: bool = True) -> Counter[Row]:
        """The table's rows; without ``json_null`` a JSON null reads as SQL NULL (what a format that
        cannot tell them apart, JSON Lines, keeps of it)."""
        found = self._rows(table, extra)
        if json_null:
            return found
        return Counter({(*r[:6], None if r[6] == "null" else r[6], r[7]): n for r, n in found.items()})

    def _rows(self, table: str, extra: bool) -> Counter[Row]:
        with self.connect() as conn:
            self.refresh(conn, table)
            doc = "doc" if self.cratedb else "doc::text"
            selected = f"id, ts_a, ts_b, val, note, tags, {doc}" + (", extra" if extra else "")
            found = conn.execute(f"SELECT {selected} FROM {table}").fetchall()
        return Counter(self.row(r, extra) for r in found)

    def row(self, values: tuple[Any, ...], extra: bool) -> Row:
        id_, ts_a, ts_b, val, note, tags, doc = values[:7]
        return (
            id_,
            utc_naive(ts_a),
            utc_naive(ts_b),
            val,
            note,
            tuple(tags) if tags is not None else None,
            canonical_json(doc, parsed=self.cratedb),
            values[7] if extra else None,
        )


# --- reading archives (not with the product's readers) --------------------------------------------


def archived_rows(store: Any, bucket: str, keys: list[str], fmt: str) -> Counter[Row]:
    rows: Counter[Row] = Counter()
    for key in keys:
        data = store.read(bucket, key)
        if key.endswith(".gz"):
            data = gzip.decompress(data)
        for record in _records(data, fmt):
            rows[_archived_row(record, fmt)] += 1
    return rows


def _records(data: bytes, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(io.BytesIO(data)).to_pylist()
    elif fmt == "csv":
        for record in csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")):
            yield {k: (None if v == "" else v) for k, v in record.items()}
    else:
        for line in data.decode("utf-8").splitlines():
            if line:
                yield json.loads(line)


def _archived_row(record: dict[str, Any], fmt: str) -> Row:
    tags, doc = record.get("tags"), record.get("doc")
    if isinstance(tags, str):
        tags = json.loads(tags)
    text = fmt in ("parquet", "csv")  # JSON kept as text: a JSON null is the text "null"
    return (
        int(record["id"]),
        utc_naive(record.get("ts_a")),
        utc_naive(record.get("ts_b")),
        None if record.get("val") is None else int(record["val"]),
        record.get("note"),
        tuple(tags) if tags is not None else None,
        canonical_json(doc, parsed=not text),
        record.get("extra"),
    )


# --- the machine ------------------------------------------------------------------------------


@dataclass
class Setting:
    """What a test hands the machine: the source, the store's server, the config's fixed keys."""

    source: Source
    server: Any  # LocalS3 / RemoteS3 / LocalAzurite / LocalFakeGCS: .store(), the package's backend on it
    bucket: str  # bucket or container
    scheme: str = "s3"  # of the targets: s3, az or gs
    engines: tuple[str, ...] = ("stream",)
    formats: tuple[str, ...] = ("jsonl", "csv", "parquet")
    timestamp_types: tuple[bool, ...] = (False, True)  # naive?
    extra: dict[str, Any] = field(default_factory=dict)


SETTING: Setting | None = None  # set by the test before it runs the machine


class ArchiveOracle(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        assert SETTING is not None
        self.setting = SETTING
        self.source = SETTING.source
        self.store = SETTING.server.store()  # the oracle reads the bucket with the store's plain operations
        self.table = f"doc.oracle_{uuid.uuid4().hex[:10]}"
        self.live: Counter[Row] = Counter()
        self.expected: dict[date, Counter[Row]] = {}  # the content of each day's latest export
        self.exported_by: dict[date, str] = {}
        self.schema_at_export: dict[date, int] = {}
        self.dirty: dict[date, bool] = {}  # touched since its export (or restore)
        self.schema = 0  # bumped by every column added or dropped
        self.ts = "ts_a"
        self.extra = False
        self.next_id = 1
        self.fmt = "jsonl"
        self.engine = "stream"
        self.naive = False
        self.zone = "UTC"
        self.ready = False
        self.restored_days: set[date] = set()  # restored since their last export
        self.purged = 0  # units purged in this run (ORACLE_TRACE)
        self.trace: list[str] = []  # the zone of each step that had one (ORACLE_TRACE=1 prints the count)

    # --- set up, config, zones -----------------------------------------------------------------

    @initialize(data=st.data())
    def set_up(self, data: st.DataObject) -> None:
        self.naive = data.draw(st.sampled_from(self.setting.timestamp_types), label="naive timestamps")
        self.engine = data.draw(st.sampled_from(self.setting.engines), label="engine")
        formats = ("jsonl",) if self.engine == "copy" else self.setting.formats
        self.fmt = data.draw(st.sampled_from(formats), label="format")
        self.source.create(self.table, self.naive)
        self.ready = True
        self.seed(data)

    def seed(self, data: st.DataObject) -> None:
        """Rows in every day to start from, written in one transaction (like a bulk load)."""
        drawn = data.draw(
            st.lists(
                st.tuples(
                    st.sampled_from(DAYS), st.sampled_from(MOMENTS), st.sampled_from(OFFSETS), st.sampled_from(DOCS)
                ),
                min_size=1,
                max_size=9,
            ),
            label="rows to start from",
        )
        rows = []
        for day, moment, offset, doc in drawn:
            rows.append(self.values(self.next_id, datetime(day.year, day.month, day.day) + moment, offset, doc))
            self.next_id += 1
        self.write(rows)

    def teardown(self) -> None:  # the process's zone is put back by run(), after the last example
        if os.environ.get("ORACLE_TRACE"):
            days = [d.isoformat() for d in sorted(self.expected)]
            print(
                f"oracle: {len(self.trace)} steps, {sum(self.live.values())} live rows, days exported {days}, "
                f"{self.purged} purged, {len(self.restored_days)} restored"
            )
        if self.ready:
            self.source.drop(self.table)

    def cfg(self) -> TableExport:
        entry = {
            "table": self.table,
            "timestamp_column": self.ts,
            "engine": self.engine,
            "format": self.fmt,
            "target": f"{self.setting.scheme}://{self.setting.bucket}/lake",
            "retain_days": 1,
            **({} if self.engine == "copy" else {"compression": "gzip" if self.fmt != "parquet" else "zstd"}),
            **self.setting.extra,
        }
        return TableExport.model_validate(entry)

    def enter(self, zone: str) -> None:
        self.trace.append(zone)
        self.zone = zone
        set_zone(zone, session=not self.source.cratedb)

    # --- what the source holds ---------------------------------------------------------------

    def db(self) -> Counter[Row]:
        # JSON Lines writes a JSON null and SQL NULL alike (docs/engines-and-formats.md): compared as one
        return self.source.rows(self.table, self.extra, json_null=self.fmt != "jsonl")

    def day_of(self, row: Row, column: str | None = None) -> date | None:
        moment = row[1] if (column or self.ts) == "ts_a" else row[2]
        return None if moment is None else moment.date()

    def window_rows(self, rows: Counter[Row], day: date, column: str | None = None) -> Counter[Row]:
        return Counter({r: n for r, n in rows.items() if self.day_of(r, column) == day})

    def user(self, statement: str, params: tuple[Any, ...] = (), *, days: set[date] = frozenset()) -> None:  # type: ignore[assignment]
        """A change by the user: the live rows follow the source; ``days`` (and the days of every
        row changed) are touched."""
        before = self.db()
        with self.source.connect() as conn:
            conn.execute(statement, params)
        after = self.db()
        self.live -= before - after
        self.live += after - before
        touched = set(days)
        for row in (before - after) + (after - before):
            touched |= {self.day_of(row, "ts_a"), self.day_of(row, "ts_b")}
        for day in touched:
            self.dirty[day] = True

    def values(self, row_id: int, moment: datetime, offset: timedelta, doc: str) -> tuple[Any, ...]:
        """A new row's values as bind parameters; ``doc``: "sql null", "json null" (PostgreSQL's
        JSON holds it; CrateDB's objects have no such value: SQL NULL there), "number", "text"."""
        ts_a = moment if self.naive else moment.replace(tzinfo=timezone.utc)
        note = f"n{row_id}"
        tags = [note, None] if row_id % 2 else [note]
        value: Any = {"number": {"n": row_id}, "text": {"t": note}}.get(doc)  # a key a type (CrateDB's objects)
        if self.source.cratedb:
            from psycopg.types.json import Json

            bound: Any = None if value is None else Json(value)
        else:
            bound = "null" if doc == "json null" else None if value is None else json.dumps(value)
        row = (row_id, ts_a, ts_a + offset, row_id * 7, note, tags, bound)
        return (*row, f"x{row_id}") if self.extra else row

    def insert_statement(self) -> str:
        names = "id, ts_a, ts_b, val, note, tags, doc" + (", extra" if self.extra else "")
        marks = ["%s"] * (8 if self.extra else 7)
        if not self.source.cratedb:
            marks[6] = "%s::json"
        return f"INSERT INTO {self.table} ({names}) VALUES ({', '.join(marks)})"

    def ids(self) -> list[int]:
        return sorted({r[0] for r in self.db()})

    # --- the user -------------------------------------------------------------------------------

    @rule(
        zone=st.sampled_from(ZONES),
        day=st.sampled_from(DAYS),
        moments=st.lists(st.tuples(st.sampled_from(MOMENTS), st.sampled_from(OFFSETS)), min_size=1, max_size=4),
        doc=st.sampled_from(DOCS),
    )
    def insert(self, zone: str, day: date, moments: list[tuple[timedelta, timedelta]], doc: str) -> None:
        """Rows written in one transaction (one row version for all on PostgreSQL)."""
        self.enter(zone)
        start = datetime(day.year, day.month, day.day)
        rows = []
        for moment, offset in moments:
            rows.append(self.values(self.next_id, start + moment, offset, doc))
            self.next_id += 1
        self.write(rows)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        before = self.db()
        with self.source.connect() as conn, conn.transaction() if not self.source.cratedb else _nothing():
            conn.cursor().executemany(self.insert_statement(), rows)
        after = self.db()
        assert sum((after - before).values()) == len(rows)
        self.live += after - before
        for row in after - before:
            for column in ("ts_a", "ts_b"):
                self.dirty[self.day_of(row, column)] = True  # type: ignore[index]

    @precondition(lambda self: bool(self.live))
    @rule(
        zone=st.sampled_from(ZONES),
        pick=st.integers(0, 10**6),
        change=st.sampled_from(["val", "move", "delete"]),
        focus=st.booleans(),
    )
    def change(self, zone: str, pick: int, change: str, focus: bool) -> None:
        """One row (``focus``: a row of a day restored since its export, where bugs hide) updated,
        moved into the next day, or deleted."""
        rows = self.db()
        restored = {r[0] for r in rows if self.day_of(r) in self.restored_days}
        ids = sorted(restored) if focus and restored else sorted({r[0] for r in rows})
        if not ids:
            return
        self.enter(zone)
        row_id = ids[pick % len(ids)]
        if change == "val":
            self.user(f"UPDATE {self.table} SET val = val + 1 WHERE id = %s", (row_id,))
        elif change == "move" and not self.source.cratedb:  # into another day
            self.user(f"UPDATE {self.table} SET ts_a = ts_a + INTERVAL '1 day' WHERE id = %s", (row_id,))
        elif change == "move":  # CrateDB does not move a row between partitions by UPDATE: written anew
            self.user(
                f"INSERT INTO {self.table} (id, ts_a, ts_b, val, note, tags, doc{', extra' if self.extra else ''}) "
                f"SELECT id, ts_a + INTERVAL '1 day', ts_b, val, note, tags, doc{', extra' if self.extra else ''} "
                f"FROM {self.table} WHERE id = %s",
                (row_id,),
            )
            self.user(
                f"DELETE FROM {self.table} WHERE id = %s AND ts_a < (SELECT max(ts_a) FROM {self.table} WHERE id = %s)",
                (row_id, row_id),
            )
        else:
            self.user(f"DELETE FROM {self.table} WHERE id = %s", (row_id,))

    @precondition(lambda self: bool(self.live))
    @rule(zone=st.sampled_from(ZONES), pick=st.integers(0, 10**6))
    def replace_keeping_the_count(self, zone: str, pick: int) -> None:
        """One row deleted and an identical one inserted: the count and the values stay, the row's
        version does not (the archive is still an exact copy, but nothing can prove it was not touched)."""
        rows = sorted(self.db(), key=repr)
        if not rows:
            return
        self.enter(zone)
        row = rows[pick % len(rows)]
        days = {self.day_of(row, "ts_a"), self.day_of(row, "ts_b")}
        doc = "doc" if self.source.cratedb else "doc::text"
        selected = f"id, ts_a, ts_b, val, note, tags, {doc}" + (", extra" if self.extra else "")
        with self.source.connect() as conn:
            self.source.refresh(conn, self.table)
            found = conn.execute(f"SELECT {selected} FROM {self.table} WHERE id = %s LIMIT 1", (row[0],)).fetchone()
        if found is None:
            return
        values = list(found)
        if self.source.cratedb and values[6] is not None:
            from psycopg.types.json import Json

            values[6] = Json(values[6])
        self.user(f"DELETE FROM {self.table} WHERE id = %s", (row[0],), days=days)  # type: ignore[arg-type]
        self.user(self.insert_statement(), tuple(values), days=days)  # type: ignore[arg-type]

    @rule(zone=st.sampled_from(ZONES))
    def add_or_drop_a_column(self, zone: str) -> None:
        self.enter(zone)
        statement = "DROP COLUMN extra" if self.extra else "ADD COLUMN extra TEXT"
        before = self.db()
        with self.source.connect() as conn:
            conn.execute(f"ALTER TABLE {self.table} {statement}")
        self.extra = not self.extra
        after = self.db()
        self.live -= before - after
        self.live += after - before
        self.schema += 1
        for day in DAYS:
            self.dirty[day] = True

    @rule()
    def switch_the_timestamp_column(self) -> None:
        self.ts = "ts_b" if self.ts == "ts_a" else "ts_a"

    # --- the product ------------------------------------------------------------------------------

    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS))
    def export(self, zone: str, day: date) -> None:
        from cratedb_airflow_export.export import run_export

        self.enter(zone)
        before = self.db()
        try:
            with bounded_step():
                run_export(self.cfg(), Window.for_day(day))
        except ExportError as exc:
            assert "PartitionPurged" in str(exc), exc  # the only refusal this machine can meet
            assert self.purged_not_restored(day), f"{day} refused as purged: {exc}"
        else:
            self.exported(day, before)
        assert self.db() == before, "an export changed the source"

    @rule(zone=st.sampled_from(ZONES))
    def backfill(self, zone: str) -> None:
        """Every day exported, as a backfill (or the Trigger form with a range of days) does."""
        for day in DAYS:
            self.export(zone, day)

    @rule(zone=st.sampled_from(ZONES))
    def nightly(self, zone: str) -> None:
        """What a deployment does every night: every day exported, then retention purges them all."""
        self.backfill(zone)
        self.purge(zone, DAYS[-1] + timedelta(days=1))

    def exported(self, day: date, rows: Counter[Row]) -> None:
        self.restored_days.discard(day)
        self.expected[day] = self.window_rows(rows, day)
        self.exported_by[day] = self.ts
        self.schema_at_export[day] = self.schema
        self.dirty[day] = False

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES))
    def reconcile(self, zone: str) -> None:
        from cratedb_airflow_export.reconcile import reconcile

        self.enter(zone)
        before = self.db()
        with bounded_step():
            recounts = reconcile(self.cfg(), list(DAYS))
        for recount in recounts:
            if recount.state == "re-exported":
                self.exported(recount.day, before)
        assert self.db() == before, "reconcile changed the source"

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES), before=st.sampled_from([*DAYS[1:], DAYS[-1] + timedelta(days=1)]))
    def purge(self, zone: str, before: date) -> None:
        from cratedb_airflow_export.retention import purge

        self.enter(zone)
        rows = self.db()
        due = {day: self.purge_is_due(day, rows) for day in DAYS if day < before}
        with bounded_step():
            outcomes = purge(self.cfg(), before)
        self.purged += sum(o.state == "purged" for o in outcomes)
        after = self.db()
        assert not after - rows, "a purge added or changed rows"
        for row in rows - after:
            assert (self.day_of(row) or before) < before, f"a purge deleted {row}, of a day it keeps"
        for day, must in due.items():
            if must:
                assert not self.window_rows(after, day), (
                    f"{day} was not purged although its archive is the exact copy of its untouched rows: "
                    f"{[o.describe(self.table) for o in outcomes]}"
                )

    def purge_is_due(self, day: date, rows: Counter[Row]) -> bool:
        """Liveness: the day's archive is the exact, intact copy of its rows, nothing touched them
        since, and they were chosen as the configuration chooses them now."""
        holding = self.window_rows(rows, day)
        return (
            bool(holding)
            and day in self.expected
            and not self.dirty.get(day, True)
            and self.exported_by.get(day) == self.ts
            and self.schema_at_export.get(day) == self.schema
            and self.expected[day] == holding
            and self.partition(day).complete
            and not (self.source.cratedb and self.source.partitioned and self.shares_partition(day, rows))
        )

    def shares_partition(self, day: date, rows: Counter[Row]) -> bool:
        """CrateDB partitions by ts_a's day: by ts_b, a partition holds rows of several days, each of
        which must check out (the oracle does not predict that)."""
        return self.ts != "ts_a"

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS), replace=st.booleans(), focus=st.booleans())
    def restore(self, zone: str, day: date, replace: bool, focus: bool) -> None:
        """The day's archive back into the table (``focus``: a day whose rows are gone, as after a purge)."""
        from cratedb_airflow_export.restore import restore

        self.enter(zone)
        rows = self.db()
        gone = [d for d in sorted(self.expected) if not self.window_rows(rows, d)]
        if focus and gone:
            day = gone[day.toordinal() % len(gone)]
        archive = self.partition(day)
        try:
            with bounded_step():
                restore(self.cfg(), [Window.for_day(day)], replace=replace)
        except ExportError as exc:
            assert "RestoreRefused" in str(exc), exc
            assert self.db() == rows, f"a refused restore changed the source: {exc}"
            return
        except RestoreRefused:
            assert self.db() == rows
            return
        after = self.db()
        removed = self.window_rows(rows, day) if replace else Counter()  # replace: the day's rows go first
        assert after == rows - removed + archive.rows, (
            f"after the restore the source holds {sorted(after - rows, key=repr)} more and "
            f"{sorted(rows - after, key=repr)} fewer rows; the archive holds {sorted(archive.rows, key=repr)}, "
            f"the day held {sorted(removed, key=repr)}"
        )
        missing = self.live - rows  # live rows only the archive held: back in the source
        self.live -= removed
        self.live += archive.rows - (archive.rows & missing)
        self.dirty[day] = False  # the restore's baseline: the rows as restored
        self.restored_days.add(day)

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS))
    def verify(self, zone: str, day: date) -> None:
        from cratedb_airflow_export.connections import from_environment
        from cratedb_airflow_export.source import connect
        from cratedb_airflow_export.verify import verify_partition

        self.enter(zone)
        cfg = self.cfg()
        with bounded_step(), connect(from_environment(cfg).database) as conn, conn.cursor() as cursor:
            if self.source.cratedb:
                cursor.execute(f"REFRESH TABLE {self.table}")
            report = verify_partition(self.store, cursor, cfg, Window.for_day(day))
        archive = self.partition(day)
        source_agrees = (
            self.purged_not_restored(day) or sum(self.window_rows(self.db(), day).values()) == archive.manifest_rows
        )
        exact = archive.complete and day in self.expected and archive.rows == self.expected[day]
        assert report.ok == (exact and source_agrees), (
            f"verify said {'OK' if report.ok else 'FAILED'} ({report.problems}); the archive is "
            f"{'exact' if exact else 'not exact'}, the source {'agrees' if source_agrees else 'does not agree'}"
        )

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS), how=st.sampled_from(["flip", "delete"]))
    def tamper(self, zone: str, day: date, how: str) -> None:
        """An object of a complete partition altered or deleted: verify fails, and no purge deletes the
        day's rows while it is so; then the object is put back as it was."""
        from cratedb_airflow_export.connections import from_environment
        from cratedb_airflow_export.retention import purge
        from cratedb_airflow_export.source import connect
        from cratedb_airflow_export.verify import verify_partition

        archive = self.partition(day)
        if not archive.complete or not archive.data_keys:
            return
        self.enter(zone)
        key = archive.data_keys[0]
        original = self.store.read(self.setting.bucket, key)
        if how == "delete":
            self.store.delete(self.setting.bucket, [key])
        else:
            self.put(key, original[:-1] + bytes([original[-1] ^ 1]))
        try:
            rows = self.db()
            cfg = self.cfg()
            with bounded_step(), connect(from_environment(cfg).database) as conn, conn.cursor() as cursor:
                report = verify_partition(self.store, cursor, cfg, Window.for_day(day))
                assert not report.ok, f"verify said OK of {key} {how}ped"
                purge(self.cfg(), day + timedelta(days=1))
            after = self.db()
            assert self.window_rows(after, day) == self.window_rows(rows, day), f"a purge deleted rows of {day}"
        finally:
            self.put(key, original)

    def put(self, key: str, data: bytes) -> None:
        self.store.put(self.setting.bucket, key, data)

    # --- the invariants --------------------------------------------------------------------------

    @invariant()
    def nothing_lost(self) -> None:
        """(a) every live row is in the source or in a complete, intact archive, values identical."""
        if not self.ready:
            return
        only_archived = self.live - self.db()
        if not only_archived:
            return
        archived: Counter[Row] = Counter()
        for day in DAYS:
            archive = self.partition(day)
            if archive.complete:
                archived += archive.rows
        lost = only_archived - archived
        assert not lost, f"rows neither in the source nor in a complete archive: {sorted(lost, key=repr)}"

    @invariant()
    def archives_exact(self) -> None:
        """(b) every complete partition holds exactly its window's rows as of its export."""
        if not self.ready:
            return
        for day in DAYS:
            archive = self.partition(day)
            if archive.complete:
                assert day in self.expected, f"{day}: a complete partition no export of this run published"
                assert archive.rows == self.expected[day], (
                    f"{day}: the partition holds {sorted(archive.rows, key=repr)}, its export read "
                    f"{sorted(self.expected[day], key=repr)}"
                )

    # --- the bucket, read by the oracle ------------------------------------------------------------

    def partition(self, day: date) -> Archive:
        prefix = f"lake/{self.table}/dt={day.isoformat()}/"
        listed = self.store.list_objects(Location(self.setting.bucket, prefix.rstrip("/"), self.setting.scheme))
        names = {o.key[len(prefix) :]: o.key for o in listed}
        complete = "_SUCCESS" in names and "_manifest.json" in names
        data_keys = sorted(k for n, k in names.items() if not n.startswith(("_", ".")))
        manifest_rows = None
        if "_manifest.json" in names:
            manifest = json.loads(self.store.read(self.setting.bucket, names["_manifest.json"]))
            manifest_rows = manifest["rows"]
        rows = archived_rows(self.store, self.setting.bucket, data_keys, self.fmt) if complete else Counter()
        return Archive(complete, data_keys, rows, manifest_rows, names)

    def purged_not_restored(self, day: date) -> bool:
        names = self.partition(day).names
        if "_PURGED.json" not in names:
            return False
        if "_RESTORED.json" not in names:
            return True
        purged = json.loads(self.store.read(self.setting.bucket, names["_PURGED.json"]))
        restored = json.loads(self.store.read(self.setting.bucket, names["_RESTORED.json"]))
        return bool(restored["restored_at"] < purged["started_at"])


@dataclass(frozen=True)
class Archive:
    complete: bool
    data_keys: list[str]
    rows: Counter[Row]
    manifest_rows: int | None
    names: dict[str, str]


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def run(setting: Setting, machine: type[ArchiveOracle], settings: Any, plant: Callable[[], Any] | None = None) -> None:
    """Run ``machine`` on ``setting`` (``plant``: a context manager that plants a bug meanwhile)."""
    from hypothesis.stateful import run_state_machine_as_test

    global SETTING
    SETTING = setting
    zone, session_zone = os.environ.get("TZ"), os.environ.get("PGTZ")
    try:
        if plant is None:
            run_state_machine_as_test(machine, settings=settings)
        else:
            with plant():
                run_state_machine_as_test(machine, settings=settings)
    finally:
        SETTING = None
        for name, value in (("TZ", zone), ("PGTZ", session_zone)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        time.tzset()


# --- Iceberg ------------------------------------------------------------------------------------


class IcebergOracle(ArchiveOracle):
    """The same source changes, exports into an Iceberg table (``format: iceberg``), verify and
    restore (into a table of its own), checking after every step that the table's current snapshot
    holds exactly each exported day's rows, and after every export that **no snapshot** of the
    table's history shows a day otherwise than as one of its commits left it (never empty or half)."""

    catalog_path: str = ""  # set by the test: the SQL catalog's SQLite file

    @initialize(data=st.data())
    def set_up(self, data: st.DataObject) -> None:
        self.naive = data.draw(st.sampled_from(self.setting.timestamp_types), label="naive timestamps")
        self.fmt, self.engine = "iceberg", "stream"
        self.commits: list[tuple[int, date, Counter[Row]]] = []  # (snapshot, day, its rows) of each export
        self.source.create(self.table, self.naive)
        self.ready = True
        self.seed(data)

    def db(self) -> Counter[Row]:
        return self.source.rows(self.table, self.extra)

    def cfg(self) -> TableExport:
        entry = {
            "table": self.table,
            "timestamp_column": self.ts,
            "engine": "stream",
            "format": "iceberg",
            "target": f"{self.setting.scheme}://{self.setting.bucket}/lake",
        }
        return TableExport.model_validate(entry)

    def iceberg(self) -> Any:
        """The table as an outside reader sees it: pyiceberg's own file IO on the store."""
        from pyiceberg.catalog.sql import SqlCatalog

        from tests.helpers import STORE_SCHEMES, Lake

        kind = {scheme: kind for kind, scheme in STORE_SCHEMES.items()}[self.setting.scheme]
        properties = Lake(kind, self.setting.server, self.setting.bucket).reader_properties()
        catalog = SqlCatalog("iceberg_default", uri=f"sqlite:///{SETTING_CATALOG[0]}", **properties)
        return catalog.load_table(self.table)

    def day_rows(self, table: Any, day: date, snapshot_id: int | None = None) -> Counter[Row]:
        from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

        start, end = Window.for_day(day).bounds(naive=self.naive)
        condition = And(
            GreaterThanOrEqual(term=self.ts, value=start.isoformat()), LessThan(term=self.ts, value=end.isoformat())
        )
        read = table.scan(row_filter=condition, snapshot_id=snapshot_id).to_arrow().to_pylist()
        return Counter(_archived_row(r, "parquet") for r in read)

    # not for Iceberg tables: retention, reconcile and tampering with a partition folder
    def purge(self) -> None:  # type: ignore[override]
        pass

    def reconcile(self) -> None:  # type: ignore[override]
        pass

    def nightly(self) -> None:  # type: ignore[override]
        pass

    def tamper(self) -> None:  # type: ignore[override]
        pass

    def nothing_lost(self) -> None:  # type: ignore[override]
        pass  # nothing is ever deleted from the source here

    def switch_the_timestamp_column(self) -> None:  # type: ignore[override]
        pass  # an Iceberg table is partitioned by one column's day

    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS))
    def export(self, zone: str, day: date) -> None:
        from cratedb_airflow_export.export import run_export

        self.enter(zone)
        before = self.db()
        with bounded_step():
            result = run_export(self.cfg(), Window.for_day(day))
        assert result.committed is not None
        content = self.window_rows(before, day)
        self.expected[day] = content
        self.commits.append((result.committed.snapshot_id, day, content))
        self.history_exact()

    def history_exact(self) -> None:
        """Every snapshot of the table's history shows each committed day as its latest commit up to
        that snapshot left it."""
        table = self.iceberg()
        ours = {snapshot: (day, content) for snapshot, day, content in self.commits}
        state: dict[date, Counter[Row]] = {}
        for snapshot in sorted(table.snapshots(), key=lambda s: s.sequence_number):
            if snapshot.snapshot_id in ours:
                day, content = ours[snapshot.snapshot_id]
                state[day] = content
            for day, content in state.items():
                seen = self.day_rows(table, day, snapshot.snapshot_id)
                assert seen == content, (
                    f"snapshot {snapshot.snapshot_id} ({snapshot.summary.operation if snapshot.summary else '?'}) "
                    f"shows {day} as {sorted(seen, key=repr)}, its commit wrote {sorted(content, key=repr)}"
                )

    @invariant()
    def archives_exact(self) -> None:
        if not self.ready or not self.expected:
            return
        table = self.iceberg()
        for day, content in self.expected.items():
            assert self.day_rows(table, day) == content, f"{day}: the table's current snapshot is not its last export"

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS))
    def verify(self, zone: str, day: date) -> None:
        from cratedb_airflow_export.connections import from_environment
        from cratedb_airflow_export.source import connect
        from cratedb_airflow_export.verify import verify_iceberg_day

        self.enter(zone)
        cfg = self.cfg()
        connections = from_environment(cfg)
        assert connections.catalog is not None
        with bounded_step(), connect(connections.database) as conn, conn.cursor() as cursor:
            report = verify_iceberg_day(self.store, connections.catalog, cursor, cfg, Window.for_day(day))
        source_agrees = day in self.expected and sum(self.window_rows(self.db(), day).values()) == sum(
            self.expected[day].values()
        )
        assert report.ok == (day in self.expected and source_agrees), (report.problems, report.facts)

    @precondition(lambda self: bool(self.expected))
    @rule(zone=st.sampled_from(ZONES), day=st.sampled_from(DAYS), replace=st.just(False))
    def restore(self, zone: str, day: date, replace: bool) -> None:
        """Into a table of its own: exactly the day's rows of the table's current snapshot."""
        from cratedb_airflow_export.restore import restore

        if day not in self.expected:
            return
        self.enter(zone)
        scratch = f"{self.table}_back_{uuid.uuid4().hex[:6]}"
        self.source.create(scratch, self.naive)
        try:
            if self.extra:
                with self.source.connect() as conn:
                    conn.execute(f"ALTER TABLE {scratch} ADD COLUMN extra TEXT")
            with bounded_step():
                restore(self.cfg(), [Window.for_day(day)], into=scratch)
            back = self.source.rows(scratch, self.extra)
            expected = self.expected[day]
            if not self.extra:  # a column the table had when the day was exported, and dropped since
                expected = Counter({(*r[:7], None): n for r, n in expected.items()})
            assert back == expected, f"restored {sorted(back, key=repr)}, the day holds {sorted(expected, key=repr)}"
        except ExportError as exc:
            assert "RestoreRefused" in str(exc) and "does not have" in str(exc), exc  # a column dropped since
        finally:
            self.source.drop(scratch)


SETTING_CATALOG: list[str] = [""]  # the Iceberg oracle's catalog file
