"""Output formats of the ``stream`` engine, written from Arrow record batches.

- ``jsonl``: one JSON object per line (gzip, zstd or none). Timestamps with time zone as ISO 8601
  in UTC with microseconds and offset (``2024-01-04T12:00:00.123456+00:00``), without time zone
  without offset; objects nested (CrateDB OBJECT / json); arrays as arrays; NULL as ``null``;
  UTF-8, not ``\\u`` escapes; NaN and infinities as ``null`` (JSON has no such numbers);
  bytea as base64. Encoded column by column with Arrow compute kernels, not row by row.
- ``csv``: RFC 4180 (header row, fields quoted when needed, CRLF line ends; gzip or none).
  Timestamps as in JSON Lines; objects and arrays as JSON text.
- ``parquet``: typed schema (see ``reader.py``), zstd (default), snappy, gzip or none, row groups of
  ``parquet_row_group_size`` rows. Objects are JSON text columns (Parquet has no schemaless
  object type), arrays are lists.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from abc import ABC, abstractmethod
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cratedb_airflow_export.reader import is_json

EXTENSIONS = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
COMPRESSION_SUFFIX = {"gzip": ".gz", "zstd": ".zst", "none": ""}
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def file_name(fmt: str, compression: str, index: int) -> str:
    """``part-00000.jsonl.gz``, ``part-00001.csv``, ``part-00000.parquet`` (Parquet compresses inside)."""
    suffix = "" if fmt == "parquet" else COMPRESSION_SUFFIX[compression]
    return f"part-{index:05d}{EXTENSIONS[fmt]}{suffix}"


GZIP_LEVEL = 6  # Arrow's gzip stream defaults to 9: about 3x slower for 1-2% smaller files


class _Forward:
    """Passes writes on to ``sink``, optionally through a gzip compressor; closing the Arrow stream
    around it flushes the compressor but leaves ``sink`` open."""

    closed = False

    def __init__(self, sink: BinaryIO, gzip: bool = False) -> None:
        self._sink = sink
        self._gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip else None  # 31: gzip container

    def write(self, data: Any) -> int:
        self._sink.write(self._gzip.compress(data) if self._gzip else bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._gzip is not None:
            self._sink.write(self._gzip.flush())
            self._gzip = None


class Encoder(ABC):
    """Encodes batches into one file written to ``sink`` (anything with ``write(bytes)``)."""

    def __init__(self, schema: pa.Schema, sink: BinaryIO, compression: str) -> None:
        self.schema, self.compression = schema, compression
        text = not isinstance(self, ParquetEncoder)  # Parquet compresses inside the file
        self._raw = pa.PythonFile(_Forward(sink, gzip=text and compression == "gzip"), mode="w")
        self._out: Any = self._raw
        if text and compression == "zstd":
            self._out = pa.CompressedOutputStream(self._raw, "zstd")

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None:
        self._out.close()  # flushes a compressor's trailer into the sink


# --- JSON Lines ---------------------------------------------------------------------------------


def _quote(strings: pa.Array) -> pa.Array:
    escaped = pc.replace_substring(strings, "\\", "\\\\")
    for char, code in (('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        escaped = pc.replace_substring(escaped, char, code)
    return pc.binary_join_element_wise('"', escaped, '"', "")


def _python_json(value: Any, field_type: pa.DataType, json_text: bool) -> str:
    """Slow path for values Arrow kernels cannot encode (lists, bytes, control characters)."""
    if value is None:
        return "null"
    if json_text and isinstance(value, str):
        return value
    if isinstance(value, list):
        item_type = field_type.value_type if pa.types.is_list(field_type) else pa.null()
        return "[" + ",".join(_python_json(v, item_type, json_text) for v in value) + "]"
    if isinstance(value, (bytes, bytearray)):
        return json.dumps(base64.b64encode(value).decode("ascii"))
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    if hasattr(value, "isoformat"):
        return json.dumps(_iso(value))
    return json.dumps(value, ensure_ascii=False)


def _iso(value: Any) -> str:
    if getattr(value, "tzinfo", None) is not None:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"
    return value.isoformat()


def _timestamps(array: pa.Array) -> pa.Array:
    """ISO 8601 text with microseconds; ``+00:00`` for timestamps with a time zone (stored as UTC)."""
    us = pc.cast(array, pa.timestamp("us", tz=array.type.tz))
    text = pc.strftime(us, format="%Y-%m-%dT%H:%M:%S")  # %S carries the .ffffff of the unit
    return pc.binary_join_element_wise(text, "+00:00", "") if array.type.tz else text


def json_values(array: pa.Array, field: pa.Field) -> pa.Array:
    """Each value's JSON text, as a string array without nulls."""
    kind = field.type
    if pa.types.is_null(kind):
        return pa.array(["null"] * len(array), pa.string())
    if is_json(field) and pa.types.is_string(kind):
        text = array
    elif pa.types.is_boolean(kind):
        text = pc.if_else(array, "true", "false")
    elif pa.types.is_integer(kind):
        text = pc.cast(array, pa.string())
    elif pa.types.is_floating(kind):
        finite = pc.is_finite(array)
        text = pc.if_else(finite, pc.cast(array, pa.string()), pa.scalar(None, pa.string()))
    elif pa.types.is_timestamp(kind):
        text = _quote(_timestamps(array))
    elif pa.types.is_date(kind):
        text = _quote(pc.strftime(array, format="%Y-%m-%d"))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _quote(array)
        special = pc.match_substring_regex(array, CONTROL)
        if pc.any(special).as_py():
            slow = [_python_json(v, kind, False) for v in array.filter(special).to_pylist()]
            text = pc.replace_with_mask(text, special, pa.array(slow, pa.string()))
    else:  # lists, binary, anything else: per value
        return pa.array([_python_json(v, kind, is_json(field)) for v in array.to_pylist()], pa.string())
    return pc.fill_null(text, "null")


