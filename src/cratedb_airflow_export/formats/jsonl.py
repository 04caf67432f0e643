"""JSON Lines: one JSON object per line (gzip, zstd or none), in one of two styles (``json_style``).

``iso`` (the stream engine's default): timestamps with time zone as ISO 8601 in UTC with
microseconds and offset (``2024-01-04T12:00:00.123456+00:00``), without time zone without offset;
objects nested (CrateDB OBJECT / json); arrays as arrays; NULL as ``null``; UTF-8, not ``\\u``
escapes; NaN and infinities as ``null`` (JSON has no such numbers); bytea as base64.

``cratedb``: the shape CrateDB's ``COPY TO ... format = 'json_object'`` writes (docs/cratedb.md),
so that a table can move between the engines without its readers noticing: timestamps and dates as
epoch milliseconds (floored), NULL columns left out of the line (written as ``null`` when the
table's ``columns`` are listed, as COPY TO does then), objects nested, ``geo_point`` as
``[lon, lat]``, numeric as a JSON number (its exact text), bit as ``"B'1010'"``, partition columns
as JSON strings; everything else as in ``iso``.

Encoded column by column with Arrow compute kernels, not row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from cratedb_airflow_export.formats.base import Encoder, TextEncoder, open_decompressed
from cratedb_airflow_export.formats.fields import is_json, is_partition, source_type
from cratedb_airflow_export.formats.text import (
    const,
    contiguous,
    float_json,
    join,
    json_strings,
    python_json,
    timestamp_parts,
)

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def json_values(array: pa.Array, field: pa.Field) -> pa.Array:
    """Each value's JSON text, as a string array without nulls."""
    kind = field.type
    if pa.types.is_null(kind):
        return pc.fill_null(pc.cast(array, pa.string()), const("null"))
    if is_json(field) and pa.types.is_string(kind):
        text = array
    elif pa.types.is_boolean(kind):
        text = pc.if_else(array, const("true"), const("false"))
    elif pa.types.is_integer(kind):
        text = pc.cast(array, pa.string())
    elif pa.types.is_floating(kind):
        text = float_json(array)
    elif pa.types.is_timestamp(kind):
        text = join('"', *timestamp_parts(array), '"')  # nothing to escape
    elif pa.types.is_date(kind):
        text = join('"', pc.strftime(array, format="%Y-%m-%d"), '"')
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = json_strings(array)
    else:  # lists, binary, anything else: per value
        return pa.array([python_json(v, kind, is_json(field)) for v in array.to_pylist()], pa.string())
    return pc.fill_null(text, const("null"))


def json_parts(array: pa.Array, field: pa.Field) -> list[Any]:
    """Each value's JSON text as pieces for the line join: timestamps without NULLs go in as their
    pieces (one string array less to build), everything else as :func:`json_values`."""
    if pa.types.is_timestamp(field.type) and array.null_count == 0:
        return ['"', *timestamp_parts(array), '"']
    return [json_values(array, field)]


def encode_jsonl(schema: pa.Schema, batch: pa.RecordBatch) -> Any:
    """The batch's JSON Lines (``iso`` style), uncompressed. Pure: safe to run on several threads at once."""
    if batch.num_rows == 0:
        return b""
    parts: list[Any] = []
    for index, field in enumerate(schema):
        parts.append(("{" if index == 0 else ",") + json.dumps(field.name, ensure_ascii=False) + ":")
        parts.extend(json_parts(batch.column(index), field))
    parts.append("}\n")
    merged: list[Any] = []  # adjacent constant pieces as one
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return contiguous(join(*merged))


MS_PER_DAY = 86_400_000


def epoch_millis(array: pa.Array) -> pa.Array:
    """Timestamps or dates as int64 epoch milliseconds, floored (CrateDB keeps milliseconds)."""
    if pa.types.is_date(array.type):
        days = pc.cast(pc.cast(array, pa.date32()), pa.int32())
        return pc.multiply(pc.cast(days, pa.int64()), const(MS_PER_DAY))
    us = pc.cast(pc.cast(array, pa.timestamp("us", tz=array.type.tz)), pa.int64())
    ms = pc.divide(us, const(1000))  # truncates toward zero: floor it for times before 1970
    below = pc.less(pc.subtract(us, pc.multiply(ms, const(1000))), const(0))
    return pc.subtract(ms, pc.cast(below, pa.int64()))


