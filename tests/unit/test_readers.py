"""readers.py without a database: the Arrow schema from the wire types and the source's type names,
and rows -> one record batch (timestamps and dates from their text). Reading from a real server:
tests/e2e/test_readers.py."""

from __future__ import annotations

from collections import namedtuple
from datetime import date, datetime, timezone

import psycopg
import pyarrow as pa
import pytest

from cratedb_airflow_export.formats.fields import is_json, is_partition, source_type
from cratedb_airflow_export.readers import FetchBudget, field_for, normalize_schema, schema_for, to_batch, wire_type

Column = namedtuple("Column", "name type_code")


def test_wire_types_map_to_arrow_types():
    kinds = {name: field_for(name, oid).type for name, oid in [("b", 16), ("i", 20), ("t", 1184), ("d", 1082)]}
    assert kinds == {"b": pa.bool_(), "i": pa.int64(), "t": pa.timestamp("us", tz="UTC"), "d": pa.date32()}
    assert field_for("n", 1700).type == pa.string()  # numeric keeps its exact text
    assert field_for("x", 999_999).type == pa.string()  # anything unknown: text
    assert field_for("p", 600).type == pa.list_(pa.float64())  # geo_point / point: [lon, lat]


def test_json_columns_and_arrays_of_json_say_so_in_their_metadata():
    assert is_json(field_for("obj", 114)) and is_json(field_for("objb", 3802))
    objects = field_for("objs", 199)  # json[]
    assert pa.types.is_list(objects.type) and is_json(objects)
    assert not is_json(field_for("name", 25))


def test_the_sources_type_names_refine_the_schema():
    description = [Column("small", 18), Column("amount", 1700), Column("day", 1082), Column("bits", 1700)]
    schema = schema_for(
        description, {"small": "byte", "amount": "numeric", "bits": "bit", "day": "date"}, partitions=["day"]
    )
    assert schema.field("small").type == pa.int8()  # CrateDB's BYTE arrives as "char" text
    assert [source_type(schema.field(n)) for n in ("small", "amount", "day", "bits")] == [None, "numeric", None, "bit"]
    assert [is_partition(schema.field(n)) for n in ("small", "amount", "day")] == [False, False, True]


def test_timestamps_and_dates_arrive_as_text_and_are_parsed_in_arrow():
    schema = pa.schema([field_for("ts", 1184), field_for("local", 1114), field_for("day", 1082), field_for("n", 20)])
    assert [wire_type(f.type) for f in schema] == [pa.string(), pa.string(), pa.string(), pa.int64()]
    rows = [
        ("2024-01-04 10:00:00.123456+00", "2024-01-04 10:00:00", "2024-01-04", 1),
        (None, None, None, None),
    ]
    batch = to_batch(rows, schema)
    assert batch.schema == schema
    assert batch.to_pylist() == [
        {
            "ts": datetime(2024, 1, 4, 10, 0, 0, 123456, tzinfo=timezone.utc),
            "local": datetime(2024, 1, 4, 10, 0),
            "day": date(2024, 1, 4),
            "n": 1,
        },
        {"ts": None, "local": None, "day": None, "n": None},
    ]


def test_a_timestamp_arrow_cannot_parse_goes_to_psycopgs_loader():
    schema = pa.schema([field_for("ts", 1184)])
    batch = to_batch([("2024-01-04 10:00:00+05:30",)], schema)  # an offset Arrow's parser takes
    assert batch.column(0).to_pylist() == [datetime(2024, 1, 4, 4, 30, tzinfo=timezone.utc)]
    with pytest.raises(psycopg.DataError, match=r"timestamp too small \(before year 1\)"):  # as psycopg fails
        to_batch([("0044-03-15 00:00:00+00 BC",)], schema)


def test_an_empty_read_is_an_empty_batch_of_the_schema():
    schema = pa.schema([field_for("id", 20), field_for("obj", 114)])
    batch = to_batch([], schema)
    assert batch.num_rows == 0 and batch.schema == schema


def test_adbcs_extension_types_become_their_storage():
    class Opaque(pa.ExtensionType):
        def __init__(self) -> None:
            super().__init__(pa.string(), "arrow.opaque")

        def __arrow_ext_serialize__(self) -> bytes:
            return b""

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type, serialized):  # pragma: no cover - not read back
            return cls()

    schema = normalize_schema(pa.schema([pa.field("amount", Opaque()), pa.field("id", pa.int64())]))
    assert schema == pa.schema([pa.field("amount", pa.string()), pa.field("id", pa.int64())])


def test_a_fetch_asks_for_the_rows_that_fit_the_budget_at_the_widest_row_seen():
    """FetchBudget.within: the memory of the held results (3 per Arrow byte) and of the two being
    converted (4 more per Arrow byte) fit the total; a FETCH asks for what fits a result's share at
    the widest row so far, never more than max_rows, never fewer than one."""
    budget = FetchBudget.within(48 * 2**20, slots=4, max_rows=10_000)
    assert budget.batch_bytes == 48 * 2**20 // (4 * 3 + 2 * 4)
    assert budget.held_bytes <= 48 * 2**20
    assert budget.fetch_rows == 1_000  # nothing seen yet
    narrow = pa.record_batch({"v": pa.array([1] * 100, pa.int64())})  # 8 bytes a row
    budget.observe(narrow)
    assert budget.fetch_rows == 10_000  # max_rows: 2.4 MiB would take 300,000
    wide = pa.record_batch({"v": pa.array(["x" * 1_000_000] * 2)})  # about 1 MB a row
    budget.observe(wide)
    assert budget.fetch_rows == budget.batch_bytes // (wide.nbytes // 2)
    budget.observe(narrow)
    assert budget.fetch_rows == budget.batch_bytes // (wide.nbytes // 2)  # the widest row stays the measure
    huge = pa.record_batch({"v": pa.array(["x" * (8 * 2**20)])})
    budget.observe(huge)
    assert budget.fetch_rows == 1
    many = FetchBudget.within(48 * 2**20, slots=32, max_rows=10_000)
    assert many.held_bytes <= 48 * 2**20 and many.batch_bytes < budget.batch_bytes  # more readers, smaller FETCHes
