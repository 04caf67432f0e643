"""lease.py without a server: where a day's lease lives and how long it lasts (against the real S3
server, with real processes: tests/e2e/test_lease.py)."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.errors import ConfigError
from cratedb_airflow_export.lease import DEFAULT_LEASE_SECONDS, describe, lease_key, lease_seconds
from cratedb_airflow_export.loading import parse_tables
from cratedb_airflow_export.storage import Location


def test_the_lease_of_a_day_lives_outside_every_table_folder():
    day = Location("lake", "cratedb/doc.metrics/dt=2024-01-04")
    assert lease_key(day) == Location("lake", "_cratedb_export_leases/cratedb/doc.metrics/dt=2024-01-04.json")
    with pytest.raises(ConfigError, match="is inside _cratedb_export_leases/, which every export uses for its leases"):
        parse_tables([{"table": "t", "timestamp_column": "ts", "target": "s3://lake/_cratedb_export_leases/x"}])


def test_how_long_a_lease_lasts(monkeypatch):
    monkeypatch.delenv("CRATEDB_EXPORT_LEASE_SECONDS", raising=False)
    assert lease_seconds() == DEFAULT_LEASE_SECONDS == 120
    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    assert lease_seconds() == 10
    for bad in ("9", "86401", "2m", "-5"):
        monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", bad)
        with pytest.raises(ValueError, match="a number of seconds from 10 to 86400"):
            lease_seconds()


def test_the_holder_is_named_for_people():
    content = {"what": "export of doc.metrics for [...)", "holder": "manual-try0-1a2b", "host": "w1", "pid": 42}
    assert describe(content) == "export of doc.metrics for [...) (holder manual-try0-1a2b, host w1, pid 42)"
    assert describe({}) == "a writer (holder None, host None, pid None)"
