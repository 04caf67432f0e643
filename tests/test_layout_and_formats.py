"""Storage layout, JSON Lines fidelity and the multipart writer against the real S3 server."""

from __future__ import annotations

import gzip
import json
import os
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.formats import JsonLinesEncoder
from cratedb_airflow_export.layout import Location, data_file_name, partition
from cratedb_airflow_export.s3 import MultipartWriter, list_objects

DAY = date(2024, 1, 4)


def cfg(**kw):
    return TableExport.model_validate({"table": "doc.metrics", "timestamp_column": "ts", **kw})


def test_seed_layout_matches_the_tutorial():
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
    assert data_file_name(cfg(target="s3://lake")) == "part-00000.jsonl.gz"
    assert data_file_name(cfg(target="s3://lake", compression="none"), 3) == "part-00003.jsonl"


def test_json_lines_are_faithful():
    berlin = timezone(timedelta(hours=1))
    rows = [
        (
            1,
            datetime(2024, 1, 4, 1, 2, 3, 456789, tzinfo=berlin),
            {"a": {"b": [1, 2]}},
            [1.5, None],
            None,
            'ünï "q" 🚀',
            Decimal("12.50"),
            Decimal("7"),
            UUID(int=1),
            b"\x00\xff",
            datetime(2024, 1, 4, 5),
            True,
        ),
    ]
    names = ["id", "ts", "obj", "arr", "nothing", "text", "dec", "int_dec", "uuid", "raw", "naive", "flag"]
    encoder = JsonLinesEncoder(names, gzip=True)
    data = gzip.decompress(encoder.encode(rows) + encoder.finish())
    assert "ünï".encode() in data  # UTF-8, not \\u escapes
    (line,) = [json.loads(x) for x in data.decode().splitlines()]
    assert line == {
        "id": 1,
        "ts": "2024-01-04T00:02:03.456789+00:00",
        "obj": {"a": {"b": [1, 2]}},
        "arr": [1.5, None],
        "nothing": None,
        "text": 'ünï "q" 🚀',
        "dec": 12.5,
        "int_dec": 7,
        "uuid": "00000000-0000-0000-0000-000000000001",
        "raw": "AP8=",
        "naive": "2024-01-04T05:00:00",
        "flag": True,
    }


def test_uncompressed_json_lines():
    encoder = JsonLinesEncoder(["a"], gzip=False)
    assert encoder.encode([(1,), (2,)]) + encoder.finish() == b'{"a":1}\n{"a":2}\n'


def test_multipart_writer_uploads_parts_and_completes(s3_server, bucket):
    client = s3_server.client()
    payload = os.urandom(12 * 1024 * 1024 + 123)
    writer = MultipartWriter(client, bucket, "big/object.bin", 5 * 1024 * 1024)
    for offset in range(0, len(payload), 1_000_000):
        writer.write(payload[offset : offset + 1_000_000])
    assert len(writer._parts) == 2  # two full parts uploaded while writing; memory stays below one part
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
