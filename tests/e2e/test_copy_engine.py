"""The copy engine's checks before CrateDB is asked to write, against the local S3 server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from devtools.devstack import LocalS3

from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.engines.copy import check_endpoint_kept
from cratedb_airflow_export.errors import TargetUnusable
from cratedb_airflow_export.source import CRATEDB, SourceInfo
from cratedb_airflow_export.storage import Location

pytestmark = pytest.mark.e2e


@dataclass
class FakeAttempt:  # the parts of an Attempt the check reads
    creds: S3Credentials
    store: Any
    database: SourceInfo


@pytest.fixture(scope="module")
def naming_server():
    """An S3 server that names the bucket's region in HEAD Bucket, as AWS and moto do."""
    server = LocalS3(report_bucket_region=True).start()
    try:
        yield server
    finally:
        server.stop()


def attempt_for(server: LocalS3, version: tuple[int, int, int] | None) -> FakeAttempt:
    creds = S3Credentials(server.access_key, server.secret_key, endpoint_url=server.endpoint_url, region="us-east-1")
    return FakeAttempt(creds, server.store(), SourceInfo(CRATEDB, {}, "timestamp with time zone", version=version))


def test_the_local_s3_server_names_no_region_unless_asked(s3_server, naming_server):
    """As MinIO by default: CrateDB 5.x keeps the endpoint it is given."""
    for server in (s3_server, naming_server):
        server.ensure_bucket("regions")
    assert s3_server.store().reported_region("regions") is None
    assert naming_server.store().reported_region("regions") == "us-east-1"


@pytest.mark.parametrize(
    ("version", "refused"),
    [((5, 10, 16), True), ((6, 2, 9), True), ((6, 3, 0), False), ((6, 4, 3), False), (None, False)],
)
def test_copy_is_refused_where_cratedb_would_follow_the_region_to_aws(naming_server, s3_server, version, refused):
    naming_server.ensure_bucket("lake")
    s3_server.ensure_bucket("lake")
    if refused:
        with pytest.raises(
            TargetUnusable, match=r"would send COPY's S3 requests to AWS's endpoint for region 'us-east-1'"
        ):
            check_endpoint_kept(attempt_for(naming_server, version), "lake")  # type: ignore[arg-type]
    else:
        check_endpoint_kept(attempt_for(naming_server, version), "lake")  # type: ignore[arg-type]
    check_endpoint_kept(attempt_for(s3_server, version), "lake")  # type: ignore[arg-type]  # no region named: kept


def test_an_aws_endpoint_is_never_refused(naming_server):
    attempt = attempt_for(naming_server, (5, 10, 16))
    attempt.creds = S3Credentials(
        "AKIA", "s", endpoint_url="https://s3.eu-central-1.amazonaws.com", region="eu-central-1"
    )
    check_endpoint_kept(attempt, "lake")  # type: ignore[arg-type]  # AWS itself: its region's endpoint is right


def test_copy_engine_drops_files_without_rows(s3_server, bucket):
    """CrateDB writes a file per shard, also for shards without rows in the window."""
    import gzip as gz

    from cratedb_airflow_export.engines.copy import without_empty_files

    store = s3_server.store()

    client = store.client
    bodies = {
        "s/metrics_0_.json.gz": gz.compress(b""),
        "s/metrics_1_.json": b"",
        "s/metrics_2_.json.gz": gz.compress(b'{"a": 1}\n'),
        "s/metrics_3_.json": b"\n",
        "s/metrics_4_.json": b'{"a": 2}\n',
    }
    for key, body in bodies.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    kept = without_empty_files(store, bucket, store.list_objects(Location(bucket, "s")))
    assert [o.key for o in kept] == ["s/metrics_2_.json.gz", "s/metrics_4_.json"]
    assert [o.key for o in store.list_objects(Location(bucket, "s"))] == [o.key for o in kept]
