"""The S3 backend without a server: what every write carries, the bounds of its two clients.
(Against a real S3 server: tests/e2e/test_storage.py.)"""

from __future__ import annotations

from cratedb_airflow_export.storage import WriteOptions
from cratedb_airflow_export.stores.s3 import DATA_TIMEOUTS, PROBE_TIMEOUTS, client_config, write_args


def test_every_write_carries_a_checksum_and_the_tables_encryption():
    assert write_args(None) == write_args(WriteOptions()) == {"ChecksumAlgorithm": "SHA256"}
    assert write_args(WriteOptions("AES256")) == {"ChecksumAlgorithm": "SHA256", "ServerSideEncryption": "AES256"}
    assert write_args(WriteOptions("aws:kms", "alias/lake")) == {
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
