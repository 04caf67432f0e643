"""storage.py without a server: the one s3:// parser, S3's bucket naming rules, what every write
carries, the bounds of the two clients. (Against a real S3 server: tests/e2e/test_storage.py.)"""

from __future__ import annotations

import pytest

from cratedb_airflow_export.storage import (
    DATA_TIMEOUTS,
    PROBE_TIMEOUTS,
    Location,
    bucket_problem,
    client_config,
    object_uri,
    parse_s3_uri,
    split_object_uri,
    write_args,
)


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://lake/cratedb/", "lake", "cratedb"),
        ("s3://lake/a/b", "lake", "a/b"),
        ("s3://lake", "lake", ""),
        ("s3://my.bucket-1/x", "my.bucket-1", "x"),
    ],
)
def test_parse_s3_uri(uri, bucket, prefix):
    assert parse_s3_uri(uri) == Location(bucket, prefix)


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
def test_parse_s3_uri_refuses(uri, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_s3_uri(uri)


def test_bucket_problem_is_none_for_good_names():
    assert [bucket_problem(n) for n in ("lake", "a-b.c", "x" * 63, "123")] == [None, None, None, None]
    assert bucket_problem("x" * 64) is not None


def test_locations_and_object_uris():
    folder = Location("lake", "cratedb/doc.metrics")
    assert folder.uri == "s3://lake/cratedb/doc.metrics/"
    assert folder.key("_SUCCESS") == "cratedb/doc.metrics/_SUCCESS"
    assert folder.child("dt=2024-01-04") == Location("lake", "cratedb/doc.metrics/dt=2024-01-04")
    assert Location("lake", "").child("x") == Location("lake", "x")
    assert object_uri("lake", "a/b.json") == "s3://lake/a/b.json"
    assert split_object_uri("s3://lake/a/b.json") == ("lake", "a/b.json")
    with pytest.raises(ValueError, match="names a bucket, not an object"):
        split_object_uri("s3://lake/")


def test_every_write_carries_a_checksum_and_the_tables_encryption():
    assert write_args() == {"ChecksumAlgorithm": "SHA256"}
    assert write_args("AES256") == {"ChecksumAlgorithm": "SHA256", "ServerSideEncryption": "AES256"}
    assert write_args("aws:kms", "alias/lake") == {
        "ChecksumAlgorithm": "SHA256",
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/lake",
    }


def test_the_probe_gives_up_within_seconds_and_its_bounds_win():
    from botocore.config import Config

    probe = client_config(probe=True, configured=Config(connect_timeout=120, read_timeout=120))
    assert (probe.connect_timeout, probe.read_timeout) == (PROBE_TIMEOUTS["connect_timeout"], 5)
    assert probe.retries == PROBE_TIMEOUTS["retries"]
    data = client_config()
    assert (data.connect_timeout, data.read_timeout) == (DATA_TIMEOUTS["connect_timeout"], 60)
    configured = client_config(configured=Config(read_timeout=300))
    assert configured.read_timeout == 300  # what the connection configures wins for data calls
