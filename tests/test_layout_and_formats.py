"""Storage layout, JSON Lines fidelity and the multipart writer against the real S3 server."""

from __future__ import annotations

import gzip
import io
import json
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.formats import FORMATS, make_encoder
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.readers import field_for, to_batch
from cratedb_airflow_export.storage import Location, MultipartWriter, list_objects

DAY = date(2024, 1, 4)


def cfg(**kw):
    return TableExport.model_validate({"table": "doc.metrics", "timestamp_column": "ts", **kw})


def test_tutorial_layout_matches_the_tutorial():
    loc = partition(cfg(target_bucket="crate-astro-tutorial/metrics"), DAY)
    assert loc == Location("crate-astro-tutorial", "metrics-2024-01-04")
    assert loc.uri == "s3://crate-astro-tutorial/metrics-2024-01-04/"


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        ("s3://lake/exports", "s3://lake/exports/doc.metrics/dt=2024-01-04/"),
        ("s3://lake/exports/", "s3://lake/exports/doc.metrics/dt=2024-01-04/"),
        ("s3://lake", "s3://lake/doc.metrics/dt=2024-01-04/"),
    ],
)
def test_hive_layout(target, uri):
    assert partition(cfg(target=target), DAY).uri == uri


def test_data_file_names():
    assert FORMATS["jsonl"].file_name("gzip", 0) == "part-00000.jsonl.gz"
    assert FORMATS["jsonl"].file_name("zstd", 1) == "part-00001.jsonl.zst"
    assert FORMATS["jsonl"].file_name("none", 3) == "part-00003.jsonl"
    assert FORMATS["csv"].file_name("gzip", 0) == "part-00000.csv.gz"
    assert FORMATS["parquet"].file_name("zstd", 12) == "part-00012.parquet"


OIDS = {
    "id": 20,
    "ts": 1184,
    "obj": 114,
    "arr": 1022,
    "nothing": 25,
    "text": 25,
    "dec": 1700,
    "uuid": 2950,
    "raw": 17,
    "naive": 1114,
    "flag": 16,
    "nan": 701,
    "point": 600,
    "objs": 199,
}


def encode(fmt: str, compression: str, rows) -> bytes:
    schema = pa.schema([field_for(name, oid) for name, oid in OIDS.items()])
    sink = io.BytesIO()
    encoder = make_encoder(FORMATS[fmt], schema, sink, compression, row_group_size=1000)
    encoder.write(to_batch(rows, schema))
    encoder.close()
    return sink.getvalue()


ROW = (
    1,
    datetime(2024, 1, 4, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=1))),
    '{"a": {"b": [1, 2]}}',
    [1.5, None],
    None,
    'ünï "q" \\ 🚀\n\x01',
    Decimal("12.50"),
    UUID(int=1),
    b"\x00\xff",
    datetime(2024, 1, 4, 5),
    True,
    float("nan"),
    [9.5, 47.25],
    ['{"k": 1}', None],
)


def test_json_lines_are_faithful():
    data = gzip.decompress(encode("jsonl", "gzip", [ROW]))
    assert "ünï".encode() in data  # UTF-8, not \\u escapes
    (line,) = [json.loads(x) for x in data.decode().splitlines()]
    assert line == {
        "id": 1,
        "ts": "2024-01-04T00:02:03.456789+00:00",
        "obj": {"a": {"b": [1, 2]}},
        "arr": [1.5, None],
        "nothing": None,
        "text": 'ünï "q" \\ 🚀\n\x01',
        "dec": "12.50",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "raw": "AP8=",
        "naive": "2024-01-04T05:00:00.000000",
        "flag": True,
        "nan": None,
        "point": [9.5, 47.25],
        "objs": [{"k": 1}, None],
    }


def test_uncompressed_and_zstd_json_lines():
    rows = [(i, None, None, None, None, None, None, None, None, None, None, None, None, None) for i in (1, 2)]
    plain = encode("jsonl", "none", rows)
    assert plain.startswith(b'{"id":1,"ts":null,') and plain.count(b"\n") == 2
    packed = encode("jsonl", "zstd", rows)
    assert pa.CompressedInputStream(pa.BufferReader(packed), "zstd").read() == plain


def test_csv_is_rfc4180():
    text = encode("csv", "none", [ROW]).decode()
    header, row, end = text.split("\r\n")
    assert header == '"id","ts","obj","arr","nothing","text","dec","uuid","raw","naive","flag","nan","point","objs"'
    assert row.startswith('1,"2024-01-04T00:02:03.456789+00:00","{""a"": {""b"": [1, 2]}}","[1.5,null]",,')
    assert '"ünï ""q"" \\ 🚀\n\x01"' in row  # quoted, quotes doubled, newline kept inside the field
    assert end == ""


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


def test_multipart_writer_uploads_parts_and_completes(s3_server, bucket):
    client = s3_server.client()
    payload = os.urandom(12 * 1024 * 1024 + 123)
    writer = MultipartWriter(client, bucket, "big/object.bin", 5 * 1024 * 1024)
    for offset in range(0, len(payload), 1_000_000):
        writer.write(payload[offset : offset + 1_000_000])
    assert writer._next_part == 3  # two full parts handed to the uploader while writing
    assert writer._fill == len(payload) - 2 * 5 * 1024 * 1024  # parts are exactly part_size
    stored = writer.close()
    assert stored.size == len(payload)
    assert client.get_object(Bucket=bucket, Key="big/object.bin")["Body"].read() == payload
    assert stored.etag.endswith("-3")  # three parts


def test_multipart_writer_abort_leaves_nothing(s3_server, bucket):
    client = s3_server.client()
    writer = MultipartWriter(client, bucket, "p/x.bin", 5 * 1024 * 1024)
    writer.write(os.urandom(6 * 1024 * 1024))
    writer.abort()
    assert list_objects(client, Location(bucket, "p")) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_small_object_is_one_put(s3_server, bucket):
    client = s3_server.client()
    writer = MultipartWriter(client, bucket, "small/x.jsonl", 5 * 1024 * 1024)
    writer.write(b"{}\n")
    stored = writer.close()
    assert [o.as_dict() for o in list_objects(client, Location(bucket, "small"))] == [stored.as_dict()]
    assert stored.size == 3


def test_copy_engine_drops_files_without_rows(s3_server, bucket):
    """CrateDB writes a file per shard, also for shards without rows in the window."""
    import gzip as gz

    from cratedb_airflow_export.engines.copy import without_empty_files

    client = s3_server.client()
    bodies = {
        "s/metrics_0_.json.gz": gz.compress(b""),
        "s/metrics_1_.json": b"",
        "s/metrics_2_.json.gz": gz.compress(b'{"a": 1}\n'),
        "s/metrics_3_.json": b"\n",
        "s/metrics_4_.json": b'{"a": 2}\n',
    }
    for key, body in bodies.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    kept = without_empty_files(client, bucket, list_objects(client, Location(bucket, "s")))
    assert [o.key for o in kept] == ["s/metrics_2_.json.gz", "s/metrics_4_.json"]
    assert [o.key for o in list_objects(client, Location(bucket, "s"))] == [o.key for o in kept]
