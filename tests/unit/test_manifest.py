"""manifest.py without a server: what a manifest holds, its bytes, the fingerprint of the statements."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cratedb_airflow_export.manifest import MANIFEST_VERSION, Manifest, completed, fingerprint
from cratedb_airflow_export.sql import Secret, Statement
from cratedb_airflow_export.storage import Checksum, StoredObject

DRAFT = Manifest(
    table="doc.metrics",
    interval={"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"},
    partition="s3://lake/cratedb/doc.metrics/dt=2024-01-04/",
    engine="stream",
    format="parquet",
    compression="zstd",
    rows=7,
    source_count=7,
    row_count_check="strict",
    objects=[],
    statements_fingerprint="sha256:0",
)


def test_completed_lists_the_published_objects_and_the_time():
    objects = [
        StoredObject("cratedb/doc.metrics/dt=2024-01-04/part-00000.parquet", 100, '"e0"', 4, Checksum("sha256", "c0")),
        StoredObject("cratedb/doc.metrics/dt=2024-01-04/part-00001.parquet", 80, '"e1"', 3, Checksum("md5", "c1")),
    ]
    manifest = completed(DRAFT, objects)
    assert [
        (o.key.rsplit("/", 1)[-1], o.size, o.etag, o.rows, o.checksum_sha256, o.checksum_md5) for o in manifest.objects
    ] == [
        ("part-00000.parquet", 100, '"e0"', 4, "c0", None),
        ("part-00001.parquet", 80, '"e1"', 3, None, "c1"),
    ]
    assert [o.checksum for o in manifest.objects] == [("sha256", "c0"), ("md5", "c1")]
    assert manifest.exported_at.endswith("+00:00") and DRAFT.exported_at == ""  # the draft is unchanged
    assert manifest.object_rows == 7


def test_object_rows_is_unknown_when_one_object_has_no_count():
    manifest = completed(DRAFT, [StoredObject("k/a", 1, '"e"', 2), StoredObject("k/b", 1, '"e"', None)])
    assert manifest.object_rows is None  # COPY TO reports only the total


def test_bytes_round_trip_and_unknown_keys_are_refused():
    manifest = completed(DRAFT, [StoredObject("k/a", 1, '"e"', 7)])
    data = manifest.to_bytes()
    assert json.loads(data)["version"] == MANIFEST_VERSION and data.endswith(b"\n")
    assert Manifest.from_bytes(data) == manifest
    with pytest.raises(ValidationError):
        Manifest.from_bytes(json.dumps({**json.loads(data), "surprise": 1}).encode())
    with pytest.raises(ValidationError):
        Manifest.from_bytes(json.dumps({**json.loads(data), "format": "xml"}).encode())


def test_the_fingerprint_follows_the_sql_text_not_its_parameters():
    one = [
        Statement("COPY t TO DIRECTORY %s", (Secret("s3://k:v@b/x", "s3://k:***@b/x"),)),
        Statement("REFRESH TABLE t"),
    ]
    other_secret = [
        Statement("COPY t TO DIRECTORY %s", (Secret("s3://k:w@b/x", "s3://k:***@b/x"),)),
        Statement("REFRESH TABLE t"),
    ]
    assert fingerprint(one) == fingerprint(other_secret)
    assert fingerprint(one) != fingerprint(list(reversed(one)))
    assert fingerprint(one).startswith("sha256:") and len(fingerprint(one)) == len("sha256:") + 64