def encode_jsonl(schema: pa.Schema, batch: pa.RecordBatch) -> Any:
    """The batch's JSON Lines, uncompressed. Pure: safe to run on several threads at once."""
    if batch.num_rows == 0:
        return b""
    parts: list[Any] = []
    for index, field in enumerate(schema):
        parts.append(("{" if index == 0 else ",") + json.dumps(field.name, ensure_ascii=False) + ":")
        parts.append(json_values(batch.column(index), field))
    parts.append("}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    # the lines are contiguous in the array's data buffer: return that slice, no per-row copy
    _, offsets_buffer, data = lines.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset)
    return data[offsets[0].as_py() : offsets[len(lines)].as_py()]


class JsonLinesEncoder(Encoder):
    encode = staticmethod(encode_jsonl)

    def write(self, batch: pa.RecordBatch) -> None:
        self.write_encoded(encode_jsonl(self.schema, batch))

    def write_encoded(self, data: Any) -> None:
        """Append what :func:`encode_jsonl` returned (compression and order stay sequential)."""
        if len(data):
            self._out.write(data)


# --- CSV ----------------------------------------------------------------------------------------


def csv_column(array: pa.Array, field: pa.Field) -> pa.Array:
    kind = field.type
    if pa.types.is_timestamp(kind):
        return _timestamps(array)
    if pa.types.is_list(kind) or pa.types.is_binary(kind):
        values = [None if v is None else _python_json(v, kind, is_json(field)) for v in array.to_pylist()]
        return pa.array(values, pa.string())
    return array


def _csv(schema: pa.Schema, batch: pa.RecordBatch, header: bool) -> Any:
    columns = [csv_column(batch.column(i), field) for i, field in enumerate(schema)]
    sink = pa.BufferOutputStream()
    options = pacsv.WriteOptions(include_header=header, quoting_style="needed", eol="\r\n")
    pacsv.write_csv(pa.Table.from_arrays(columns, names=schema.names), sink, write_options=options)
    return sink.getvalue()


def encode_csv(schema: pa.Schema, batch: pa.RecordBatch) -> Any:
    """The batch's CSV rows without header, uncompressed. Pure: safe to run on several threads."""
    return _csv(schema, batch, header=False) if batch.num_rows else b""


class CsvEncoder(Encoder):
    encode = staticmethod(encode_csv)

    def __init__(self, schema: pa.Schema, sink: BinaryIO, compression: str) -> None:
        super().__init__(schema, sink, compression)
        self._out.write(_csv(schema, pa.RecordBatch.from_pylist([], schema=schema), header=True))

    def write(self, batch: pa.RecordBatch) -> None:
        self.write_encoded(encode_csv(self.schema, batch))

    def write_encoded(self, data: Any) -> None:
        """Append what :func:`encode_csv` returned (the header went first, at open)."""
        if len(data):
            self._out.write(data)


# --- Parquet ------------------------------------------------------------------------------------


class ParquetEncoder(Encoder):
    def __init__(self, schema: pa.Schema, sink: BinaryIO, compression: str, row_group_size: int) -> None:
        super().__init__(schema, sink, compression)
        self.row_group_size = row_group_size
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer = pq.ParquetWriter(self._raw, schema, compression=compression)

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self._pending_rows:
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            self._writer.write_table(table, row_group_size=self.row_group_size)
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


ENCODERS: dict[str, type[Encoder]] = {"jsonl": JsonLinesEncoder, "csv": CsvEncoder, "parquet": ParquetEncoder}


def make_encoder(fmt: str, schema: pa.Schema, sink: BinaryIO, compression: str, row_group_size: int) -> Encoder:
    if fmt == "parquet":
        return ParquetEncoder(schema, sink, compression, row_group_size)
    return ENCODERS[fmt](schema, sink, compression)
