"""Readers: a window of the source as typed Arrow record batches (the ``stream`` engine's input).

Two paths:
- CrateDB (and the fallback): a server-side cursor, ``FETCH`` by ``FETCH``, rows converted to Arrow
  column by column, one batch ahead in a background thread (:class:`Prefetcher`).
- PostgreSQL: the ADBC PostgreSQL driver, which reads ``COPY ... TO STDOUT (FORMAT binary)``
  straight into Arrow batches in C (:func:`adbc_batches`). CrateDB has no COPY TO STDOUT.

The Arrow schema comes from the columns' PostgreSQL-wire type OIDs, which CrateDB reports too
(docs/cratedb.md): TEXT -> varchar, BIGINT -> int8, TIMESTAMPTZ -> 1184, OBJECT -> json (114),
geo_point -> point (600), arrays -> the matching array OIDs, nested arrays -> json.

| source type | Arrow type |
|---|---|
| boolean | bool |
| smallint / integer / bigint | int16 / int32 / int64 |
| real / double precision | float32 / float64 |
| numeric | string (exact decimal text) |
| text, varchar, char, uuid, anything unknown | string |
| timestamp with time zone | timestamp[us, UTC] |
| timestamp without time zone | timestamp[us] |
| date | date32 |
| json, jsonb (CrateDB OBJECT, nested arrays) | string holding JSON text (field metadata ``json=true``) |
| geo_point / point | list<float64> ``[lon, lat]`` |
| bytea | binary |
| arrays of the above | list<...> |

JSON arrives as text and stays text: no parse and re-serialise per value.
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from psycopg.types.string import TextLoader

JSON_META = {b"json": b"true"}
ADBC_BATCH_BYTES = 2 * 1024 * 1024

SCALARS: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    700: pa.float32(),
    701: pa.float64(),
    1700: pa.string(),
    25: pa.string(),
    1043: pa.string(),
    1042: pa.string(),
    19: pa.string(),
    2950: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    17: pa.binary(),
    600: pa.list_(pa.float64()),
}
JSON_OIDS = {114, 3802}
ARRAYS: dict[int, int] = {  # array OID -> element OID
    1000: 16,
    1016: 20,
    1005: 21,
    1007: 23,
    1021: 700,
    1022: 701,
    1231: 1700,
    1009: 25,
    1015: 1043,
    1014: 1042,
    2951: 2950,
    1182: 1082,
    1115: 1114,
    1185: 1184,
    1001: 17,
    1017: 600,
    199: 114,
    3807: 3802,
}


def register_loaders(conn: Any) -> None:
    """json/jsonb as the text the server sent (valid JSON), not parsed into Python objects.
    psycopg's own text loader (its C implementation with psycopg[binary])."""
    for oid in JSON_OIDS:
        conn.adapters.register_loader(oid, TextLoader)


def field_for(name: str, oid: int) -> pa.Field:
    if oid in JSON_OIDS:
        return pa.field(name, pa.string(), metadata=JSON_META)
    if oid in ARRAYS:
        element = field_for("item", ARRAYS[oid])
        return pa.field(name, pa.list_(element), metadata=element.metadata)
    return pa.field(name, SCALARS.get(oid, pa.string()))


def schema_for(description: Sequence[Any]) -> pa.Schema:
    """Arrow schema from a psycopg ``cursor.description``."""
    return pa.schema([field_for(column.name, column.type_code) for column in description])


def _column(values: list[Any], field: pa.Field) -> pa.Array:
    try:
        return pa.array(values, type=field.type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if pa.types.is_string(field.type):  # unknown types: their text form
            return pa.array([None if v is None else str(v) for v in values], type=pa.string())
        raise


def to_batch(rows: Sequence[Sequence[Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Rows (tuples from the cursor) -> one record batch, converted column by column."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    return pa.RecordBatch.from_arrays(
        [_column(list(values), field) for values, field in zip(columns, schema, strict=True)], schema=schema
    )


def is_json(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(b"json") == b"true")


class Prefetcher:
    """Runs ``FETCH`` and the Arrow conversion in a background thread, one batch ahead, so the
    database and the network work while the previous batch is encoded and uploaded.

    Iterate for record batches; :attr:`schema` is set once the first ``FETCH`` returned (also for
    an empty window). Leaving the ``with`` block stops the thread.
    """

    def __init__(self, cursor: Any, fetch_sql: str, params: Sequence[Any] = (), depth: int = 1) -> None:
        self.cursor, self.fetch_sql, self.params = cursor, fetch_sql, tuple(params)
        self.schema: pa.Schema | None = None
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="cratedb-fetch", daemon=True)

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a producer waiting on a full queue
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            schema: pa.Schema | None = None
            while not self._stop.is_set():
                self.cursor.execute(self.fetch_sql, self.params)
                if schema is None:
                    schema = schema_for(self.cursor.description)
                    self.schema = schema
                rows = self.cursor.fetchall()
                if not rows:
                    break
                if not self._put(("batch", to_batch(rows, schema))):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(("error", exc))

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            kind, value = self._queue.get()
            if kind == "batch":
                yield value
            elif kind == "end":
                return
            else:
                raise value


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    """ADBC's schema in this module's terms: extension types by their storage (``arrow.json`` -> string
    with json metadata; ``arrow.opaque`` such as numeric -> its text), no driver metadata."""
    fields = []
    for field in schema:
        kind = field.type
        if isinstance(kind, pa.BaseExtensionType):
            json_text = kind.extension_name == "arrow.json"
            fields.append(pa.field(field.name, kind.storage_type, metadata=JSON_META if json_text else None))
        else:
            fields.append(pa.field(field.name, kind))
    return pa.schema(fields)


def _storage_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch with extension-typed columns replaced by their storage (as :func:`normalize_schema`)."""
    columns = [c.storage if isinstance(c.type, pa.BaseExtensionType) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@contextmanager
def adbc_batches(uri: str, select_sql: str) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """Stream a parameterless SELECT from PostgreSQL through the ADBC driver (COPY binary).

    Uses ADBC's low-level API: its DB-API module imports ``pyarrow.dataset`` and with it pandas,
    60 MB of resident memory a task does not need.
    """
    import adbc_driver_manager
    import adbc_driver_postgresql

    with (
        adbc_driver_postgresql.connect(uri) as database,
        adbc_driver_manager.AdbcConnection(database) as conn,
        adbc_driver_manager.AdbcStatement(conn) as statement,
    ):
        statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(ADBC_BATCH_BYTES)})
        statement.set_sql_query(select_sql)
        stream, _ = statement.execute_query()
        with pa.RecordBatchReader.from_stream(stream) as reader:
            schema = normalize_schema(reader.schema)
            yield schema, (_storage_batch(batch, schema) for batch in reader)


def adbc_available() -> bool:
    return importlib.util.find_spec("adbc_driver_postgresql") is not None
