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

Every wait is bounded: connecting (``connect_timeout``), a dead peer (TCP keepalives and
``tcp_user_timeout``), a statement on the server (``statement_timeout`` in the startup options,
CrateDB >= 5.4 and PostgreSQL), and a server that stalls (accepts, then sends nothing): every
statement runs under :func:`bounded`, which shuts the connection's socket down when its time is up,
so the waiting call fails at once instead of hanging the task.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import postgres
from psycopg.adapt import Loader
from psycopg.types.array import ListDumper

from cratedb_airflow_export import sql
from cratedb_airflow_export.errors import SourceError, SourceStalled
from cratedb_airflow_export.schema import OBJECT_TYPES

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import SourceParams
    from cratedb_airflow_export.windows import TimeRange

log = logging.getLogger(__name__)

POINT_OID = 600


CONNECT_TIMEOUT_SECONDS = 30
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
TCP_USER_TIMEOUT_MS = 60_000  # unacknowledged data for this long: the peer is gone


@dataclass(frozen=True)
class Dialect:
    name: str
    needs_refresh: bool  # only refreshed rows are visible: REFRESH TABLE before reading a window
    copy_binary: bool  # COPY ... TO STDOUT (FORMAT binary): the ADBC fast path
    copy_to_directory: bool  # COPY ... TO DIRECTORY 's3://...': the copy engine
    copy_from_uri: bool  # COPY ... FROM 's3://...': restore by the database itself
    # types a SELECT reads rounded from the column store: read from the stored document instead
    # (``_doc['c']``), which holds the value as written and is what COPY TO writes
    document_types: frozenset[str] = frozenset()
    # a row's version, which an UPDATE raises: summed over a window, a marker of changed rows that
    # count(*) does not see (CrateDB: the shard's sequence number; PostgreSQL: the inserting transaction)
    row_version: str = "xmin::text::bigint"
    # information_schema.columns' expression for an object column's policy (strict, dynamic, ignored)
    column_policy: str = "NULL"
    # what tells a table from another created under the same name later: "oid" (PostgreSQL's
    # pg_class) or "shards" (CrateDB: the UUIDs of the indices holding the rows, from sys.shards)
    identity: str = "oid"
    # statements inside BEGIN ... COMMIT, and a lock that keeps writers out until the end of one
    transactions: bool = True
    # the cursor path asks for results in the binary format where every column allows it
    # (readers.BINARY_OIDS): PostgreSQL's cursor path stays on text, where psycopg's own loaders
    # name what Arrow cannot hold (infinity, BC); it normally reads through ADBC anyway
    binary_results: bool = False
    # several cursors over parts of the window read faster than one: CrateDB runs a cursor's query
    # as it is fetched, on about one core; PostgreSQL computes a WITH HOLD cursor whole when it is
    # declared (autocommit), so reading it is the client's work alone, which one connection does
    # fastest (2,000,000 rows, Parquet: 814,000 rows/s on 1 connection, 515,000 on 4)
    parallel_cursors: bool = False
    # a SELECT with a LIMIT runs as query-then-fetch: row ids first, then the rows fetched in id
    # order, read from the stored documents sequentially (CrateDB; a plain SELECT decompresses a
    # block of stored documents for every row it reads: 63% of CrateDB's CPU on the tutorial table)
    query_then_fetch: bool = False

    def __str__(self) -> str:
        return self.name


CRATEDB = Dialect(
    "CrateDB",
    needs_refresh=True,
    copy_binary=False,
    copy_to_directory=True,
    copy_from_uri=True,
    document_types=frozenset({"geo_point", "geo_point_array"}),
    row_version="_seq_no",
    column_policy="column_details['policy']",
    identity="shards",
    transactions=False,
    binary_results=True,
    parallel_cursors=True,
    query_then_fetch=True,
)
POSTGRESQL = Dialect("PostgreSQL", needs_refresh=False, copy_binary=True, copy_to_directory=False, copy_from_uri=False)

# CrateDB before 6.2.10, and 6.3.0 to 6.3.3, never answer a DECLARE whose query fails as it starts
# (an invalid regular expression, say): the client waits for ever. Fixed in 6.2.10, 6.3.4 and 6.4.0
# (crate/crate DeclarePlan; seen on 5.10.16).
DECLARE_ANSWERS_FAILURES = ((6, 2, 10), (6, 3, 4))


@dataclass(frozen=True)
class WindowState:
    """``count(*)`` of a window and its change marker (``sum`` of the rows' versions, as text with the
    version's name: ``sum(_seq_no)=1234``). Equal markers: no row of the window was updated between."""

    count: int
    marker: str
    table_id: str | None = None  # table_identity(), where asked for (``identify``)


