"""Apache Iceberg output (``format: iceberg``): each exported day is one atomic commit to a table of
a catalog (SQL, REST, Glue, ...: pyiceberg), replacing exactly that day.

The stream engine writes the day's Parquet files into the attempt's staging folder as for any format
(flat memory). :func:`commit_day` then

1. loads the table, or creates it (in the table folder of ``target``, partitioned by day of the
   timestamp column, with the day's schema);
2. applies the table's ``schema_change`` policy against the table's current schema: ``evolve``
   adds new columns and object keys and widens types (Iceberg's own schema evolution, in the same
   commit); ``fail`` refuses any difference; a type Iceberg cannot promote is refused under both;
3. copies the staged files (server-side) under the table's ``data/<column>_day=<day>/`` with names
   unique to the attempt: a file a snapshot references is never overwritten or deleted;
4. commits one transaction with one snapshot (an overwrite) that removes the day's files (whole
   files: the partition) and adds the new ones, with the run, the window, the rows and the source
   count in the snapshot summary; a day without rows is such a snapshot too, adding nothing. A
   conflicting commit (another day of the table committed meanwhile) is retried on the new state.

Readers, and time travel to any snapshot, see the day before or after, never empty or half of it.
A failure before the commit leaves the table's current snapshot as it was; the copied files are
removed again (best effort; a file left by a crash is referenced by no snapshot: Iceberg's
orphan-file maintenance removes it).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export.errors import SchemaChanged, TargetError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import CatalogParams
    from cratedb_airflow_export.storage import Store, StoredObject, WriteOptions
    from cratedb_airflow_export.windows import TimeRange, Window

log = logging.getLogger(__name__)

SUMMARY_PREFIX = "cratedb-export."
EPOCH_DAY = date(1970, 1, 1)  # Iceberg's day transform counts days from it
COMMIT_ATTEMPTS = 5  # conflicting commits (another day of the table) retried on the new state
COMMIT_BACKOFF_SECONDS = 0.5
# a SQL catalog creates its own tables when first loaded, and a table's namespace may be created by
# two exports at once: within one process (threads, the command line) they take turns
_OPENING = threading.Lock()


@dataclass(frozen=True)
class Committed:
    """What a day's commit made: the table, its snapshot and metadata file, the files it added."""

    table: str
    snapshot_id: int
    metadata_location: str
    files: tuple[str, ...]
    schema_changes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "iceberg_table": self.table,
            "snapshot_id": self.snapshot_id,
            "metadata_location": self.metadata_location,
            "files": list(self.files),
        }


def load_catalog(params: CatalogParams, store: Store, options: WriteOptions | None = None) -> Catalog:
    """The catalog, its tables' files read and written through ``store`` (``iceberg_io.py``)."""
    from pyiceberg.catalog import load_catalog as load

    from cratedb_airflow_export.iceberg_io import io_properties

    return load(params.name, **{**params.properties, **io_properties(store, options)})


