"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from cratedb_airflow_export.formats.parquet import ParquetEncoder, dictionary_columns
from tests.samples import ROW, encode


def test_parquet_row_groups_have_exactly_the_configured_rows():
    schema = pa.schema([("id", pa.int64())])
    sink = io.BytesIO()
    encoder = ParquetEncoder(schema, sink, "zstd", row_group_size=1000)
    for start in range(0, 3500, 300):  # batches do not line up with row groups
        ids = pa.array(range(start, min(start + 300, 3500)), pa.int64())
        encoder.write(pa.RecordBatch.from_arrays([ids], schema=schema))
    encoder.close()
    parquet = pq.ParquetFile(io.BytesIO(sink.getvalue()))
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [1000, 1000, 1000, 500]
    assert parquet.read().column("id").to_pylist() == list(range(3500))


def test_dictionary_encoding_only_for_repetitive_columns():
    n = 10_000
    batch = pa.RecordBatch.from_pydict(
        {
            "id": list(range(n)),
            "name": [["cpu", "disk", "load"][i % 3] for i in range(n)],
            "doc": [json.dumps({"v": i}) for i in range(n)],
            "tags": [[i % 2] for i in range(n)],
            "nothing": pa.nulls(n),
        }
    )
    assert dictionary_columns(batch.schema, batch) == ["name"]
    assert dictionary_columns(batch.schema, None) is True  # no sample: Arrow's default
    sink = io.BytesIO()
    encoder = ParquetEncoder(batch.schema, sink, "zstd", row_group_size=100_000, sample=batch)
    encoder.write(batch)
    encoder.close()
    group = pq.ParquetFile(io.BytesIO(sink.getvalue())).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "RLE_DICTIONARY" in encodings["name"]
    assert "RLE_DICTIONARY" not in encodings["id"] and "RLE_DICTIONARY" not in encodings["doc"]


def test_parquet_has_a_typed_schema():
    table = pq.read_table(io.BytesIO(encode("parquet", "zstd", [ROW])))
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("naive").type == pa.timestamp("us")
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("arr").type == pa.list_(pa.float64())
    assert table.schema.field("flag").type == pa.bool_()
    assert table.schema.field("obj").metadata == {b"json": b"true"}
    (row,) = table.to_pylist()
    assert row["ts"] == datetime(2024, 1, 4, 0, 2, 3, 456789, tzinfo=timezone.utc)
    assert json.loads(row["obj"]) == {"a": {"b": [1, 2]}}
    assert row["raw"] == b"\x00\xff" and row["dec"] == "12.50" and row["point"] == [9.5, 47.25]
