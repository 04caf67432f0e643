"""JSON Lines: one JSON object per line (gzip, zstd or none).

Timestamps with time zone as ISO 8601 in UTC with microseconds and offset
(``2024-01-04T12:00:00.123456+00:00``), without time zone without offset; objects nested (CrateDB
OBJECT / json); arrays as arrays; NULL as ``null``; UTF-8, not ``\\u`` escapes; NaN and infinities
as ``null`` (JSON has no such numbers); bytea as base64. Encoded column by column with Arrow
compute kernels, not row by row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc

from cratedb_airflow_export.formats.base import TextEncoder
from cratedb_airflow_export.formats.text import const, join, json_strings, python_json, timestamp_parts
from cratedb_airflow_export.readers import is_json


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
        finite = pc.is_finite(array)
        text = pc.if_else(finite, pc.cast(array, pa.string()), pa.nulls(1, pa.string())[0])
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
    """The batch's JSON Lines, uncompressed. Pure: safe to run on several threads at once."""
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
    lines = join(*merged)
    # the lines are contiguous in the array's data buffer: return that slice, no per-row copy
    _, offsets_buffer, data = lines.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset)
    return data[offsets[0].as_py() : offsets[len(lines)].as_py()]


class JsonLinesEncoder(TextEncoder):
    encode = staticmethod(encode_jsonl)


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