def day_filter(cfg: TableExport, window: TimeRange, naive: bool) -> Any:
    """The rows of ``window``, half-open, as a pyiceberg expression on the timestamp column."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan

    start, end = window.bounds(naive=naive)
    column = cfg.timestamp_column
    return And(GreaterThanOrEqual(term=column, value=start.isoformat()), LessThan(term=column, value=end.isoformat()))


def table_location(store: Store, cfg: TableExport) -> str:
    """Where a table created by the export keeps its data and metadata: the table folder of
    ``target``, as lake tools spell it (on Azure ``abfss://<container>@<account>.dfs...``)."""
    from cratedb_airflow_export.layout import table_folder

    return store.lake_uri(table_folder(cfg))


def open_table(catalog: Catalog, store: Store, cfg: TableExport, schema: pa.Schema) -> Table:
    """The Iceberg table of ``cfg``: loaded, or created (in one commit) partitioned by day of the
    timestamp column."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.transforms import DayTransform

    identifier = cfg.iceberg_identifier
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    catalog.create_namespace_if_not_exists(identifier.rsplit(".", 1)[0])
    try:
        with catalog.create_table_transaction(
            identifier, schema=plain_schema(schema), location=table_location(store, cfg)
        ) as create:
            with create.update_spec() as spec:
                spec.add_field(cfg.timestamp_column, DayTransform(), f"{cfg.timestamp_column}_day")
    except (TableAlreadyExistsError, CommitFailedException):  # created by another export meanwhile
        return catalog.load_table(identifier)
    table = catalog.load_table(identifier)
    log.info(
        "created Iceberg table %s at %s, partitioned by day(%s)", identifier, table.location(), cfg.timestamp_column
    )
    return table


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """The Arrow schema without field metadata (ours: JSON text, partition column markers)."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, f.type) for f in schema])


def schema_difference(table: Table, schema: pa.Schema) -> list[str]:
    """What ``schema`` (a day's files) has that the table's schema has not, or has otherwise:
    columns (and struct fields) added, types changed; columns the day lacks (read as NULL)."""
    from pyiceberg.catalog import Catalog

    written = Catalog._convert_schema_if_needed(plain_schema(schema))
    current = {f.name: type_text(f.field_type) for f in table.schema().fields}
    changes = []
    for field in written.fields:
        was, now = current.get(field.name), type_text(field.field_type)
        if was is None:
            changes.append(f"{field.name} added ({now})")
        elif was != now:
            changes.append(f"{field.name} changed from {was} to {now}")
    names = {f.name for f in written.fields}
    changes += [f"{name} removed (was {kind})" for name, kind in current.items() if name not in names]
    return changes


def type_text(kind: Any) -> str:
    """An Iceberg type without its field ids: ``struct<host: string, n: list<long>>``."""
    from pyiceberg.types import ListType, MapType, StructType

    if isinstance(kind, StructType):
        return "struct<" + ", ".join(f"{f.name}: {type_text(f.field_type)}" for f in kind.fields) + ">"
    if isinstance(kind, ListType):
        return f"list<{type_text(kind.element_type)}>"
    if isinstance(kind, MapType):
        return f"map<{type_text(kind.key_type)}, {type_text(kind.value_type)}>"
    return str(kind)


_RELEASE = threading.Lock()
_ACTIVE = [0]  # blocks inside released() now: the last one out shuts the shared pool down


@contextmanager
def released() -> Iterator[None]:
    """Leave no pyarrow S3 file system referenced once the block's catalog and tables are gone:
    pyarrow's S3 (through which pyiceberg reads and writes) can deadlock at interpreter exit while
    one still is (apache/arrow#50188; seen as an Airflow task process that did not end after its
    success). Shuts pyiceberg's thread pool down and collects what the block left, once no other
    thread of the process is inside such a block (the pool is shared: shutting it down under another
    thread's commit failed that commit with "cannot schedule new futures after shutdown"). As a
    decorator (``@released()``), after the function has returned."""
    with _RELEASE:
        _ACTIVE[0] += 1
    try:
        yield
    finally:
        from pyiceberg.utils.concurrent import ExecutorFactory

        with _RELEASE:
            _ACTIVE[0] -= 1
            executor = ExecutorFactory._instance if _ACTIVE[0] == 0 else None
            if executor is not None:
                ExecutorFactory._instance = None
        if executor is not None:
            executor.shutdown(wait=True)
            gc.collect()


@released()
def commit_day(
    store: Store,
    params: CatalogParams,
    cfg: TableExport,
    window: Window,
    staged: list[StoredObject],
    schema: pa.Schema,
    summary: Mapping[str, str],
    *,
    naive: bool,
    attempt_id: str,
    options: WriteOptions | None = None,
) -> Committed:
    """Replace ``window``'s day of ``cfg``'s Iceberg table with the ``staged`` Parquet files in one
    commit (see the module docstring). Raises :class:`SchemaChanged` when the policy refuses the
    day's schema, before anything is copied or committed."""
    from cratedb_airflow_export.iceberg_io import split_location

    with _OPENING:
        catalog = load_catalog(params, store, options)
        table = open_table(catalog, store, cfg, schema)
    changes = schema_difference(table, schema)
    if changes:
        _check_policy(cfg, window, changes)
    base = table.location().rstrip("/")
    bucket, table_key = split_location(store, base)
    day = f"data/{cfg.timestamp_column}_day={window.day.isoformat()}"
    copied: list[str] = []
    paths: list[str] = []
    try:
        for index, source in enumerate(staged):
            name = f"{day}/{attempt_id}-{index:05d}.parquet"
            store.copy(bucket, source.key, f"{table_key}/{name}", options)
            copied.append(f"{table_key}/{name}")
            paths.append(f"{base}/{name}")
        snapshot = _commit(catalog, cfg, window, schema, paths, summary, naive=naive, evolve=bool(changes))
    except BaseException:
        _remove(store, bucket, copied)
        raise
    log.info(
        "committed %d file(s) to Iceberg table %s as snapshot %d (the day %s replaced)%s",
        len(paths),
        cfg.iceberg_identifier,
        snapshot[0],
        window.day,
        f"; schema evolved: {'; '.join(changes)}" if changes else "",
    )
    return Committed(cfg.iceberg_identifier, snapshot[0], snapshot[1], tuple(paths), tuple(changes))


def _check_policy(cfg: TableExport, window: Window, changes: list[str]) -> None:
    if cfg.schema_change == "fail":
        raise SchemaChanged(
            f"{cfg.qualified_name}: the schema of {window.day} differs from Iceberg table {cfg.iceberg_identifier}'s "
            f"({'; '.join(changes)}) and schema_change is 'fail'; nothing was committed. Set schema_change: evolve "
            "to evolve the table's schema"
        )


def _commit(
    catalog: Catalog,
    cfg: TableExport,
    window: Window,
    schema: pa.Schema,
    paths: list[str],
    summary: Mapping[str, str],
    *,
    naive: bool,
    evolve: bool,
) -> tuple[int, str]:
    """One transaction (schema update; one snapshot that removes the day's files and adds the new
    ones), retried on a conflict."""
    from pyiceberg.exceptions import CommitFailedException, ValidationError, ValidationException
    from pyiceberg.io.pyarrow import parquet_file_to_data_file
    from pyiceberg.table import TableProperties

    properties = {SUMMARY_PREFIX + k: v for k, v in summary.items()}
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = catalog.load_table(cfg.iceberg_identifier)
        replaced = day_files(table, cfg, window, naive)
        try:
            with table.transaction() as tx:
                if evolve:
                    try:
                        with tx.update_schema() as update:
                            update.union_by_name(plain_schema(schema))
                    except ValidationError as exc:  # "Cannot change column type: x: long -> string"
                        raise SchemaChanged(
                            f"{cfg.qualified_name}: Iceberg cannot evolve table {cfg.iceberg_identifier} to the "
                            f"schema of {window.day}: {exc}; nothing was committed"
                        ) from None
                if tx.table_metadata.name_mapping() is None:  # our files carry no field ids: read by name
                    mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
                    tx.set_properties({TableProperties.DEFAULT_NAME_MAPPING: mapping})
                # one snapshot: a reader (or time travel) sees the day before or after, never empty or half
                with tx.update_snapshot(snapshot_properties=properties).overwrite() as overwrite:
                    # conflicts are looked for in this day's partition only (other days commit meanwhile)
                    overwrite.delete_by_predicate(_day_partition(cfg, window, naive))
                    for data_file in replaced:
                        overwrite.delete_data_file(data_file)
                    for path in paths:
                        overwrite.append_data_file(parquet_file_to_data_file(table.io, tx.table_metadata, path))
        except (CommitFailedException, ValidationException) as exc:  # the table moved under this commit
            if attempt == COMMIT_ATTEMPTS:
                raise TargetError(
                    f"Iceberg table {cfg.iceberg_identifier}: the commit of {window.day} conflicted {attempt} times "
                    f"with other commits ({exc}); a retry starts over"
                ) from None
            time.sleep(COMMIT_BACKOFF_SECONDS * attempt)
            continue
        current = table.current_snapshot()  # the table as this commit left it (not a later commit's)
        assert current is not None
        return current.snapshot_id, table.metadata_location
    raise AssertionError("unreachable")


def _day_partition(cfg: TableExport, window: TimeRange, naive: bool) -> Any:
    """The day's rows as a predicate whose projection on ``day(timestamp_column)`` is that one day
    (``ts < end`` would project onto the next day's partition too): ``start <= ts <= end - 1 µs``."""
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

    start, end = window.bounds(naive=naive)
    last = end - timedelta(microseconds=1)
    column = cfg.timestamp_column
    return And(
        GreaterThanOrEqual(term=column, value=start.isoformat()), LessThanOrEqual(term=column, value=last.isoformat())
    )


def day_files(table: Table, cfg: TableExport, window: TimeRange, naive: bool) -> list[Any]:
    """The data files (pyiceberg ``DataFile``) of the table's current snapshot that hold the day's
    rows: those of its ``day(timestamp_column)`` partition. A file of the window in another partition
    (the table partitioned otherwise) is refused: replacing the day would lose its other rows."""
    ordinal = (window.start.date() - EPOCH_DAY).days
    files = []
    for task in table.scan(row_filter=day_filter(cfg, window, naive)).plan_files():
        partition = task.file.partition
        if len(partition) != 1 or partition[0] is None:
            raise TargetError(
                f"Iceberg table {cfg.iceberg_identifier} holds {task.file.file_path}, which is not in a "
                f"day({cfg.timestamp_column}) partition: the day cannot be replaced by whole files"
            )
        if partition[0] == ordinal:
            files.append(task.file)
    return files


def _remove(store: Store, bucket: str, keys: list[str]) -> None:
    try:
        store.delete(bucket, keys)
    except Exception as exc:  # best effort: files no snapshot references
        log.warning("could not remove %d uncommitted file(s) from %s: %s", len(keys), bucket, exc)


@dataclass(frozen=True)
class Day:
    """A day of the table's current snapshot: its rows (from the files' metadata), its data files
    (path and size), and the summary of the snapshot that last committed it (empty: none of ours)."""

    rows: int
    files: tuple[tuple[str, int], ...]
    summary: dict[str, str]
    columns: tuple[str, ...] = ()  # the table's top-level columns now (every column it ever had)


@released()
def read_day(store: Store, params: CatalogParams, cfg: TableExport, window: TimeRange, naive: bool) -> Day:
    """The day of ``window`` as the table's current snapshot holds it."""
    catalog = load_catalog(params, store)
    table = catalog.load_table(cfg.iceberg_identifier)
    rows = table.scan(row_filter=day_filter(cfg, window, naive)).count()
    files = tuple((f.file_path, int(f.file_size_in_bytes)) for f in day_files(table, cfg, window, naive))
    start = window.start.isoformat()
    columns = tuple(field.name for field in table.schema().fields)
    snapshot = table.current_snapshot()
    while snapshot is not None:
        summary = snapshot.summary
        found = {
            k[len(SUMMARY_PREFIX) :]: v
            for k, v in (summary.additional_properties if summary else {}).items()
            if k.startswith(SUMMARY_PREFIX)
        }
        if found.get("interval_start") == start:
            return Day(rows, files, found, columns)
        snapshot = table.snapshot_by_id(snapshot.parent_snapshot_id) if snapshot.parent_snapshot_id else None
    return Day(rows, files, {}, columns)
