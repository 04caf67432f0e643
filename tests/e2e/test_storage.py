"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

from cratedb_airflow_export.storage import Location

pytestmark = pytest.mark.e2e


def test_multipart_writer_takes_buffers_and_cuts_exact_parts(s3_server, bucket):
    store = s3_server.store()
    client = store.client
    payload = os.urandom(11 * 1024 * 1024)
    writer = store.writer(bucket, "parts/x.bin", 5 * 1024 * 1024)
    writer.write(pa.py_buffer(payload[:7_000_000]))  # an Arrow buffer, as the text encoders hand over
    writer.write(memoryview(payload)[7_000_000:])
    stored = writer.close()
    sizes = [client.head_object(Bucket=bucket, Key="parts/x.bin", PartNumber=n)["ContentLength"] for n in (1, 2, 3)]
    assert sizes == [5 * 1024 * 1024, 5 * 1024 * 1024, 1024 * 1024] and stored.size == len(payload)
    assert client.get_object(Bucket=bucket, Key="parts/x.bin")["Body"].read() == payload
    assert stored.etag.endswith("-3")


def test_multipart_writer_uploads_parts_and_completes(s3_server, bucket):
    store = s3_server.store()
    client = store.client
    payload = os.urandom(12 * 1024 * 1024 + 123)
    writer = store.writer(bucket, "big/object.bin", 5 * 1024 * 1024)
    for offset in range(0, len(payload), 1_000_000):
        writer.write(payload[offset : offset + 1_000_000])
    assert writer.parts_sent == 2  # two full parts handed to the uploader while writing
    assert writer._fill == len(payload) - 2 * 5 * 1024 * 1024  # parts are exactly part_size
    stored = writer.close()
    assert stored.size == len(payload)
    assert client.get_object(Bucket=bucket, Key="big/object.bin")["Body"].read() == payload
    assert stored.etag.endswith("-3")  # three parts


def test_multipart_writer_abort_leaves_nothing(s3_server, bucket):
    store = s3_server.store()
    client = store.client
    writer = store.writer(bucket, "p/x.bin", 5 * 1024 * 1024)
    writer.write(os.urandom(6 * 1024 * 1024))
    writer.abort()
    assert store.list_objects(Location(bucket, "p")) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_small_object_is_one_put(s3_server, bucket):
    store = s3_server.store()
    writer = store.writer(bucket, "small/x.jsonl", 5 * 1024 * 1024)
    writer.write(b"{}\n")
    stored = writer.close()
    assert [o.as_dict() for o in store.list_objects(Location(bucket, "small"))] == [stored.as_dict()]
    assert stored.size == 3
