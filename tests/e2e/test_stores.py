"""Every backend keeps the storage.Store contract, against a real server each: S3 (moto), Azure Blob
Storage (Azurite) and Google Cloud Storage (fake-gcs-server). What the publish protocol, the lease,
verify and restore rely on: listings in key order and by folder, exact bytes back (whole, tail,
streamed), a streamed write that appears only on close and leaves nothing on abort, server-side
copy, deletes that tolerate missing keys, a checksum that changes with the bytes, and conditional
writes of which exactly one of two wins."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from cratedb_airflow_export.errors import TargetUnusable
from cratedb_airflow_export.lease import Lease, lease_key
from cratedb_airflow_export.storage import Location, Store
from tests.helpers import STORE_SCHEMES, new_bucket

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
BACKENDS = list(STORE_SCHEMES)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, str]]:
    """A backend on its server, and a new empty bucket (container) in it."""
    server, name = new_bucket(request, monkeypatch, request.param)
    yield server.store(), name


def test_objects_are_listed_in_key_order_below_their_folder_only(target):
    store, bucket = target
    for key in ("a/2.bin", "a/1.bin", "a/sub/3.bin", "ab/4.bin", "b/5.bin"):
        store.put(bucket, key, key.encode())
    assert [(o.key, o.size) for o in store.list_objects(Location(bucket, "a"))] == [
        ("a/1.bin", 7),
        ("a/2.bin", 7),
        ("a/sub/3.bin", 11),
    ]
    assert store.list_folders(bucket, "a") == ["a", "ab"]
    assert store.list_folders(bucket, "a/") == ["a/sub"]
    assert store.list_objects(Location(bucket, "none")) == []


def test_a_streamed_write_appears_on_close_with_exact_bytes(target):
    store, bucket = target
    payload = os.urandom(11 * MIB + 17)
    writer = store.writer(bucket, "big/x.bin", 5 * MIB, content_type="application/octet-stream")
    for offset in range(0, len(payload), 3 * MIB):
        writer.write(memoryview(payload)[offset : offset + 3 * MIB])
    assert store.list_objects(Location(bucket, "big")) == []  # nothing before close
    stored = writer.close(rows=7)
    assert (stored.key, stored.size, stored.rows) == ("big/x.bin", len(payload), 7)
    assert store.read(bucket, "big/x.bin") == payload
    assert store.size(bucket, "big/x.bin") == len(payload)
    assert [o.as_dict() for o in store.list_objects(Location(bucket, "big"))] == [{**stored.as_dict(), "rows": None}]
    assert store.read_tail(bucket, "big/x.bin", 1000) == payload[-1000:]
    assert store.read_tail(bucket, "big/x.bin", 20 * MIB) == payload
    for start, length in ((0, 1), (5 * MIB - 3, 7), (len(payload) - 10, 10), (len(payload) - 4, 100), (12, 0)):
        assert store.read_range(bucket, "big/x.bin", start, length) == payload[start : start + length], (start, length)
    with store.open(bucket, "big/x.bin") as stream:
        assert stream.read(10) == payload[:10]
    into = io.BytesIO()
    store.download(bucket, "big/x.bin", into)
    assert into.getvalue() == payload


def test_a_small_write_is_one_object_and_an_empty_one_exists(target):
    store, bucket = target
    for key, data in (("s/one.jsonl", b"{}\n"), ("s/empty", b"")):
        writer = store.writer(bucket, key, 5 * MIB)
        writer.write(data)
        writer.close()
        assert store.read(bucket, key) == data
    assert store.size(bucket, "s/missing") is None


def test_an_aborted_write_leaves_nothing(target):
    store, bucket = target
    writer = store.writer(bucket, "p/x.bin", 5 * MIB)
    writer.write(os.urandom(6 * MIB))
    writer.abort()
    assert store.list_objects(Location(bucket, "p")) == []
    assert store.open_uploads(Location(bucket, "p")) == []


def test_the_checksum_is_kept_and_changes_with_the_bytes(target):
    store, bucket = target
    writer = store.writer(bucket, "c/x.bin", 5 * MIB)
    writer.write(b"x" * (6 * MIB))
    writer.close()
    store.put(bucket, "c/y.bin", b"y" * 100)
    first, small = store.checksum(bucket, "c/x.bin"), store.checksum(bucket, "c/y.bin")
    assert first and small and first != small
    assert store.checksum(bucket, "c/x.bin") == first
    store.put(bucket, "c/x.bin", b"z" * 100)  # replaced behind our back
    assert store.checksum(bucket, "c/x.bin") not in (None, first)


def test_copy_is_exact_and_delete_tolerates_missing_keys(target):
    store, bucket = target
    payload = os.urandom(7 * MIB)
    store.put(bucket, "src/a.bin", payload)
    store.copy(bucket, "src/a.bin", "dst/a.bin")
    assert store.read(bucket, "dst/a.bin") == payload
    assert store.checksum(bucket, "dst/a.bin") == store.checksum(bucket, "src/a.bin")
    store.delete(bucket, ["src/a.bin", "src/never-there.bin"])
    assert [o.key for o in store.list_objects(Location(bucket, "src"))] == []
    store.put(bucket, "dst/b.bin", b"b")
    assert store.clear(Location(bucket, "dst")) == 2
    assert store.list_objects(Location(bucket, "dst")) == []


def test_conditional_writes_admit_exactly_one_writer(target):
    store, bucket = target
    assert store.fetch(bucket, "lock.json") is None
    with ThreadPoolExecutor(8) as pool:
        tags = list(pool.map(lambda n: store.create(bucket, "lock.json", f"{n}".encode()), range(8)))
    winners = [n for n, tag in enumerate(tags) if tag is not None]
    assert len(winners) == 1
    body, tag = store.fetch(bucket, "lock.json")
    assert body == f"{winners[0]}".encode()
    renewed = store.replace_if(bucket, "lock.json", b"renewed", tag)
    assert renewed is not None and renewed != tag
    assert store.replace_if(bucket, "lock.json", b"stale", tag) is None  # the old version is gone
    assert store.fetch(bucket, "lock.json") == (b"renewed", renewed)
    store.delete(bucket, ["lock.json"])
    assert store.replace_if(bucket, "lock.json", b"gone", renewed) is None


def test_a_lease_on_each_store_is_taken_over_only_when_expired(target):
    store, bucket = target
    key = lease_key(Location(bucket, "exports/doc.t/dt=2024-01-04"))
    first = Lease(store, key, "first", "export of doc.t", seconds=10)
    first.acquire(wait=0)
    with pytest.raises(Exception, match="another writer is at work"):
        Lease(store, key, "second", "export of doc.t", seconds=10).acquire(wait=0)
    first.renew()
    first.check()
    first.release()
    assert store.fetch(bucket, key.prefix) is None


def test_the_check_names_a_missing_bucket(target):
    store, bucket = target
    store.check(Location(bucket, "x"))
    with pytest.raises(TargetUnusable, match="does not exist"):
        store.check(Location(f"{bucket}-missing", "x"))