@dataclass(frozen=True)
class SourceCounts:
    """``count(*)`` over the window after the export read its last row (the decisive one), and while
    it read (None: no count ran then); ``marker``: the window's change marker as the export started
    to read it (where a count ran then; else after), so that a row updated during the export makes a
    later recount differ."""

    after: int
    while_reading: int | None = None
    marker: str | None = None
    table_id: str | None = None  # the table's identity after the last row was read (table_identity)

    @property
    def settled(self) -> bool:
        """Whether nothing changed in the window while it was exported (as far as the counts see)."""
        return self.while_reading is None or self.while_reading == self.after


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """``(6, 4, 3)`` from ``CrateDB 6.4.3 (built ...)``; None when the text names no CrateDB version."""
    match = re.match(r"CrateDB (\d+)\.(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


@dataclass(frozen=True)
class SourceInfo:
    dialect: Dialect
    columns: dict[str, str]  # name -> data_type, in table order (CrateDB: object sub-columns as obj['x'])
    timestamp_type: str
    version: tuple[int, int, int] | None = None  # CrateDB's; None for PostgreSQL
    partition_columns: tuple[str, ...] = ()  # CrateDB's PARTITIONED BY
    not_null: frozenset[str] = frozenset()  # columns that never hold NULL (NOT NULL, primary key)
    policies: Mapping[str, str] = field(default_factory=dict)  # object column -> its policy (CrateDB)
    # column -> its number in the catalog (pg_attribute.attnum): a column dropped and added again
    # under the same name gets a new one
    column_ids: Mapping[str, int] = field(default_factory=dict)
    processors: int | None = None  # CrateDB: the cluster's processors (sys.nodes); None: not known
    heap_bytes: int | None = None  # CrateDB: the smallest node's heap (sys.nodes); None: not known

    @property
    def naive_timestamps(self) -> bool:
        """TIMESTAMP WITHOUT TIME ZONE: the window bounds are bound as naive UTC values."""
        return self.timestamp_type in {"timestamp without time zone", "timestamp"}

    @property
    def top_level(self) -> list[str]:
        """The table's own columns, without object sub-columns (CrateDB names never hold '[')."""
        return [name for name in self.columns if "[" not in name]

    def reading(self, cfg: TableExport) -> sql.Reading:
        """What the ``stream`` engine selects: :func:`sql.read_columns`, with the columns of
        :attr:`Dialect.document_types` read from the stored document (every column then named)."""
        wanted = sql.read_columns(cfg)
        names = wanted if wanted is not None else self.top_level
        stored = frozenset(n for n in names if self.columns.get(n, "").lower() in self.dialect.document_types)
        if not stored:
            return sql.Reading(tuple(wanted) if wanted is not None else None)
        return sql.Reading(tuple(names), stored)

    @property
    def copy_follows_bucket_region(self) -> bool:
        """CrateDB before 6.3 runs ``COPY ... s3://`` on the AWS SDK v1 with global bucket access:
        once the S3 server names the bucket's region, every request goes to AWS's endpoint for that
        region instead of the URI's host (seen on 5.10.16). 6.3 moved to OpenDAL."""
        return self.dialect is CRATEDB and self.version is not None and self.version < (6, 3, 0)

    @property
    def declare_may_hang(self) -> bool:
        """Whether a DECLARE whose query fails as it starts may never answer (see
        :data:`DECLARE_ANSWERS_FAILURES`); an unknown CrateDB version counts as affected."""
        if self.dialect is not CRATEDB:
            return False
        fixed_in_6_2, fixed_in_6_3 = DECLARE_ANSWERS_FAILURES
        version = self.version
        return version is None or version < fixed_in_6_2 or (6, 3, 0) <= version < fixed_in_6_3


class PointLoader(Loader):
    """``(x,y)`` -> ``[x, y]``."""

    def load(self, data: Any) -> list[float]:
        x, y = bytes(data).decode().strip("()").split(",")
        return [float(x), float(y)]


class TextArrayDumper(ListDumper):
    """:class:`~.sql.TextArray` as ``text[]`` (OID 1009), its elements as ``text``: CrateDB reads an
    untyped parameter as one string (docs/cratedb.md)."""

    oid = postgres.types["text"].array_oid
    element_oid = postgres.types["text"].oid


def bounded_params(params: SourceParams, statement_seconds: float) -> dict[str, Any]:
    """``params`` as psycopg keyword arguments, with the bounds above as defaults (what the
    connection itself sets wins)."""
    options = {
        "connect_timeout": str(CONNECT_TIMEOUT_SECONDS),
        **KEEPALIVES,
        "tcp_user_timeout": str(TCP_USER_TIMEOUT_MS),
        "options": f"-c statement_timeout={int(statement_seconds * 1000)}",
    }
    return {**options, **params.kwargs()}


def connect(params: SourceParams, statement_seconds: float = 3600) -> psycopg.Connection[Any]:
    """An autocommit psycopg connection to the source; statements end on the server after
    ``statement_seconds``."""
    conn = psycopg.connect(**bounded_params(params, statement_seconds), autocommit=True)
    conn.adapters.register_loader(POINT_OID, PointLoader)
    conn.adapters.register_dumper(sql.TextArray, TextArrayDumper)
    return conn


def shut_down(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down: a call waiting on it (in any thread) fails at once."""
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except (OSError, psycopg.Error):  # already closed
        pass


@contextmanager
def bounded(conn: psycopg.Connection[Any], seconds: float, what: str) -> Iterator[None]:
    """Fail what runs inside if it takes longer than ``seconds`` on ``conn``: a timer shuts the
    socket down, and the failure becomes :class:`SourceStalled` saying what stalled."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        shut_down(conn)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if fired.is_set():
            raise SourceStalled(f"the source did not answer for {seconds:g} s while {what}") from None
        raise
    finally:
        timer.cancel()
    if fired.is_set():
        raise SourceStalled(f"the source did not answer for {seconds:g} s while {what}")


def execute(cursor: psycopg.Cursor[Any], statement: sql.Statement, seconds: float) -> psycopg.Cursor[Any]:
    """Execute one statement within ``seconds``, logging its wire text with secrets redacted."""
    log.info("Running: %s", statement.describe())
    with bounded(cursor.connection, seconds, f"running {statement.wire_sql.split(' ', 1)[0]}"):
        cursor.execute(statement.sql, statement.bind())
    return cursor


def _one(cursor: psycopg.Cursor[Any], statement: sql.Statement, seconds: float) -> Any:
    row = execute(cursor, statement, seconds).fetchone()
    return None if row is None else row[0]


def check_table(cursor: psycopg.Cursor[Any], cfg: TableExport) -> SourceInfo:
    """Which database this is, and that the table, the timestamp column and the columns exist
    with the right types; raises :class:`SourceError` naming the table and the cause."""
    seconds = cfg.stall_timeout_seconds
    # version() needs no privilege; a user without privileges on CrateDB's sys schema does not see
    # its tables in information_schema (which told CrateDB apart before: seen on 5.10.16)
    named = str(_one(cursor, sql.server_version(), seconds) or "")
    dialect = CRATEDB if named.startswith("CrateDB") else POSTGRESQL
    version = parse_version(named) if dialect is CRATEDB else None
    if _one(cursor, sql.describe_table(cfg), seconds) is None:
        raise SourceError(f"table {cfg.qualified_name} does not exist (not in information_schema.tables)")
    described = execute(cursor, sql.describe_columns(cfg, dialect.column_policy), seconds).fetchall()
    columns = {name: dtype for name, dtype, _, _ in described}
    not_null = frozenset(name for name, _, nullable, _ in described if nullable not in (True, "YES"))
    policies = {name: policy for name, dtype, _, policy in described if policy and dtype.lower() in OBJECT_TYPES}
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
    partitions = _one(cursor, sql.describe_partitioning(cfg), seconds) if dialect is CRATEDB else None
    numbered = column_ids(cursor, cfg)
    processors, heap = cluster_resources(cursor, seconds) if dialect is CRATEDB else (None, None)
    return SourceInfo(
        dialect=dialect,
        columns=columns,
        timestamp_type=ts_type.lower(),
        version=version,
        partition_columns=tuple(partitions or ()),
        not_null=not_null,
        policies=policies,
        column_ids={name: number for name, number in numbered.items() if name in columns},
        processors=processors,
        heap_bytes=heap,
    )


def cluster_resources(cursor: psycopg.Cursor[Any], seconds: float) -> tuple[int | None, int | None]:
    """The processors of the CrateDB cluster's nodes, summed, and the smallest node's heap
    (``sys.nodes``); None for what the user may not read or the cluster does not say."""
    try:
        row = execute(cursor, sql.cluster_resources(), seconds).fetchone()
    except psycopg.Error as exc:  # no privilege on sys: the readers fall back to their defaults
        log.info("the cluster's processors and heap are not known (%s)", str(exc).splitlines()[0])
        return None, None
    processors, heap = row if row else (None, None)
    return (int(processors) if processors else None), (int(heap) if heap else None)


PartitionValues = tuple[tuple[str, Any], ...]


def partition_scope(values: Any, source: SourceInfo, table: str) -> PartitionValues:
    """A CrateDB partition's values (``information_schema.table_partitions``) in ``partitioned_by``
    order, as its columns take them: CrateDB lists a timestamp partition value as epoch milliseconds."""
    if isinstance(values, str):  # on a cursor whose JSON the stream engine reads as text
        try:
            values = json.loads(values)
        except ValueError:
            pass
    if not isinstance(values, dict):
        raise SourceError(f"{table}: unreadable partition values {values!r}")
    scope = []
    for column in source.partition_columns:
        value = values.get(column)
        kind = source.columns.get(column, "").lower()
        if value is not None and kind in sql.TIMESTAMP_TYPES and isinstance(value, int | float):
            moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
            value = moment.replace(tzinfo=None) if kind != "timestamp with time zone" else moment
        scope.append((column, value))
    return tuple(scope)


def table_identity(cursor: psycopg.Cursor[Any], cfg: TableExport, window: TimeRange, source: SourceInfo) -> str | None:
    """What tells the table holding ``window``'s rows from one created under the same name later
    (None: the source does not let this user read it): PostgreSQL's table OID; on CrateDB the UUIDs
    of the indices holding the window's rows (the table's, or each partition's: a partition dropped
    and created again by a restore gets a new one), from ``sys.shards``."""
    # a cursor of its own: the one given may load values as text (the stream engine's cursors do)
    with cursor.connection.cursor() as own:
        return _table_identity(own, cfg, window, source)


def identity_statements(cfg: TableExport, window: TimeRange, source: SourceInfo) -> list[sql.Statement]:
    """What :func:`table_identity` sends (for ``plan``)."""
    if source.dialect.identity == "oid":
        return [sql.table_oid(cfg)]
    if not source.partition_columns:
        return [sql.shard_uuids(cfg)]
    naive = source.naive_timestamps
    return [
        sql.shard_uuids(cfg),
        sql.window_partitions(cfg, window, source.partition_columns, naive=naive),
        sql.list_partitions(cfg),
    ]


def _table_identity(cursor: psycopg.Cursor[Any], cfg: TableExport, window: TimeRange, source: SourceInfo) -> str | None:
    seconds = cfg.attempt_seconds
    if source.dialect.identity == "oid":
        oid = _one(cursor, sql.table_oid(cfg), seconds)
        return None if oid is None else f"oid:{oid}"
    try:
        uuids = dict(execute(cursor, sql.shard_uuids(cfg), seconds).fetchall())
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:  # a user without DQL on sys: "Schema 'sys' unknown"
        log.warning("%s: the table's identity cannot be read from sys.shards: %s", cfg.qualified_name, exc)
        return None
    if not source.partition_columns:
        return "uuid:" + ",".join(sorted({str(u) for u in uuids.values()}))
    naive = source.naive_timestamps
    holding = {
        tuple(row)
        for row in execute(cursor, sql.window_partitions(cfg, window, source.partition_columns, naive=naive), seconds)
    }
    idents = []
    for ident, values in execute(cursor, sql.list_partitions(cfg), seconds).fetchall():
        if tuple(v for _, v in partition_scope(values, source, cfg.qualified_name)) in holding:
            idents.append(str(ident))
    if len(idents) != len(holding) or any(ident not in uuids for ident in idents):
        return None  # a partition appeared or went while this ran: not known
    return "uuid:" + ",".join(f"{ident}={uuids[ident]}" for ident in sorted(idents))


def count_window(cursor: psycopg.Cursor[Any], cfg: TableExport, window: TimeRange, source: SourceInfo) -> int:
    """``count(*)`` of ``cfg``'s rows in ``window`` (with the table's filter)."""
    return int(_one(cursor, sql.count_window(cfg, window, naive=source.naive_timestamps), cfg.attempt_seconds))


def window_state(
    cursor: psycopg.Cursor[Any], cfg: TableExport, window: TimeRange, source: SourceInfo, *, identify: bool = False
) -> WindowState:
    """``count(*)`` of ``cfg``'s rows in ``window`` (with the table's filter) and their change marker;
    ``identify``: and the table's identity (:func:`table_identity`), right after."""
    version = source.dialect.row_version
    statement = sql.window_state(cfg, window, version, naive=source.naive_timestamps)
    row = execute(cursor, statement, cfg.attempt_seconds).fetchone()
    count, total = (0, None) if row is None else row
    marker = f"sum({version.split('::')[0]})={int(total or 0)}"
    table_id = table_identity(cursor, cfg, window, source) if identify else None
    return WindowState(int(count), marker, table_id)


def column_ids(cursor: psycopg.Cursor[Any], cfg: TableExport) -> dict[str, int]:
    """Each column's number in the catalog now (see :attr:`SourceInfo.column_ids`)."""
    numbered = execute(cursor, sql.describe_column_ids(cfg), cfg.stall_timeout_seconds).fetchall()
    return {str(name): int(number) for name, number in numbered}
