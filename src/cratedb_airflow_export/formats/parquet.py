"""Parquet: the typed schema the readers produce, zstd (default), snappy, gzip or none, row groups of
``parquet_row_group_size`` rows. Objects are JSON text columns (Parquet has no schemaless object
type), or structs of their keys with ``objects: struct`` (``objects.py``); arrays are lists."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cratedb_airflow_export.formats.base import Encoder, Forward
from cratedb_airflow_export.formats.fields import is_json, json_value
from cratedb_airflow_export.formats.objects import is_struct_object, plain

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
    """Row groups of exactly ``row_group_size`` rows (a file's last may hold fewer); dictionary
    encoding for the columns :func:`dictionary_columns` chooses from ``sample``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Encoder's
        super().__init__(*args, **kwargs)
        self._raw = pa.PythonFile(Forward(self._sink), mode="w")
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.dictionary = dictionary_columns(self.schema, self.sample)
        self._writer = pq.ParquetWriter(
            self._raw,
            self.schema,
            compression=self.compression,
            compression_level=self.level,
            use_dictionary=self.dictionary,
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


def read_rows(path: str, batch_size: int = 10_000) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file, a row group batch at a time; JSON text columns (field metadata
    ``json=true``) parsed back into objects (the text ``null``: :data:`~.fields.JSON_NULL`)."""
    parquet = pq.ParquetFile(path)
    json_columns = [f.name for f in parquet.schema_arrow if is_json(f)]
    struct_columns = [f.name for f in parquet.schema_arrow if is_struct_object(f)]
    for batch in parquet.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            for name in json_columns:
                if row[name] is not None:
                    row[name] = json_value(row[name])
            for name in struct_columns:
                row[name] = plain(row[name])
            yield row


def encoder_for(json_style: str | None = None) -> type[Encoder]:
    return ParquetEncoder


def read_file(path: str, compression: str) -> Iterator[dict[str, Any]]:
    """Parquet compresses inside the file: ``compression`` needs no undoing."""
    return read_rows(path)
