"""The oracle (tests/oracle.py) against a real CrateDB: the tutorial's shape, partitioned by the day of
``ts_a`` (retention drops whole partitions), written by the ``copy`` engine (CrateDB's COPY TO) or the
``stream`` engine, each step in a random process time zone. Runs when CRATEDB_URL is set (``make
integration``), skipped with that reason otherwise; ORACLE_EXAMPLES / ORACLE_STEPS bound it as on
PostgreSQL."""

from __future__ import annotations

import os

import pytest

from tests.cratedb.test_cratedb import CRATEDB_URL, s3_conn, store  # noqa: F401 (fixtures)
from tests.e2e.test_oracle import oracle_settings
from tests.oracle import ArchiveOracle, Setting, Source, run

pytestmark = [
    pytest.mark.cratedb,
    pytest.mark.skipif(not CRATEDB_URL, reason="CRATEDB_URL is not set: no CrateDB server to test against"),
]

EXAMPLES = int(os.environ.get("ORACLE_EXAMPLES", "6"))
STEPS = int(os.environ.get("ORACLE_STEPS", "30"))


def test_nothing_lost_nothing_wrong_on_cratedb(monkeypatch, store, s3_conn):  # noqa: F811
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", CRATEDB_URL or "")
    setting = Setting(
        source=Source(CRATEDB_URL or "", cratedb=True, partitioned=True),
        server=store,
        bucket=s3_conn,
        engines=("copy", "stream"),
        formats=("jsonl", "parquet"),
    )
    run(setting, ArchiveOracle, oracle_settings(EXAMPLES, STEPS))


def test_the_fetch_phase_on_cratedb_reads_every_row_once(monkeypatch, store, s3_conn):  # noqa: F811
    """The machine with the stream engine reading through CrateDB's fetch phase: each day cut by its
    histogram into sub-windows of one row, each declared with a LIMIT."""
    from cratedb_airflow_export.engines import stream

    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", CRATEDB_URL or "")
    monkeypatch.setattr(stream, "MIN_WINDOW_ROWS", 1)
    monkeypatch.setattr(stream, "MAX_WINDOW_ROWS", 1)
    setting = Setting(
        source=Source(CRATEDB_URL or "", cratedb=True, partitioned=True),
        server=store,
        bucket=s3_conn,
        engines=("stream",),
        formats=("jsonl", "parquet"),
        extra={"fetch_phase": "always"},
    )
    run(setting, ArchiveOracle, oracle_settings(max(2, EXAMPLES // 2), STEPS))
