"""publish.py against each store's real server (S3, Azurite, fake-gcs-server): a staged export
replaces a partition, and what it leaves."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.errors import TargetError
from cratedb_airflow_export.manifest import Manifest, read_partition
from cratedb_airflow_export.publish import publish, published_name
from cratedb_airflow_export.storage import Location, WriteOptions
from tests.helpers import CHECKSUMS, read_objects

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


def test_a_staged_export_replaces_the_partition_and_success_comes_last(lake):
    server, bucket = lake.server, lake.bucket
    store = server.store()
    partition = lake.location("cratedb/doc.metrics/dt=2024-01-04")
    store.put(bucket, partition.key("part-00007.jsonl"), b"old\n")  # a previous export
    staging = lake.location("_cratedb_export_staging/cratedb/doc.metrics/dt=2024-01-04/run-1")
    staged = stage(store, staging, {"part-00000.jsonl": b'{"a":1}\n{"a":2}\n', "slice-001/part-00000.jsonl": b"{}\n"})

    published, manifest = publish(store, staged, staging, partition, draft(partition, 3), WriteOptions())

    assert sorted(read_objects(server, bucket, partition.prefix + "/")) == [
        partition.key("_SUCCESS"),
        partition.key("_manifest.json"),
        partition.key("part-00000.jsonl"),
        partition.key("slice-001-part-00000.jsonl"),
    ]
    assert [(o.name, o.size) for o in published] == [("part-00000.jsonl", 16), ("slice-001-part-00000.jsonl", 3)]
    # the checksum each store keeps (S3: the SHA-256 every write asks for; Azure: MD5; GCS: CRC32C)
    assert {o.checksum.algorithm for o in published if o.checksum} == {CHECKSUMS[lake.kind]}
    assert all(o.checksum for o in published)
    found = read_partition(store, partition, "doc.metrics", INTERVAL)
    assert found.complete and found.manifest == manifest
    assert [o.key for o in manifest.objects] == [o.key for o in published]
    assert read_objects(server, bucket, partition.key("_SUCCESS")) == {partition.key("_SUCCESS"): b""}


def test_staged_names_that_would_collide_are_refused_before_anything_changes(lake):
    server, bucket = lake.server, lake.bucket
    store = server.store()
    partition = lake.location("p/dt=2024-01-04")
    store.put(bucket, partition.key("part-00000.jsonl"), b"kept\n")
    staging = lake.location("_cratedb_export_staging/p/dt=2024-01-04/run-1")
    staged = stage(store, staging, {"a/b.jsonl": b"1\n", "a-b.jsonl": b"2\n"})  # both publish as a-b.jsonl
    assert published_name(staging, staged[0].key) == published_name(staging, staged[1].key) == "a-b.jsonl"
    with pytest.raises(TargetError, match="staged object names collide"):
        publish(store, staged, staging, partition, draft(partition, 2), WriteOptions())
    assert read_objects(server, bucket, partition.prefix + "/") == {partition.key("part-00000.jsonl"): b"kept\n"}


def test_a_partition_missing_a_listed_object_is_not_complete(lake):
    server, bucket = lake.server, lake.bucket
    store = server.store()
    partition = lake.location("q/dt=2024-01-04")
    staging = lake.location("_cratedb_export_staging/q/dt=2024-01-04/run-1")
    staged = stage(store, staging, {"part-00000.jsonl": b"{}\n"})
    publish(store, staged, staging, partition, draft(partition, 1), WriteOptions())
    store.delete(bucket, [partition.key("part-00000.jsonl")])
    found = read_partition(store, partition, "doc.metrics", INTERVAL)
    assert not found.complete and found.missing == ()
    assert found.problems == (f"{partition.key('part-00000.jsonl')} is listed in the manifest but missing",)
    other = read_partition(store, partition, "doc.other", INTERVAL)
    assert other.problems[0].startswith("manifest is for doc.metrics")
