"""publish.py against the real S3 server: a staged export replaces a partition, and what it leaves."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.errors import TargetError
from cratedb_airflow_export.manifest import Manifest, read_partition
from cratedb_airflow_export.publish import publish, published_name
from cratedb_airflow_export.storage import Location, WriteOptions
from tests.helpers import read_objects

pytestmark = pytest.mark.e2e

INTERVAL = {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"}


def draft(partition: Location, rows: int) -> Manifest:
    return Manifest(
        table="doc.metrics",
        interval=INTERVAL,
        partition=partition.uri,
        engine="stream",
        format="jsonl",
        compression="none",
        rows=rows,
        source_count=rows,
        row_count_check="strict",
        objects=[],
        statements_fingerprint="sha256:0",
    )


def stage(store, staging: Location, files: dict[str, bytes]) -> list:
    for name, data in files.items():
        store.put(staging.bucket, staging.key(name), data)
    return [o for o in store.list_objects(staging)]


def test_a_staged_export_replaces_the_partition_and_success_comes_last(s3_server, bucket):
    store = s3_server.store()
    client = store.client
    partition = Location(bucket, "cratedb/doc.metrics/dt=2024-01-04")
    client.put_object(Bucket=bucket, Key=partition.key("part-00007.jsonl"), Body=b"old\n")  # a previous export
    staging = Location(bucket, "_cratedb_export_staging/cratedb/doc.metrics/dt=2024-01-04/run-1")
    staged = stage(store, staging, {"part-00000.jsonl": b'{"a":1}\n{"a":2}\n', "slice-001/part-00000.jsonl": b"{}\n"})

    published, manifest = publish(store, staged, staging, partition, draft(partition, 3), WriteOptions())

    assert sorted(read_objects(s3_server, bucket, partition.prefix + "/")) == [
        partition.key("_SUCCESS"),
        partition.key("_manifest.json"),
        partition.key("part-00000.jsonl"),
        partition.key("slice-001-part-00000.jsonl"),
    ]
    assert [(o.name, o.size) for o in published] == [("part-00000.jsonl", 16), ("slice-001-part-00000.jsonl", 3)]
    assert all(
        o.checksum and o.checksum.algorithm == "sha256" for o in published
    )  # S3 stored the SHA-256 every write asks for
    found = read_partition(store, partition, "doc.metrics", INTERVAL)
    assert found.complete and found.manifest == manifest
    assert [o.key for o in manifest.objects] == [o.key for o in published]
    assert read_objects(s3_server, bucket, partition.key("_SUCCESS")) == {partition.key("_SUCCESS"): b""}


def test_staged_names_that_would_collide_are_refused_before_anything_changes(s3_server, bucket):
    store = s3_server.store()
    client = store.client
    partition = Location(bucket, "p/dt=2024-01-04")
    client.put_object(Bucket=bucket, Key=partition.key("part-00000.jsonl"), Body=b"kept\n")
    staging = Location(bucket, "_cratedb_export_staging/p/dt=2024-01-04/run-1")
    staged = stage(store, staging, {"a/b.jsonl": b"1\n", "a-b.jsonl": b"2\n"})  # both publish as a-b.jsonl
    assert published_name(staging, staged[0].key) == published_name(staging, staged[1].key) == "a-b.jsonl"
    with pytest.raises(TargetError, match="staged object names collide"):
        publish(store, staged, staging, partition, draft(partition, 2), WriteOptions())
    assert read_objects(s3_server, bucket, partition.prefix + "/") == {partition.key("part-00000.jsonl"): b"kept\n"}


def test_a_partition_missing_a_listed_object_is_not_complete(s3_server, bucket):
    store = s3_server.store()
    client = store.client
    partition = Location(bucket, "q/dt=2024-01-04")
    staging = Location(bucket, "_cratedb_export_staging/q/dt=2024-01-04/run-1")
    staged = stage(store, staging, {"part-00000.jsonl": b"{}\n"})
    publish(store, staged, staging, partition, draft(partition, 1), WriteOptions())
    client.delete_object(Bucket=bucket, Key=partition.key("part-00000.jsonl"))
    found = read_partition(store, partition, "doc.metrics", INTERVAL)
    assert not found.complete and found.missing == ()
    assert found.problems == (f"{partition.key('part-00000.jsonl')} is listed in the manifest but missing",)
    other = read_partition(store, partition, "doc.other", INTERVAL)
    assert other.problems[0].startswith("manifest is for doc.metrics")
