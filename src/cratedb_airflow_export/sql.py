"""Every SQL statement this project sends to CrateDB, built in one place.

Statements use psycopg placeholders (``%s``); psycopg sends them as ``$1, $2, ...`` bind
parameters, which is the form :attr:`Statement.wire_sql` shows and the tests check against
CrateDB's grammar. Identifiers are always double-quoted. Window bounds and the COPY target URI
are bind parameters, never text: CrateDB records statement text in ``sys.jobs_log`` and Airflow's
SQL hooks log it, so a credential must never be part of it. The CrateDB behaviours these statements
rely on (command tags, cursors, no ROLLBACK, REFRESH) are in docs/cratedb.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.windows import TimeRange

CURSOR_NAME = "cratedb_export"
WINDOW_ALIAS = "window_rows"
BUCKET_ALIAS = "bucket"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIMESTAMP_TYPES = frozenset({"timestamp with time zone", "timestamp without time zone", "timestamp"})


class TextArray(list[str]):
    """Text values bound as one ``text[]`` parameter (OID 1009; ``source.connect`` registers the
    dumper). psycopg sends a plain ``list`` of ``str`` untyped (OID 0), as the text ``{a,b}``, and
    CrateDB takes an untyped parameter as one string: ``COPY ... FROM $1`` then reads a single URI
    ``{s3://...,s3://...}`` (docs/cratedb.md)."""


@dataclass(frozen=True)
class Secret:
    """A bind parameter holding a secret; only ``shown`` is ever displayed or logged."""

    value: Any = field(repr=False)  # a URI, or a list of them
    shown: str

    def __repr__(self) -> str:
        return self.shown

    __str__ = __repr__


@dataclass(frozen=True)
class Statement:
    sql: str  # psycopg form: %s placeholders, literal % doubled
    params: tuple[Any, ...] = ()

    @property
    def wire_sql(self) -> str:
        """The text the server receives: ``%s`` -> ``$n``, ``%%`` -> ``%``."""
        counter = itertools.count(1)  # placeholders in order (executemany statements carry no params)
        return re.sub(r"%%|%s", lambda m: "%" if m.group() == "%%" else f"${next(counter)}", self.sql)

    def bind(self) -> tuple[Any, ...]:
        """Parameters for execution, secrets revealed."""
        return tuple(p.value if isinstance(p, Secret) else p for p in self.params)

    def shown_params(self) -> list[Any]:
        """Parameters for display: secrets redacted, datetimes as ISO 8601."""
        return [
            p.shown if isinstance(p, Secret) else p.isoformat() if isinstance(p, datetime) else p for p in self.params
        ]

    def describe(self) -> str:
        """One log line: wire SQL plus redacted parameters."""
        return self.wire_sql + (f"  -- params: {self.shown_params()}" if self.params else "")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(cfg: TableExport) -> str:
    return f"{quote_ident(cfg.schema_name)}.{quote_ident(cfg.table_name)}"


def _where(cfg: TableExport, window: TimeRange, naive: bool, *, literal: bool = False) -> tuple[str, tuple[Any, ...]]:
    """The window (and the table's filter) as a condition: bounds as placeholders with their
    parameters, or (``literal``) as typed literals rendered from the window's datetimes."""
    column = quote_ident(cfg.timestamp_column)
    bounds = window.bounds(naive=naive)
    params: tuple[Any, ...]
    if literal:
        cast = "timestamp" if naive else "timestamptz"
        start, end = (f"'{bound.isoformat()}'::{cast}" for bound in bounds)
        condition, params = f"{column} >= {start} AND {column} < {end}", ()
    else:
        condition, params = f"{column} >= %s AND {column} < %s", bounds
    if cfg.filter:
        condition += f" AND ({cfg.filter.replace('%', '%%')})"
    return condition, params


def _column_list(cfg: TableExport) -> str:
    return ", ".join(quote_ident(c) for c in cfg.columns) if cfg.columns else "*"


def read_columns(cfg: TableExport) -> list[str] | None:
    """What the ``stream`` engine reads (None: every column): the exported columns, plus the
    timestamp column when they leave it out, so that every row's timestamp can be checked against
    the window before it is written (the engine drops it again)."""
    if not cfg.columns:
        return None
    return [*cfg.columns, *([] if cfg.timestamp_column in cfg.columns else [cfg.timestamp_column])]


def copy_to(
    cfg: TableExport,
    window: TimeRange,
    uri: Secret,
    *,
    protocol: str | None = None,
    naive: bool = False,
    secrets: Mapping[str, Secret] | None = None,
) -> Statement:
    """``COPY t [(cols)] WHERE <window> TO DIRECTORY $3 WITH (...)``.

    Starts with ``COPY`` (no comment before it) so the command tag ``COPY <n>`` gives the row count.
    ``wait_for_completion = true`` is explicit: ``false`` returns before the export is done.
    """
    condition, bounds = _where(cfg, window, naive)
    columns = f" ({_column_list(cfg)})" if cfg.columns else ""
    options = ["format = 'json_object'", "wait_for_completion = true"]
    if cfg.compression == "gzip":
        options.insert(0, "compression = 'gzip'")
    if protocol:
        options.append(f"protocol = '{protocol}'")
    options += [f"{name} = %s" for name in secrets or {}]  # Azure's key or SAS token: bind parameters
    sql = f"COPY {qualified(cfg)}{columns} WHERE {condition} TO DIRECTORY %s WITH ({', '.join(options)})"
    return Statement(sql, (*bounds, uri, *(secrets or {}).values()))


@dataclass(frozen=True)
class Reading:
    """The select list of a window's SELECT: ``columns`` (None: ``*``), and which of them are read
    from the stored document (``_doc['c'] AS "c"``) instead of the column store. CrateDB's column
    store holds geo_point rounded (``13.399999989196658`` for ``13.4``); the document holds the
    value as written, which is also what ``COPY TO`` writes (``source.Dialect.document_types``)."""

    columns: tuple[str, ...] | None = None
    from_document: frozenset[str] = frozenset()

    def select_list(self) -> str:
        if self.columns is None:
            return "*"
        return ", ".join(
            f"_doc[{quote_literal(c)}] AS {quote_ident(c)}" if c in self.from_document else quote_ident(c)
            for c in self.columns
        )


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def select_window(
    cfg: TableExport, window: TimeRange, *, naive: bool = False, literal: bool = False, reading: Reading | None = None
) -> Statement:
    """The window's SELECT of ``reading`` (default: :func:`read_columns` from the column store).
    ``literal`` renders the bounds as typed literals, for the PostgreSQL fast path: the ADBC driver
    streams a parameterless query through COPY, but materialises a parameterised one whole. The
    literals come from the window's datetimes, never from user input."""
    condition, params = _where(cfg, window, naive, literal=literal)
    columns = read_columns(cfg)
    selected = (reading or Reading(tuple(columns) if columns else None)).select_list()
    return Statement(f"SELECT {selected} FROM {qualified(cfg)} WHERE {condition}", params)


def probe_window(
    cfg: TableExport, window: TimeRange, *, naive: bool = False, reading: Reading | None = None
) -> Statement:
    """The window's SELECT with ``LIMIT 0``: fails as the cursor's query would when it starts, and
    reads nothing. Sent before ``DECLARE`` where a DECLARE whose query fails never answers
    (``source.SourceInfo.declare_may_hang``)."""
    select = select_window(cfg, window, naive=naive, reading=reading)
    return Statement(f"{select.sql} LIMIT 0", select.params)


def cursor_name(index: int | None = None) -> str:
    """``cratedb_export``, or ``cratedb_export_<n>`` for the n-th of several cursors of one read."""
    return CURSOR_NAME if index is None else f"{CURSOR_NAME}_{int(index)}"


def declare_cursor(
    cfg: TableExport,
    window: TimeRange,
    *,
    naive: bool = False,
    reading: Reading | None = None,
    name: str = CURSOR_NAME,
    limit: int | None = None,
) -> Statement:
    """A WITH HOLD cursor: works in autocommit mode, as CrateDB has no transactions or ROLLBACK.
    ``limit``: a ``LIMIT`` above the window's rows, which makes CrateDB read them through its fetch
    phase (see ``engines.stream.FETCH_PHASE_LIMIT``)."""
    select = select_window(cfg, window, naive=naive, reading=reading)
    bounded = f" LIMIT {int(limit)}" if limit is not None else ""
    return Statement(f"DECLARE {quote_ident(name)} NO SCROLL CURSOR WITH HOLD FOR {select.sql}{bounded}", select.params)


def window_histogram(cfg: TableExport, window: TimeRange, buckets: int, *, naive: bool = False) -> Statement:
    """The window's rows (the table's filter applied) counted in ``buckets`` equal parts of it:
    ``(bucket, count)`` for the parts that hold rows, bucket ``i`` being about ``window.slices(buckets)[i]``
    (floating point may put a row at a cut into its neighbour: the counts only guide how the window
    is cut, never what is read)."""
    condition, params = _where(cfg, window, naive)
    micros = (window.end - window.start) // timedelta(microseconds=1)
    start = (window.start - EPOCH) // timedelta(microseconds=1)
    column = quote_ident(cfg.timestamp_column)
    bucket = f"floor((extract(epoch FROM {column}) * 1000000 - {start}) * {int(buckets)} / {micros})"
    return Statement(
        f"SELECT {bucket} AS {quote_ident(BUCKET_ALIAS)}, count(*) FROM {qualified(cfg)} WHERE {condition} GROUP BY 1",
        params,
    )


def table_size(cfg: TableExport) -> Statement:
    """CrateDB only: the bytes and rows of the table's primary shards (``sys.shards``)."""
    return Statement(
        'SELECT sum(size), sum(num_docs) FROM sys.shards WHERE schema_name = %s AND table_name = %s AND "primary"',
        (cfg.schema_name, cfg.table_name),
    )


def fetch_forward(batch_size: int, name: str = CURSOR_NAME) -> Statement:
    return Statement(f"FETCH FORWARD {int(batch_size)} FROM {quote_ident(name)}")


def close_cursor(name: str = CURSOR_NAME) -> Statement:
    return Statement(f"CLOSE {quote_ident(name)}")


def cluster_resources() -> Statement:
    """The processors of every node of a CrateDB cluster, summed, and the smallest node's heap."""
    return Statement("SELECT sum(os_info['available_processors']), min(heap['max']) FROM sys.nodes")


def refresh(cfg: TableExport) -> Statement:
    """CrateDB exports only refreshed data."""
    return Statement(f"REFRESH TABLE {qualified(cfg)}")


def count_window(cfg: TableExport, window: TimeRange, *, naive: bool = False) -> Statement:
    """``count(*)`` of the window. With a filter, the window is enforced by structure: a subquery holds
    it and the filter applies outside, so whatever a filter does, it can only remove rows from the
    window; a filter that widened the export's own statement makes the counts disagree."""
    if not cfg.filter:
        condition, bounds = _where(cfg, window, naive)
        return Statement(f"SELECT count(*) FROM {qualified(cfg)} WHERE {condition}", bounds)
    inner = _where(cfg.model_copy(update={"filter": None}), window, naive)
    return Statement(
        f"SELECT count(*) FROM (SELECT * FROM {qualified(cfg)} WHERE {inner[0]}) AS {quote_ident(WINDOW_ALIAS)} "
        f"WHERE ({cfg.filter.replace('%', '%%')})",
        inner[1],
    )


VERSION_ALIAS = "_cratedb_export_row_version"


def window_state(cfg: TableExport, window: TimeRange, row_version: str, *, naive: bool = False) -> Statement:
    """``count(*)`` and ``sum(<row_version>)`` of the window: the rows and a marker that an UPDATE of
    any of them moves (``row_version`` is the dialect's per-row version: CrateDB's ``_seq_no``,
    PostgreSQL's ``xmin``; a changed row gets a higher one). The window and the filter are applied as
    in :func:`count_window`; ``row_version`` is a fixed expression of the dialect, never user input."""
    inner = _where(cfg.model_copy(update={"filter": None}), window, naive)
    selected = f"SELECT {row_version} AS {quote_ident(VERSION_ALIAS)}, * FROM {qualified(cfg)} WHERE {inner[0]}"
    outer = f" WHERE ({cfg.filter.replace('%', '%%')})" if cfg.filter else ""
    return Statement(
        f"SELECT count(*), sum({quote_ident(VERSION_ALIAS)}) FROM ({selected}) AS {quote_ident(WINDOW_ALIAS)}{outer}",
        inner[1],
    )


def describe_table(cfg: TableExport) -> Statement:
    return Statement(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (cfg.schema_name, cfg.table_name),
    )


def describe_partitioning(cfg: TableExport) -> Statement:
    """CrateDB only: the table's partition columns (``partitioned_by``, NULL when not partitioned)."""
    return Statement(
        "SELECT partitioned_by FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        (cfg.schema_name, cfg.table_name),
    )


def describe_columns(cfg: TableExport, policy: str = "NULL") -> Statement:
    """Each column's name, type, whether it may hold NULL (CrateDB: a boolean; PostgreSQL: YES or
    NO) and ``policy``, the source's expression for an object's column policy (the Dialect's)."""
    return Statement(
        f"SELECT column_name, data_type, is_nullable, {policy} FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (cfg.schema_name, cfg.table_name),
    )


def describe_column_ids(cfg: TableExport) -> Statement:
    """Each column's number in the catalog (``pg_attribute.attnum``; CrateDB numbers its columns there
    too): a column dropped and added again under the same name gets a new one."""
    return Statement(
        "SELECT a.attname, a.attnum FROM pg_catalog.pg_attribute a "
        "JOIN pg_catalog.pg_class c ON a.attrelid = c.oid JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
        (cfg.schema_name, cfg.table_name),
    )


def table_oid(cfg: TableExport) -> Statement:
    """PostgreSQL: the table's OID, which a table dropped and created again under the same name does
    not keep (CrateDB's pg_class OID is a hash of the name: :func:`shard_uuids` instead)."""
    return Statement(
        "SELECT c.oid::bigint FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid "
        "WHERE n.nspname = %s AND c.relname = %s",
        (cfg.schema_name, cfg.table_name),
    )


def shard_uuids(cfg: TableExport) -> Statement:
    """CrateDB: the UUID of the table's index (of each partition's, by its ident), which a table or
    partition dropped and created again does not keep. Needs DQL on the schema ``sys``."""
    return Statement(
        "SELECT DISTINCT partition_ident, partition_uuid FROM sys.shards WHERE schema_name = %s AND table_name = %s",
        (cfg.schema_name, cfg.table_name),
    )


def window_partitions(cfg: TableExport, window: TimeRange, columns: Sequence[str], *, naive: bool = False) -> Statement:
    """CrateDB: the values of the partition ``columns`` that rows of the window hold (each partition once)."""
    condition, bounds = _where(cfg, window, naive)
    names = ", ".join(quote_ident(c) for c in columns)
    return Statement(f"SELECT DISTINCT {names} FROM {qualified(cfg)} WHERE {condition}", bounds)


def server_version() -> Statement:
    """``CrateDB 6.4.3 (built ...)`` on CrateDB, ``PostgreSQL 16.4 ...`` on PostgreSQL; needs no
    privilege: how the source tells which database it is."""
    return Statement("SELECT version()")


# --- retention -------------------------------------------------------------------------------


def list_partitions(cfg: TableExport) -> Statement:
    """CrateDB only: the table's partitions, each its ident and its partition columns' values (an object)."""
    return Statement(
        'SELECT partition_ident, "values" FROM information_schema.table_partitions '
        "WHERE table_schema = %s AND table_name = %s ORDER BY partition_ident",
        (cfg.schema_name, cfg.table_name),
    )


def _partition_condition(values: Sequence[tuple[str, Any]]) -> tuple[str, tuple[Any, ...]]:
    """``"p" = %s AND "q" IS NULL``: the rows of one partition, by its columns' values."""
    parts, params = [], []
    for column, value in values:
        if value is None:
            parts.append(f"{quote_ident(column)} IS NULL")
        else:
            parts.append(f"{quote_ident(column)} = %s")
            params.append(value)
    return " AND ".join(parts), tuple(params)


def _scope(partition: Sequence[tuple[str, Any]] | None) -> tuple[list[str], list[Any]]:
    if not partition:
        return [], []
    condition, params = _partition_condition(partition)
    return [condition], list(params)


def first_timestamp(
    cfg: TableExport,
    before: datetime,
    *,
    after: datetime | None = None,
    partition: Sequence[tuple[str, Any]] | None = None,
) -> Statement:
    """The earliest timestamp in ``[after, before)`` (of one partition): the next day that holds rows.
    Bounds are bound as the caller's datetimes (naive for TIMESTAMP WITHOUT TIME ZONE)."""
    column = quote_ident(cfg.timestamp_column)
    conditions, params = _scope(partition)
    if after is not None:
        conditions.append(f"{column} >= %s")
        params.append(after)
    conditions.append(f"{column} < %s")
    params.append(before)
    return Statement(f"SELECT min({column}) FROM {qualified(cfg)} WHERE {' AND '.join(conditions)}", tuple(params))


def partition_rows(
    cfg: TableExport, partition: Sequence[tuple[str, Any]], window: TimeRange | None = None, *, naive: bool = False
) -> Statement:
    """``count(*)``, ``count(<timestamp>)`` and the latest timestamp of one partition's rows (in
    ``window``): rows whose timestamp is NULL are in no day, so in no export."""
    column = quote_ident(cfg.timestamp_column)
    conditions, params = _scope(partition)
    if window is not None:
        conditions.append(f"{column} >= %s AND {column} < %s")
        params.extend(window.bounds(naive=naive))
    return Statement(
        f"SELECT count(*), count({column}), max({column}) FROM {qualified(cfg)} WHERE {' AND '.join(conditions)}",
        tuple(params),
    )


def block_writes(cfg: TableExport, partition: Sequence[tuple[str, Any]], *, blocked: bool) -> Statement:
    """CrateDB: refuse (``blocked``) or allow again every write into one partition
    (``blocks.write``), so that no row can arrive between the checks before its DELETE and the
    DELETE. The values are bound; none may be NULL (a partition clause assigns, it does not compare)."""
    if any(value is None for _, value in partition):
        raise ValueError("a partition with a NULL value cannot be named in a PARTITION clause")
    assignments = ", ".join(f"{quote_ident(column)} = %s" for column, _ in partition)
    action = 'SET ("blocks.write" = true)' if blocked else 'RESET ("blocks.write")'
    return Statement(f"ALTER TABLE {qualified(cfg)} PARTITION ({assignments}) {action}", tuple(v for _, v in partition))


def delete_partition(cfg: TableExport, partition: Sequence[tuple[str, Any]]) -> Statement:
    """``DELETE FROM t WHERE <partition columns = values>``: CrateDB drops the whole partition."""
    condition, params = _partition_condition(partition)
    return Statement(f"DELETE FROM {qualified(cfg)} WHERE {condition}", params)


# --- restore ---------------------------------------------------------------------------------


def describe_target(cfg: TableExport) -> Statement:
    """The target table's columns with their types, whether they are generated, and the type's name
    (PostgreSQL says ``ARRAY`` for every array and names the element in ``udt_name``, ``_float8``;
    CrateDB names it in the type, ``double precision_array``)."""
    return Statement(
        "SELECT column_name, data_type, is_generated, udt_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (cfg.schema_name, cfg.table_name),
    )


def lock_writers_out(cfg: TableExport, lock_timeout_ms: int) -> tuple[Statement, Statement]:
    """PostgreSQL, inside a transaction: wait at most ``lock_timeout_ms`` for a lock on the table that
    lets readers in and keeps every other writer out until the transaction ends (SHARE ROW EXCLUSIVE
    conflicts with the ROW EXCLUSIVE lock that INSERT, UPDATE and DELETE take)."""
    return (
        Statement(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"),
        Statement(f"LOCK TABLE {qualified(cfg)} IN SHARE ROW EXCLUSIVE MODE"),
    )


def delete_window(cfg: TableExport, window: TimeRange, *, naive: bool = False) -> Statement:
    """The window's rows (with the table's filter: exactly what an export of it holds)."""
    condition, bounds = _where(cfg, window, naive)
    return Statement(f"DELETE FROM {qualified(cfg)} WHERE {condition}", bounds)


def insert_rows(cfg: TableExport, columns: list[str]) -> Statement:
    """One row's INSERT, for ``executemany`` over a batch."""
    names = ", ".join(quote_ident(c) for c in columns)
    return Statement(f"INSERT INTO {qualified(cfg)} ({names}) VALUES ({', '.join(['%s'] * len(columns))})")


def copy_from(
    cfg: TableExport,
    uris: Sequence[Secret],
    *,
    gzip: bool,
    protocol: str | None = None,
    secrets: Mapping[str, Secret] | None = None,
) -> Statement:
    """``COPY t FROM $1 WITH (...) RETURN SUMMARY``: CrateDB reads the listed files itself. The
    URIs (with the keys) go as one bind parameter typed ``text[]`` (:class:`TextArray`), shown
    redacted; ``shared = true`` makes each file read by one node only; RETURN SUMMARY reports every
    file's failed rows (without it, failures pass silently)."""
    every = Secret(TextArray(uri.value for uri in uris), "[" + ", ".join(uri.shown for uri in uris) + "]")
    options = ["shared = true"]
    if gzip:
        options.insert(0, "compression = 'gzip'")
    if protocol:
        options.append(f"protocol = '{protocol}'")
    options += [f"{name} = %s" for name in secrets or {}]
    statement = f"COPY {qualified(cfg)} FROM %s WITH ({', '.join(options)}) RETURN SUMMARY"
    return Statement(statement, (every, *(secrets or {}).values()))
