"""schema.py: what a column is in each format, an object's keys, and how two schemas differ."""

from __future__ import annotations

import pyarrow as pa
import pytest

from cratedb_airflow_export.formats.fields import JSON_META
from cratedb_airflow_export.readers import schema_from_types
from cratedb_airflow_export.schema import SchemaChange, SchemaColumn, breaking, compare, file_type, object_keys

CRATEDB_METRICS = {
    "hash_id": "bigint",
    "timestamp": "timestamp with time zone",
    "name": "text",
    "tags": "object",
    "tags['host']": "text",
    "tags['a']": "object",
    "tags['a']['b']": "integer",
    "fields": "object",
    "fields['samples']": "bigint_array",
    "location": "geo_point",
    "labels": "text_array",
}


def column(name: str, source_type: str, file_type: str = "string", **extra: object) -> SchemaColumn:
    return SchemaColumn(name=name, source_type=source_type, file_type=file_type, **extra)  # type: ignore[arg-type]


def test_object_keys_are_the_sub_columns_below_the_column():
    assert list(object_keys("tags", CRATEDB_METRICS).items()) == [
        ("a", "object"),
        ("a['b']", "integer"),
        ("host", "text"),
    ]
    assert object_keys("fields", CRATEDB_METRICS) == {"samples": "bigint_array"}
    assert object_keys("name", CRATEDB_METRICS) == {}
    assert object_keys("tag", {"tags['x']": "text"}) == {}  # a prefix of another column's name


def test_the_arrow_schema_of_cratedb_types_without_reading_a_row():
    schema = schema_from_types(CRATEDB_METRICS)
    assert [(f.name, str(f.type), f.metadata) for f in schema] == [
        ("hash_id", "int64", None),
        ("timestamp", "timestamp[us, tz=UTC]", None),
        ("name", "string", None),
        ("tags", "string", JSON_META),
        ("fields", "string", JSON_META),
        ("location", "list<item: double>", None),
        ("labels", "list<item: string>", None),
    ]


@pytest.mark.parametrize(
    ("field", "parquet", "jsonl_iso", "jsonl_cratedb"),
    [
        (pa.field("a", pa.int64()), "int64", "integer", "integer"),
        (pa.field("a", pa.float32()), "float", "number", "number"),
        (pa.field("a", pa.bool_()), "bool", "boolean", "boolean"),
        (
            pa.field("a", pa.timestamp("us", tz="UTC")),
            "timestamp[us, tz=UTC]",
            "string (ISO 8601)",
            "integer (epoch milliseconds)",
        ),
        (pa.field("a", pa.string(), metadata=JSON_META), "string (JSON text)", "json", "json"),
        (pa.field("a", pa.list_(pa.float64())), "list<item: double>", "array<number>", "array<number>"),
        (pa.field("a", pa.struct([("b", pa.int32())])), "struct<b: int32>", "object", "object"),
        (pa.field("a", pa.binary()), "binary", "string", "string"),
    ],
)
def test_file_types_per_format(field, parquet, jsonl_iso, jsonl_cratedb):
    assert file_type(field, "parquet", None) == parquet
    assert file_type(field, "jsonl", "iso") == jsonl_iso
    assert file_type(field, "jsonl", "cratedb") == jsonl_cratedb
    assert file_type(field, "csv", None) == "text"


@pytest.mark.parametrize(
    ("before", "after", "breaks"),
    [
        ("integer", "bigint", False),
        ("smallint", "bigint", False),
        ("real", "double precision", False),
        ("bigint", "integer", True),  # narrowing
        ("bigint", "text", True),
        ("text", "bigint", True),
        ("integer", "double precision", True),
        ("timestamp with time zone", "text", True),
        ("text", "text", False),
    ],
)
def test_which_type_changes_break_readers_of_the_folder(before, after, breaks):
    assert breaking(before, after) is breaks


def test_compare_lists_columns_and_keys_added_removed_and_changed_in_order():
    before = [
        column("id", "bigint", "int64"),
        column("tags", "object", keys={"host": "text", "rack": "integer"}),
        column("old", "text"),
        column("n", "integer", "int32"),
    ]
    after = [
        column("id", "bigint", "int64"),
        column("tags", "object", keys={"host": "text", "rack": "text", "zone": "text", "a['b']": "bigint"}),
        column("n", "bigint", "int64"),
        column("new", "text"),
    ]
    assert compare(before, after) == [
        SchemaChange(column="tags['zone']", change="added", after="text"),
        SchemaChange(column="tags['a']['b']", change="added", after="bigint"),
        SchemaChange(column="tags['rack']", change="type changed", before="integer", after="text", breaking=True),
        SchemaChange(column="n", change="type changed", before="integer", after="bigint"),
        SchemaChange(column="new", change="added", after="text"),
        SchemaChange(column="old", change="removed", before="text"),
    ]
    assert compare(after, after) == []


def test_an_object_written_as_text_one_day_and_a_struct_the_next_breaks_readers():
    before = [column("tags", "object", "string (JSON text)", keys={"host": "text"})]
    after = [column("tags", "object", "struct<host: string>", keys={"host": "text"})]
    (change,) = compare(before, after)
    assert (change.change, change.breaking) == ("type changed", True)
    assert str(change) == "tags changed from string (JSON text) to struct<host: string> (breaking)"


def test_nullability_and_policy_alone_are_no_change():
    before = [column("id", "bigint", nullable=True, policy=None)]
    after = [column("id", "bigint", nullable=False, policy=None)]
    assert compare(before, after) == []


def test_slices_that_wrote_different_schemas_are_not_published_as_one_day():
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.export import _slices_schema

    cfg = TableExport(table="doc.t", timestamp_column="ts", target="s3://bkt/p", engine="stream", slices=2)
    one = [column("id", "bigint", "int64").model_dump()]
    two = [column("id", "bigint", "int64").model_dump(), column("unit", "text").model_dump()]
    assert _slices_schema(cfg, [{"slice": 1, "schema": one}, {"slice": 0, "schema": one}]) == [
        column("id", "bigint", "int64")
    ]
    with pytest.raises(
        RuntimeError, match=r"slice 1 of doc.t wrote another schema than slice 0 \(unit added \(text\)\)"
    ):
        _slices_schema(cfg, [{"slice": 0, "schema": one}, {"slice": 1, "schema": two}])


def test_a_struct_that_gained_a_key_is_the_key_added_not_a_type_change():
    before = [column("tags", "object", "struct<host: string>", keys={"host": "text"})]
    after = [column("tags", "object", "struct<host: string, zone: string>", keys={"host": "text", "zone": "text"})]
    assert compare(before, after) == [SchemaChange(column="tags['zone']", change="added", after="text")]
    narrowed = [column("tags", "object", "struct<host: int64>", keys={"host": "bigint"})]
    assert compare(before, narrowed) == [
        SchemaChange(column="tags['host']", change="type changed", before="text", after="bigint", breaking=True)
    ]


def test_a_partition_column_is_a_json_string_in_the_cratedb_style():
    from cratedb_airflow_export.formats.fields import PARTITION_META

    month = pa.field("month", pa.timestamp("us"), metadata=PARTITION_META)
    assert file_type(month, "jsonl", "cratedb") == "string"  # as COPY TO writes it
    assert file_type(month, "jsonl", "iso") == "string (ISO 8601)"
    assert file_type(month, "parquet", None) == "timestamp[us]"
