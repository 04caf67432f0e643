"""OBJECT columns as Parquet structs: the struct of a CrateDB object's keys, the JSON text of each
row turned into it, a key the struct lacks refused, and what DuckDB and pyarrow read back (filters on
a nested field)."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from cratedb_airflow_export.errors import SchemaMoved, TransientError
from cratedb_airflow_export.formats.fields import JSON_META
from cratedb_airflow_export.formats.objects import StructColumns, plain, struct_type
from cratedb_airflow_export.formats.parquet import ParquetEncoder, read_rows
from cratedb_airflow_export.schema import object_keys

SOURCE = {
    "id": "bigint",
    "tags": "object",
    "tags['host']": "text",
    "tags['rack']": "integer",
    "tags['seen']": "timestamp with time zone",
    "tags['pos']": "geo_point",
    "tags['a']": "object",
    "tags['a']['b']": "double precision",
    "tags['labels']": "text_array",
    "readings": "object_array",
    "readings['k']": "text",
    "readings['v']": "bigint",
    "loose": "object",  # no keys yet (or OBJECT(IGNORED)): stays JSON text
    "odd": "object",
    "odd['addr']": "ip",  # a key without a struct form: the column stays JSON text
}
SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("tags", pa.string(), metadata=JSON_META),
        pa.field("readings", pa.list_(pa.field("item", pa.string(), metadata=JSON_META)), metadata=JSON_META),
        pa.field("loose", pa.string(), metadata=JSON_META),
        pa.field("odd", pa.string(), metadata=JSON_META),
    ]
)
ROWS = {
    "id": [1, 2, 3, 4],
    "tags": [
        '{"host":"h1","rack":7,"seen":1704326400123,"pos":[9.5,47.25],"a":{"b":0.5},"labels":["x","y"]}',
        None,
        '{"host":"line\\nbreak \\"q\\"","a":null}',
        "null",
    ],
    "readings": [['{"k":"t","v":1}', '{"k":"p","v":2}'], None, [], ["null"]],
    "loose": ['{"any":1}', None, "{}", "null"],
    "odd": ['{"addr":"10.0.0.1"}', None, None, None],
}


def shape() -> StructColumns:
    keys = {name: object_keys(name, SOURCE) for name in SCHEMA.names}
    return StructColumns(SCHEMA, SOURCE, keys)


def batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(ROWS, schema=SCHEMA)


def test_the_struct_of_an_objects_keys():
    assert str(struct_type(object_keys("tags", SOURCE))) == (  # keys in name order
        "struct<a: struct<b: double>, host: string, labels: list<item: string>, pos: list<item: double>, "
        "rack: int32, seen: timestamp[ms, tz=UTC]>"
    )
    assert struct_type({}) is None
    assert struct_type({"addr": "ip"}) is None
    columns = shape()
    assert sorted(columns.types) == ["readings", "tags"]
    assert str(columns.schema.field("readings").type) == "list<item: struct<k: string, v: int64>>"
    assert columns.schema.field("loose").type == pa.string()


def test_each_rows_json_becomes_the_struct_and_reads_back_as_the_same_json():
    converted = shape().convert(batch())
    seen = datetime(2024, 1, 4, 0, 0, 0, 123000, tzinfo=timezone.utc)
    rows = converted.to_pylist()
    assert rows[0]["tags"] == {
        "host": "h1",
        "rack": 7,
        "seen": seen,
        "pos": [9.5, 47.25],
        "a": {"b": 0.5},
        "labels": ["x", "y"],
    }
    assert rows[0]["readings"] == [{"k": "t", "v": 1}, {"k": "p", "v": 2}]
    assert [r["tags"] for r in rows[1:]] == [
        None,
        {"host": 'line\nbreak "q"', "rack": None, "seen": None, "pos": None, "a": None, "labels": None},
        None,
    ]
    assert [r["readings"] for r in rows[1:]] == [None, [], [None]]
    assert [r["loose"] for r in rows] == ROWS["loose"]  # untouched JSON text
    assert plain(rows[0]["tags"])["seen"] == 1704326400123  # as the source's object held it


def test_a_key_the_struct_lacks_fails_the_attempt_naming_it():
    row = {**{k: [v[0]] for k, v in ROWS.items()}, "tags": ['{"host":"h","zone":"new"}']}
    with pytest.raises(SchemaMoved, match=r"object column 'tags' holds key\(s\) \['zone'\] that its struct") as failed:
        shape().convert(pa.RecordBatch.from_pydict(row, schema=SCHEMA))
    assert isinstance(failed.value, TransientError)  # the next attempt reads the table's keys again


def test_a_type_that_does_not_fit_fails_the_attempt():
    row = {**{k: [v[0]] for k, v in ROWS.items()}, "tags": ['{"rack":"seven"}']}
    with pytest.raises(SchemaMoved, match="object column 'tags'"):
        shape().convert(pa.RecordBatch.from_pydict(row, schema=SCHEMA))


def test_duckdb_and_pyarrow_filter_on_a_nested_field(tmp_path):
    columns = shape()
    sink = io.BytesIO()
    encoder = ParquetEncoder(columns.schema, sink, "zstd", row_group_size=1000)
    encoder.write(columns.convert(batch()))
    encoder.close()
    path = tmp_path / "part-00000.parquet"
    path.write_bytes(sink.getvalue())

    assert duckdb.sql(f"SELECT id FROM read_parquet('{path}') WHERE tags.host = 'h1'").fetchall() == [(1,)]
    assert duckdb.sql(
        f"SELECT id, tags.a.b, readings[2].v FROM read_parquet('{path}') WHERE tags.rack = 7"
    ).fetchall() == [(1, 0.5, 2)]
    dataset = ds.dataset(str(path), format="parquet")
    found = dataset.to_table(filter=ds.field("tags", "host") == "h1", columns=["id"])
    assert found.column("id").to_pylist() == [1]
    assert pq.read_schema(path).field("tags").metadata == {b"object": b"struct"}
    restored = list(read_rows(str(path)))  # what restore inserts: the source's JSON again
    assert restored[0]["tags"]["seen"] == 1704326400123
    assert restored[0]["readings"] == [{"k": "t", "v": 1}, {"k": "p", "v": 2}]
    assert restored[0]["loose"] == {"any": 1}
