"""OBJECT columns as Parquet structs (``objects: struct``), so that lake engines filter on
``tags.host`` without parsing text.

CrateDB lists every key of an object as a sub-column of the table (``tags['host']``, with its type;
``information_schema.columns``). With ``objects: struct``, each OBJECT column whose keys all have a
type below becomes a struct of them (nested objects nested structs, ``geo_point`` a list of two
doubles ``[lon, lat]``, arrays lists); an array of objects becomes a list of structs. The JSON text
the source sends is parsed by Arrow's JSON reader in C, a batch at a time; a NULL object stays NULL,
a key missing from a row is NULL in the struct.

A key the struct does not have (a row of a dynamic object brought it after the export read the
table's columns) fails the attempt (:class:`~.errors.SchemaMoved`, retried: the next attempt reads
the new key) instead of dropping it. An object without known keys (PostgreSQL ``json``, CrateDB
``OBJECT(IGNORED)``, an object with no sub-columns yet) or with a key of another type stays JSON
text, as with ``objects: json`` (the default).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from cratedb_airflow_export.errors import SchemaMoved
from cratedb_airflow_export.formats.fields import is_json
from cratedb_airflow_export.formats.text import const, contiguous, join

STRUCT_META = {b"object": b"struct"}  # a struct written from a source OBJECT (restore turns it back)
TIMESTAMPS = {
    "timestamp with time zone": pa.timestamp("ms", tz="UTC"),
    "timestamp without time zone": pa.timestamp("ms"),
}
SCALARS: dict[str, pa.DataType] = {
    "text": pa.string(),
    "character varying": pa.string(),
    "varchar": pa.string(),
    "boolean": pa.bool_(),
    "byte": pa.int8(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "geo_point": pa.list_(pa.float64()),
    **TIMESTAMPS,
}


def _key_tree(keys: Mapping[str, str]) -> dict[str, Any]:
    """``{"host": "text", "a": "object", "a['b']": "integer"}`` -> ``{"host": "text", "a": {"b": "integer"}}``."""
    tree: dict[str, Any] = {}
    for path, kind in keys.items():
        parts = path.replace("']", "").split("['")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return {}
            node = child
        if kind.lower() in {"object", "object_array"}:
            node.setdefault(parts[-1], {} if kind.lower() == "object" else {"[]": {}})
        else:
            node[parts[-1]] = kind.lower()
    return tree


def _type(node: Any) -> pa.DataType | None:
    if isinstance(node, dict):
        if set(node) == {"[]"}:
            return None  # arrays of objects inside objects: kept as JSON text
        if not node:
            return None  # Parquet has no struct without fields
        fields = []
        for name, child in node.items():
            kind = _type(child)
            if kind is None:
                return None
            fields.append(pa.field(name, kind))
        return pa.struct(fields)
    if node.endswith("_array"):
        element = SCALARS.get(node[: -len("_array")])
        return None if element is None else pa.list_(element)
    return SCALARS.get(node)


def struct_type(keys: Mapping[str, str]) -> pa.StructType | None:
    """The struct of an object with ``keys`` (``schema.object_keys``); None when it has none or one
    of a type without a struct form here."""
    kind = _type(_key_tree(keys))
    return kind if isinstance(kind, pa.StructType) else None


def _parse_type(kind: pa.DataType) -> pa.DataType:
    """What Arrow's JSON reader parses a value into: timestamps arrive as epoch milliseconds."""
    if pa.types.is_timestamp(kind):
        return pa.int64()
    if pa.types.is_list(kind):
        return pa.list_(_parse_type(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _parse_type(f.type)) for f in kind])
    return kind


def _cast(array: pa.Array, kind: pa.DataType) -> pa.Array:
    return array if array.type == kind else array.cast(kind)


class StructColumns:
    """Turns the JSON text of the objects with a struct form into structs, batch by batch."""

    def __init__(self, schema: pa.Schema, source_types: Mapping[str, str], key_types: Mapping[str, Mapping[str, str]]):
        self.types: dict[str, pa.DataType] = {}
        fields = []
        for field in schema:
            struct = struct_type(key_types.get(field.name) or {}) if is_json(field) else None
            kind: pa.DataType | None = None
            if struct is not None and source_types.get(field.name, "").lower() == "object":
                kind = struct
            elif struct is not None and pa.types.is_list(field.type):
                kind = pa.list_(struct)
            if kind is None:
                fields.append(field)
                continue
            self.types[field.name] = kind
            fields.append(pa.field(field.name, kind, metadata=STRUCT_META))
        self.schema = pa.schema(fields, metadata=schema.metadata)

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.types:
            return batch
        columns = []
        for field, column in zip(self.schema, batch.columns, strict=True):
            kind = self.types.get(field.name)
            columns.append(column if kind is None else self._column(field.name, column, kind))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def _column(self, name: str, column: pa.Array, kind: pa.DataType) -> pa.Array:
        if pa.types.is_list(kind):
            offsets = pc.subtract(column.offsets, column.offsets[0])
            values = self._structs(name, column.flatten(), kind.value_type)
            return pa.ListArray.from_arrays(offsets, values, type=kind, mask=column.is_null())
        return self._structs(name, column, kind)

    def _structs(self, name: str, texts: pa.Array, kind: pa.StructType) -> pa.Array:
        if len(texts) == 0:
            return pa.array([], type=kind)
        # one object per line (JSON text holds no raw newline: inside strings it is escaped), NULL as {}
        objects = pc.if_else(pc.equal(pc.fill_null(texts, const("null")), const("null")), const("{}"), texts)
        data = contiguous(join(objects, "\n"))
        parse = pa.schema([pa.field(f.name, _parse_type(f.type)) for f in kind])
        try:
            table = pajson.read_json(
                pa.BufferReader(data),
                read_options=pajson.ReadOptions(block_size=max(data.size + 1, 1 << 20), use_threads=True),
                parse_options=pajson.ParseOptions(explicit_schema=parse, unexpected_field_behavior="error"),
            )
        except pa.ArrowInvalid as exc:
            raise SchemaMoved(
                f"object column {name!r} holds {_misfit(data, kind) or 'a value'} that its struct {kind} (the keys "
                f"the table listed when the export started) does not have ({exc}); nothing was published, the next "
                "attempt reads the table's keys again"
            ) from None
        children = [_cast(table.column(f.name).combine_chunks(), f.type) for f in kind]
        mask = pc.equal(pc.fill_null(texts, const("null")), const("null"))
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)


def _misfit(data: pa.Buffer, kind: pa.StructType) -> str | None:
    """The keys of the objects in ``data`` that ``kind`` lacks (the error path: parsed again, inferring)."""
    try:
        inferred = pajson.read_json(pa.BufferReader(data)).schema
    except pa.ArrowInvalid:
        return None
    extra = [name for name in inferred.names if kind.get_field_index(name) < 0]
    return f"key(s) {extra}" if extra else None


def is_struct_object(field: pa.Field) -> bool:
    """A struct (or list of structs) written from a source OBJECT."""
    return bool(field.metadata and field.metadata.get(b"object") == b"struct")


def plain(value: Any) -> Any:
    """A struct value read back (``to_pylist``) as the JSON the source had: timestamps as epoch
    milliseconds (what CrateDB's objects hold)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(stamp.timestamp() * 1000)
    return value
