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
import functools
import json
import math
import struct
import threading
from abc import ABC, abstractmethod
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from cratedb_airflow_export.compression import GZIP_LEVEL, GzipMember, deflate
from cratedb_airflow_export.reader import is_json

EXTENSIONS = {"jsonl": ".jsonl", "csv": ".csv", "parquet": ".parquet"}
COMPRESSION_SUFFIX = {"gzip": ".gz", "zstd": ".zst", "none": ""}
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def file_name(fmt: str, compression: str, index: int) -> str:
    """``part-00000.jsonl.gz``, ``part-00001.csv``, ``part-00000.parquet`` (Parquet compresses inside)."""
    suffix = "" if fmt == "parquet" else COMPRESSION_SUFFIX[compression]
    return f"part-{index:05d}{EXTENSIONS[fmt]}{suffix}"


class _Forward:
    """An Arrow output stream's target: passes writes on to ``sink``; closing the stream leaves
    ``sink`` open."""

    closed = False

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink

    def write(self, data: Any) -> int:
        self._sink.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Encoder(ABC):
    """Encodes batches into one file written to ``sink`` (anything with ``write(bytes)``)."""

    def __init__(self, schema: pa.Schema, sink: BinaryIO, compression: str, level: int | None = None) -> None:
        self.schema, self.compression, self.level, self._sink = schema, compression, level, sink

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the file (footer, compressor trailer); ``sink`` stays open."""


class TextEncoder(Encoder):
    """JSON Lines and CSV. :meth:`prepare` turns a batch into a ready chunk (encoded, and deflated
    for gzip); it is pure, so chunks are prepared on worker threads, and :meth:`write_prepared`
    appends them in order. zstd compresses sequentially in the writing thread (it is fast)."""

    @staticmethod
    @abstractmethod
    def encode(schema: pa.Schema, batch: pa.RecordBatch) -> Any:
        """The batch as uncompressed text (bytes or an Arrow buffer)."""

    def __init__(self, schema: pa.Schema, sink: BinaryIO, compression: str, level: int | None = None) -> None:
        super().__init__(schema, sink, compression, level)
        self._gzip = GzipMember(sink) if compression == "gzip" else None
        zstd = compression == "zstd"
        self._zstd = pa.CompressedOutputStream(pa.PythonFile(_Forward(sink), mode="w"), "zstd") if zstd else None

    @classmethod
    def prepare(cls, schema: pa.Schema, batch: pa.RecordBatch, compression: str, level: int | None = None) -> Any:
        return cls.compress(cls.encode(schema, batch), compression, level)

    @staticmethod
    def compress(data: Any, compression: str, level: int | None = None) -> Any:
        return deflate(data, level or GZIP_LEVEL) if compression == "gzip" else data

    def write(self, batch: pa.RecordBatch) -> None:
        self.write_prepared(self.prepare(self.schema, batch, self.compression, self.level))

    def write_prepared(self, chunk: Any) -> None:
        """Append what :meth:`prepare` returned."""
        if self._gzip is not None:
            self._gzip.write(chunk)
        elif not len(chunk):
            return
        elif self._zstd is not None:
            self._zstd.write(chunk)
        else:
            self._sink.write(chunk)

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        if self._zstd is not None:
            self._zstd.close()  # flushes the compressor's trailer into the sink


# --- Constants for compute functions -------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def const(value: str | int) -> pa.Scalar:
    """An Arrow scalar built from raw buffers. Handing Python values to pyarrow (``pa.scalar``,
    ``pa.array``, or a ``str`` argument to a compute function) converts them, and converting makes
    pyarrow import pandas when it is installed: 40 MB of resident memory the columnar path never
    needs."""
    if isinstance(value, str):
        data = value.encode("utf-8")
        offsets = struct.pack("<ii", 0, len(data))
        return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])[0]
    return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])[0]


def _join(*parts: Any) -> pa.Array:
    """Row-wise concatenation of string arrays and constant ``str`` pieces (NULL if any is NULL)."""
    return pc.binary_join_element_wise(*(const(p) if isinstance(p, str) else p for p in parts), const(""))


# --- JSON Lines ---------------------------------------------------------------------------------


ESCAPE = r'["\\\x00-\x1f]'  # what a JSON string must escape


def _json_strings(strings: pa.Array) -> pa.Array:
    """JSON string literals (NULL stays NULL); escaping runs only when some value needs it."""
    if not pc.any(pc.match_substring_regex(strings, ESCAPE)).as_py():
        return _join('"', strings, '"')
    text = pc.replace_substring(strings, "\\", "\\\\")
    for char, code in (('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, char, code)
    text = _join('"', text, '"')
    special = pc.match_substring_regex(strings, CONTROL)  # other control characters: \u00XX, per value
    if pc.any(special).as_py():
        slow = [_python_json(v, strings.type, False) for v in strings.filter(special).to_pylist()]
        text = pc.replace_with_mask(text, special, pa.array(slow, pa.string()))
    return text


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


US_PER_DAY = 86_400_000_000


_CLOCK_LOCK = threading.Lock()


def _clock_texts() -> pa.Array:
    """``HH:MM:SS`` for each second of a day (86,400 strings, built once)."""
    with _CLOCK_LOCK:  # the encode threads ask at the same time: build once
        return _build_clock_texts()


@functools.cache
def _build_clock_texts() -> pa.Array:
    two = [f"{i:02d}" for i in range(60)]
    minutes = [f"{h}:{m}:" for h in two[:24] for m in two]
    data = "".join(minute + second for minute in minutes for second in two).encode("ascii")
    offsets = struct.pack(f"<{86_401}i", *range(0, 8 * 86_401, 8))  # 8 bytes each
    return pa.Array.from_buffers(pa.string(), 86_400, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _timestamp_parts(array: pa.Array) -> list[Any]:
    """ISO 8601 text with microseconds, as pieces to join; ``+00:00`` for timestamps with a time
    zone (stored as UTC).

    Arrow's ``strftime`` formats value by value (about 1 µs each: 80% of JSON Lines encoding). Here
    the few distinct days are formatted once and looked up, the time of day comes from a table of
    the 86,400 seconds, and only the microseconds are formatted per value (integer to text).
    """
    us = pc.cast(pc.cast(array, pa.timestamp("us", tz=array.type.tz)), pa.int64())
    day = pc.divide(us, const(US_PER_DAY))  # truncates toward zero: floor it for times before 1970
    rest = pc.subtract(us, pc.multiply(day, const(US_PER_DAY)))
    before = pc.cast(pc.less(rest, const(0)), pa.int64())
    day = pc.subtract(day, before)
    rest = pc.add(rest, pc.multiply(before, const(US_PER_DAY)))
    days = pc.dictionary_encode(pc.cast(day, pa.int32()))
    dates = pc.strftime(pc.cast(days.dictionary, pa.date32()), format="%Y-%m-%d")
    seconds = pc.divide(rest, const(1_000_000))
    micros = pc.utf8_lpad(pc.cast(pc.subtract(rest, pc.multiply(seconds, const(1_000_000))), pa.string()), 6, "0")
    clock = pc.take(_clock_texts(), seconds)
    return [pc.take(dates, days.indices), "T", clock, ".", micros, "+00:00" if array.type.tz else ""]


def _timestamps(array: pa.Array) -> pa.Array:
    return _join(*_timestamp_parts(array))


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
        text = _join('"', *_timestamp_parts(array), '"')  # nothing to escape
    elif pa.types.is_date(kind):
        text = _join('"', pc.strftime(array, format="%Y-%m-%d"), '"')
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _json_strings(array)
    else:  # lists, binary, anything else: per value
        return pa.array([_python_json(v, kind, is_json(field)) for v in array.to_pylist()], pa.string())
    return pc.fill_null(text, const("null"))


def json_parts(array: pa.Array, field: pa.Field) -> list[Any]:
    """Each value's JSON text as pieces for the line join: timestamps without NULLs go in as their
    pieces (one string array less to build), everything else as :func:`json_values`."""
    if pa.types.is_timestamp(field.type) and array.null_count == 0:
        return ['"', *_timestamp_parts(array), '"']
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
    lines = _join(*merged)
    # the lines are contiguous in the array's data buffer: return that slice, no per-row copy
    _, offsets_buffer, data = lines.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset)
    return data[offsets[0].as_py() : offsets[len(lines)].as_py()]


class JsonLinesEncoder(TextEncoder):
    encode = staticmethod(encode_jsonl)


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


class CsvEncoder(TextEncoder):
    encode = staticmethod(encode_csv)

    def __init__(self, schema: pa.Schema, sink: BinaryIO, compression: str, level: int | None = None) -> None:
        super().__init__(schema, sink, compression, level)
        empty = pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)
        header = _csv(schema, empty, header=True)
        self.write_prepared(self.compress(header, compression, level))


# --- Parquet ------------------------------------------------------------------------------------


DICTIONARY_MAX_DISTINCT = 0.5  # share of distinct values in the sample above which a column is written plain


def dictionary_columns(schema: pa.Schema, sample: pa.RecordBatch | None) -> list[str] | bool:
    """Columns worth Parquet dictionary encoding, judged on the first batch of the file.

    Arrow dictionary-encodes every column by default and falls back to plain only after the
    dictionary page is full: for unique ids, timestamps and JSON documents that is hashing every
    value for nothing (2,000,000 ``metrics`` rows: 30% of the encoding time, 55 MB more memory).
    Columns with at most half of the sample's values distinct keep the dictionary; lists and
    structs are written plain. Without a sample, Arrow's default (all columns).
    """
    if sample is None or sample.num_rows == 0:
        return True
    chosen = []
    for index, field in enumerate(schema):
        if pa.types.is_nested(field.type) or pa.types.is_null(field.type):
            continue
        try:
            distinct = pc.count_distinct(sample.column(index), mode="all").as_py()
        except pa.ArrowNotImplementedError:  # a type without the kernel: written plain
            continue
        if distinct <= sample.num_rows * DICTIONARY_MAX_DISTINCT:
            chosen.append(field.name)
    return chosen


class ParquetEncoder(Encoder):
    def __init__(
        self,
        schema: pa.Schema,
        sink: BinaryIO,
        compression: str,
        row_group_size: int,
        sample: pa.RecordBatch | None = None,
        level: int | None = None,
    ) -> None:
        super().__init__(schema, sink, compression, level)
        self._raw = pa.PythonFile(_Forward(sink), mode="w")
        self.row_group_size = row_group_size
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.dictionary = dictionary_columns(schema, sample)
        self._writer = pq.ParquetWriter(
            self._raw, schema, compression=compression, compression_level=level, use_dictionary=self.dictionary
        )

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.row_group_size:
            self._flush(self.row_group_size)

    def _flush(self, rows: int) -> None:
        """Write the first ``rows`` pending rows as one row group; the rest stays pending (so every
        row group but a file's last has exactly ``row_group_size`` rows)."""
        pending = pa.Table.from_batches(self._pending, schema=self.schema)
        self._writer.write_table(pending.slice(0, rows), row_group_size=rows)
        rest = pending.slice(rows)
        self._pending, self._pending_rows = rest.to_batches(), rest.num_rows

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        self._writer.close()


ENCODERS: dict[str, type[Encoder]] = {"jsonl": JsonLinesEncoder, "csv": CsvEncoder, "parquet": ParquetEncoder}


def make_encoder(
    fmt: str,
    schema: pa.Schema,
    sink: BinaryIO,
    compression: str,
    row_group_size: int,
    sample: pa.RecordBatch | None = None,
    level: int | None = None,
) -> Encoder:
    """``sample``: the file's first batch (Parquet chooses its dictionary-encoded columns from it);
    ``level``: the codec's level (None: its default)."""
    if fmt == "parquet":
        return ParquetEncoder(schema, sink, compression, row_group_size, sample, level)
    return ENCODERS[fmt](schema, sink, compression, level)