def _cratedb_python(value: Any) -> Any:
    """A list value's items in the ``cratedb`` style (the slow path: lists of timestamps or dates)."""
    if isinstance(value, list):
        return [_cratedb_python(v) for v in value]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return (moment - EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, date):
        return (value - EPOCH.date()) // timedelta(milliseconds=1)
    return value


def _cratedb_array(values: list[Any], declared: str) -> str:
    items = ["null" if v is None else (v if declared == "numeric_array" else json.dumps(f"B'{v}'")) for v in values]
    return "[" + ",".join(items) + "]"


def _is_temporal(kind: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(kind) or pa.types.is_date(kind))


def cratedb_values(array: pa.Array, field: pa.Field) -> pa.Array:
    """Each value's JSON text in the ``cratedb`` style; NULL where the value is NULL: such columns are
    left out of the line. NaN and the infinities are strings, as COPY TO writes them. Partition columns are
    JSON strings, as COPY TO writes them (CrateDB 5.9 and later: ``"month":"1704067200000"``)."""
    text = _cratedb_value_texts(array, field)
    if is_partition(field) and not pa.types.is_string(field.type):
        return join('"', text, '"')  # null stays null: left out
    return text


def _cratedb_value_texts(array: pa.Array, field: pa.Field) -> pa.Array:
    kind = field.type
    missing = pa.nulls(1, pa.string())[0]
    declared = source_type(field)
    if declared == "numeric":  # the exact decimal text is a JSON number, as COPY TO writes it
        return array
    if declared == "bit":  # COPY TO writes bit(n) as its SQL literal
        return join("\"B'", array, "'\"")
    if declared in ("numeric_array", "bit_array"):
        texts = [None if v is None else _cratedb_array(v, declared) for v in array.to_pylist()]
        return pa.array(texts, pa.string())
    if _is_temporal(kind):
        return pc.cast(epoch_millis(array), pa.string())
    if pa.types.is_floating(kind):
        return float_json(array)
    if pa.types.is_list(kind) and _is_temporal(kind.value_type):
        texts = [None if v is None else json.dumps(_cratedb_python(v)) for v in array.to_pylist()]
        return pa.array(texts, pa.string())
    return pc.if_else(pc.is_valid(array), json_values(array, field), missing)


# Schema metadata: the table's ``columns`` were listed. COPY TO then writes NULL as ``null`` instead
# of leaving the column out (seen on CrateDB 5.10.16 and 6.4.3).
LISTED_COLUMNS = {b"cratedb_columns": b"listed"}


def encode_cratedb_jsonl(schema: pa.Schema, batch: pa.RecordBatch) -> Any:
    """The batch's JSON Lines in the ``cratedb`` style, uncompressed; pure, like :func:`encode_jsonl`."""
    if batch.num_rows == 0:
        return b""
    listed = bool(schema.metadata and schema.metadata.get(b"cratedb_columns") == b"listed")
    members = []
    for column, field in zip(batch.columns, schema, strict=True):
        values = cratedb_values(column, field)
        if listed:
            values = pc.fill_null(values, const("null"))
        members.append(pc.fill_null(join(f",{json.dumps(field.name, ensure_ascii=False)}:", values), const("")))
    body = join(*members)
    # every present member starts with ","; the line's first one loses it
    return contiguous(join("{", pc.utf8_ltrim(body, characters=","), "}\n"))


class JsonLinesEncoder(TextEncoder):
    encode = staticmethod(encode_jsonl)


class CrateDBJsonLinesEncoder(TextEncoder):
    """JSON Lines in the shape of CrateDB's ``COPY TO`` (``json_style: cratedb``)."""

    encode = staticmethod(encode_cratedb_jsonl)


def read_rows(stream: BinaryIO) -> Iterator[dict[str, Any]]:
    """The rows of a JSON Lines file (this encoder's, or CrateDB's COPY TO lines), one object per
    line, values as JSON parsed them (objects nested, timestamps as text or epoch milliseconds)."""
    for line in iter_lines(stream):
        if line.strip():
            yield json.loads(line)


def iter_lines(stream: BinaryIO, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Lines of a binary stream, read a chunk at a time (bounded memory)."""
    rest = b""
    while chunk := stream.read(chunk_size):
        *lines, rest = (rest + chunk).split(b"\n")
        yield from lines
    if rest:
        yield rest


def encoder_for(json_style: str | None = None) -> type[Encoder]:
    return CrateDBJsonLinesEncoder if json_style == "cratedb" else JsonLinesEncoder


def read_file(path: str, compression: str) -> Iterator[dict[str, Any]]:
    with open_decompressed(path, compression) as stream:
        yield from read_rows(stream)
