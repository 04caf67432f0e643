"""Encryption and integrity at rest: every object an export writes carries the table's server-side
encryption and a SHA-256 checksum S3 verified; the manifest records the checksums and ``verify``
compares them; the ``copy`` engine refuses encryption it cannot get from CrateDB."""

from __future__ import annotations

import json
from datetime import date

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.manifest import Manifest
from cratedb_airflow_export.storage import Location
from cratedb_airflow_export.verify import verify_partition
from cratedb_airflow_export.windows import Window
from tests.helpers import make_dag, read_objects, run_dag, task_states

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)
KEY = "arn:aws:kms:us-east-1:123456789012:key/cratedb-export-test"


@pytest.mark.parametrize(
    ("sse", "key", "extra"),
    [
        ("aws:kms", KEY, {}),  # one 12 MB file: multipart upload and multipart copy
        ("AES256", None, {"slices": 2}),  # two slices: a run folder, two files
    ],
)
def test_every_object_written_has_the_tables_encryption_and_a_checksum(
    airflow_db, connections, s3_server, bucket, big_table, sse, key, extra
):
    entry = {
        "table": big_table,
        "timestamp_column": "timestamp",
        "engine": "stream",
        "compression": "none",
        "part_size_mb": 5,
        "target": f"s3://{bucket}/lake",
        "sse": sse,
        **({"sse_kms_key_id": key} if key else {}),
        **extra,
    }
    dag = make_dag(f"e2e_sse_{sse.replace(':', '_')}", [entry])
    assert set(task_states(run_dag(dag, DAY)).values()) == {"success"}
    store = s3_server.store()
    client = store.client
    keys = sorted(read_objects(s3_server, bucket))
    assert len(keys) == (3 if not extra else 4)  # data file(s), _manifest.json, _SUCCESS; nothing staged
    for name in keys:
        head = client.head_object(Bucket=bucket, Key=name, ChecksumMode="ENABLED")
        assert head["ServerSideEncryption"] == sse, name
        assert head.get("SSEKMSKeyId") == key, name
        assert head.get("ChecksumSHA256"), name
    manifest = Manifest.from_bytes(
        client.get_object(Bucket=bucket, Key=next(k for k in keys if "_manifest" in k))["Body"].read()
    )
    assert (manifest.sse, manifest.sse_kms_key_id) == (sse, key)
    for obj in manifest.objects:
        assert (
            obj.checksum_sha256
            == client.head_object(Bucket=bucket, Key=obj.key, ChecksumMode="ENABLED")["ChecksumSHA256"]
        )
    assert verify_partition(store, None, TableExport.model_validate(entry), Window.for_day(DAY)).ok


def test_verify_fails_on_a_checksum_mismatch(connections, s3_server, bucket, metrics):
    entry = {"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{bucket}/c"}
    cfg = TableExport.model_validate(entry)
    result = run_export(cfg, Window.for_day(DAY))
    store = s3_server.store()
    client = store.client
    manifest_key = f"c/doc.metrics/dt={DAY}/_manifest.json"
    record = json.loads(client.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    (data,) = record["objects"]
    stored = data["checksum_sha256"]
    data["checksum_sha256"] = "AAAA" + stored[4:]  # the record of the object no longer matches it
    client.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(record).encode())
    report = verify_partition(store, None, cfg, Window.for_day(DAY))
    assert not report.ok
    assert report.problems == [
        f"{data['key']}: the stored checksum (SHA256 {stored}) differs from the manifest's "
        f"(SHA256 {data['checksum_sha256']})"
    ]
    assert result.objects[0].checksum == ("sha256", stored)


def test_the_copy_engine_refuses_encryption_the_bucket_does_not_apply(connections, s3_server, bucket, metrics):
    entry = {
        "table": "doc.metrics",
        "timestamp_column": "timestamp",
        "engine": "copy",
        "target": f"s3://{bucket}/cp",
        "sse": "aws:kms",
        "sse_kms_key_id": KEY,
    }
    cfg = TableExport.model_validate(entry)
    with pytest.raises(ExportError) as failure:
        run_export(cfg, Window.for_day(DAY))
    assert "engine 'copy' cannot ask CrateDB to encrypt the files it writes" in str(failure.value)
    assert f"sse: aws:kms with key {KEY}; the bucket's default encryption: none" in str(failure.value)
    assert failure.value.retryable is False
    store = s3_server.store()
    client = store.client
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}}
    client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    with pytest.raises(ExportError) as failure:  # the bucket encrypts as asked: on to the next check
        run_export(cfg, Window.for_day(DAY))
    assert "needs CrateDB's COPY ... TO DIRECTORY, and the source of doc.metrics is PostgreSQL" in str(failure.value)
    assert store.list_objects(Location(bucket, "cp")) == []
