"""CSV: RFC 4180 (header row, fields quoted when needed, CRLF line ends; gzip or none).
Timestamps as in JSON Lines; objects and arrays as JSON text."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv

from cratedb_airflow_export.formats.base import Encoder, TextEncoder, open_decompressed
from cratedb_airflow_export.formats.fields import is_json
from cratedb_airflow_export.formats.text import python_json, timestamps


def csv_column(array: pa.Array, field: pa.Field) -> pa.Array:
    kind = field.type
    if pa.types.is_timestamp(kind):
        return timestamps(array)
    if pa.types.is_list(kind) or pa.types.is_binary(kind):
        values = [None if v is None else python_json(v, kind, is_json(field)) for v in array.to_pylist()]
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Encoder's
        super().__init__(*args, **kwargs)
        empty = pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in self.schema], schema=self.schema)
        header = _csv(self.schema, empty, header=True)
        self.write_prepared(self.compress(header, self.compression, self.level))


def read_rows(stream: BinaryIO) -> Iterator[dict[str, Any]]:
    """The rows of a CSV file this encoder wrote: every value as its text (converted by the reader
    of the rows); an empty unquoted field is NULL, a quoted empty field an empty string."""
    import csv as stdcsv

    header = stream.readline()
    names = next(stdcsv.reader([header.decode("utf-8")]))
    first = stream.read(1)
    if not first:  # the header alone: a day without rows (Arrow's reader refuses an empty file)
        return
    rest = io.BufferedReader(_Prepended(first, stream))
    options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        null_values=[""],  # only the empty unquoted field: "nan", "NULL", "NA" are values
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    reader = pacsv.open_csv(
        rest,
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 20),
        convert_options=options,
    )
    for batch in reader:
        yield from batch.to_pylist()


class _Prepended(io.RawIOBase):
    """``stream`` with ``head`` read from it already given back first."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            data, self.head = self.head[: len(buffer)], self.head[len(buffer) :]
        else:
            data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def encoder_for(json_style: str | None = None) -> type[Encoder]:
    return CsvEncoder


def read_file(path: str, compression: str) -> Iterator[dict[str, Any]]:
    with open_decompressed(path, compression) as stream:
        yield from read_rows(stream)
