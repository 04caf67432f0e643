"""storage.py without a server: the one target parser, S3's bucket naming rules, locations.
(The S3 backend: tests/unit/stores/test_s3.py; against real servers: tests/e2e/test_storage.py.)"""

from __future__ import annotations

import pytest

from cratedb_airflow_export.storage import Location, bucket_problem, parse_target, split_object_uri


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://lake/cratedb/", "lake", "cratedb"),
        ("s3://lake/a/b", "lake", "a/b"),
        ("s3://lake", "lake", ""),
        ("s3://my.bucket-1/x", "my.bucket-1", "x"),
    ],
)
def test_parse_target(uri, bucket, prefix):
    assert parse_target(uri) == Location(bucket, prefix)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("lake/x", "must start with 's3://'"),
        ("s3://Lake/x", "not a valid S3 bucket name"),
        ("s3://ab/x", "not a valid S3 bucket name"),
        ("s3://a..b/x", "no '..'"),
        ("s3://192.168.0.1/x", "IP address"),
        ("s3://xn--lake/x", "reserves"),
        ("s3://lake-s3alias/x", "reserves"),
        ("s3://lake/a//b", "empty, '.' or '..' segment"),
        ("s3://lake/a/../b", "empty, '.' or '..' segment"),
        ("s3://lake/./b", "empty, '.' or '..' segment"),
    ],
)
def test_parse_target_refuses(uri, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_target(uri)


def test_bucket_problem_is_none_for_good_names():
    assert [bucket_problem(n) for n in ("lake", "a-b.c", "x" * 63, "123")] == [None, None, None, None]
    assert bucket_problem("x" * 64) is not None


def test_locations_and_object_uris():
    folder = Location("lake", "cratedb/doc.metrics")
    assert folder.uri == "s3://lake/cratedb/doc.metrics/"
    assert folder.key("_SUCCESS") == "cratedb/doc.metrics/_SUCCESS"
    assert folder.child("dt=2024-01-04") == Location("lake", "cratedb/doc.metrics/dt=2024-01-04")
    assert Location("lake", "").child("x") == Location("lake", "x")
    assert folder.object_uri("a/b.json") == "s3://lake/a/b.json"
    assert folder.at("other") == Location("lake", "other")
    assert split_object_uri("s3://lake/a/b.json") == (Location("lake", ""), "a/b.json")
    with pytest.raises(ValueError, match="names a bucket, not an object"):
        split_object_uri("s3://lake/")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("az://lake/cratedb/", Location("lake", "cratedb", "az")),
        ("abfs://lake/a/b", Location("lake", "a/b", "az")),  # the lake tools' spelling: the same store
        ("az://my-lake-1", Location("my-lake-1", "", "az")),
    ],
)
def test_azure_targets(uri, expected):
    location = parse_target(uri)
    assert location == expected
    assert location.uri == f"az://{expected.bucket}/{expected.prefix}/"
    assert location.child("x").scheme == "az" and location.at("y").object_uri("y/z") == f"az://{expected.bucket}/y/z"


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gcs://lake/x", "or 'gs://'"),
        ("az://Lake/x", "not a valid Azure container name"),
        ("az://a--b/x", "not a valid Azure container name"),
        ("az://-ab/x", "not a valid Azure container name"),
        ("abfs://lake@acct.dfs.core.windows.net/x", "name the container alone"),
        ("az://lake/a//b", "empty, '.' or '..' segment"),
    ],
)
def test_azure_targets_refused(uri, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_target(uri)
