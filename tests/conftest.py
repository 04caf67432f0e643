"""Fixtures: a real PostgreSQL, a real S3-compatible server, Airflow's database, the connections
that point the product at them (through the CrateDB dialect guard where the path is CrateDB's).
Helpers and constants are in ``tests/helpers.py``, imported first: it sets up Airflow's environment.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devtools.devstack import LocalPostgres, LocalS3, create_metrics, sample_metrics

from tests.helpers import (  # sets the environment first
    AIRFLOW_HOME,
    BIG_ROWS,
    ROWS_PER_DAY,
    SAMPLE_DAYS,
    STORE_SCHEMES,
    Lake,
    airflow_cli,
    new_bucket,
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    proc = airflow_cli("db", "migrate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    workdir = Path(tempfile.mkdtemp(prefix="cratedb-export-test-pg-"))
    pg = LocalPostgres(workdir).start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[LocalS3]:
    server = LocalS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    """Azurite's blob service (devtools/emulators.py: pinned, installed under .tools/ by make)."""
    from devtools.emulators import LocalAzurite

    server = LocalAzurite().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[Any]:
    """fake-gcs-server (devtools/emulators.py: pinned, built under .tools/ by make)."""
    from devtools.emulators import LocalFakeGCS

    server = LocalFakeGCS().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def metrics(postgres: LocalPostgres) -> list[tuple[Any, ...]]:
    """``doc.metrics`` in PostgreSQL with ROWS_PER_DAY rows on each of SAMPLE_DAYS."""
    import psycopg

    rows = sample_metrics(SAMPLE_DAYS, ROWS_PER_DAY)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, rows)
    return rows


@pytest.fixture(scope="session")
def big_table(postgres: LocalPostgres, metrics: list[tuple[Any, ...]]) -> str:
    """A table with BIG_ROWS rows on 2024-01-04, large enough for multipart uploads and copies."""
    import psycopg

    name = f"doc.big_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE {name} ("hash_id" BIGINT, "timestamp" TIMESTAMPTZ, "name" TEXT, "fields" JSON)')
        conn.execute(
            f"INSERT INTO {name} SELECT g, '2024-01-04'::timestamptz + g * interval '2 second', "
            f"'row ' || g || ' ' || repeat('x', 200), json_build_object('g', g) FROM generate_series(1, {BIG_ROWS}) g"
        )
    return name


@pytest.fixture(scope="session")
def dialect_guard(postgres: LocalPostgres) -> Iterator[Any]:
    """The CrateDB dialect guard (devtools/dialect_guard.py) in front of the local PostgreSQL."""
    from devtools.dialect_guard import DialectGuard

    guard = DialectGuard(postgres.port).start()
    try:
        yield guard
    finally:
        guard.stop()


def takes_cratedb_path(request: pytest.FixtureRequest) -> bool:
    """The test exercises what CrateDB sources get: the cursor reader (a ``reader`` parameter of
    ``cursor``) or the ``cratedb_dialect`` marker."""
    params = getattr(request.node, "callspec", None)
    reader = params.params.get("reader") if params is not None else None
    return reader == "cursor" or request.node.get_closest_marker("cratedb_dialect") is not None


@pytest.fixture
def connections(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, postgres: LocalPostgres, s3_server: LocalS3
) -> Iterator[None]:
    """The AIRFLOW_CONN_* variables for the local PostgreSQL and S3 server. Tests of the CrateDB
    path reach PostgreSQL through the dialect guard, and fail if the product sent anything CrateDB
    would refuse."""
    guard = request.getfixturevalue("dialect_guard") if takes_cratedb_path(request) else None
    source = postgres.url if guard is None else guard.route(postgres.url)
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", source)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", s3_server.airflow_conn_uri())
    if guard is not None:
        guard.reset()
    yield
    if guard is not None and request.node.get_closest_marker("guard_refusals_expected") is None:
        assert guard.refused == [], f"sent to the source, refused by CrateDB's dialect: {guard.refused}"
        assert guard.seen, "nothing went through the dialect guard"


@pytest.fixture
def bucket(s3_server: LocalS3) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(params=list(STORE_SCHEMES))
def lake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, connections: None) -> Lake:
    """A new bucket on each store's server in turn (S3, Azurite, fake-gcs-server), with the
    connection the package reads it with: a test taking it runs on all three stores."""
    server, name = new_bucket(request, monkeypatch, request.param)
    return Lake(request.param, server, name)


# Process time zones far from UTC, with odd offsets (+05:45, +12:45/+13:45, -03:30) and ones that
# move the date (Tokyo, Los Angeles): a naive timestamp read as local time shifts its day.
PROCESS_ZONES = ["UTC", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns", "Asia/Tokyo", "America/Los_Angeles"]


def set_process_zone(zone: str | None) -> None:
    """The process's local time zone, for Python's time functions (None: the environment's default)."""
    if zone is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = zone
    time.tzset()


@pytest.fixture(params=PROCESS_ZONES)
def process_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test with the process in each of :data:`PROCESS_ZONES`."""
    before = os.environ.get("TZ")
    set_process_zone(request.param)
    try:
        yield request.param
    finally:
        set_process_zone(before)


@pytest.fixture
def oracle_setting(connections: None, postgres: LocalPostgres, s3_server: LocalS3, bucket: str) -> Any:
    """The oracle (tests/oracle.py) on the local PostgreSQL and S3 server."""
    from tests.oracle import Setting, Source

    return Setting(source=Source(postgres.url, cratedb=False), server=s3_server, bucket=bucket)


@pytest.fixture
def oracle_cursor_setting(oracle_setting: Any) -> Any:
    """The oracle on the cursor path (CrateDB's) instead of ADBC: three connections taking twelve
    sub-windows one by one, two rows per FETCH, so that a day's rows spread over pieces and FETCHes."""
    return dataclasses.replace(oracle_setting, extra={"reader": "cursor", "cursors": 3, "batch_size": 2})


def fetch_phase_on_postgres(monkeypatch: pytest.MonkeyPatch, rows: int, readers: int) -> None:
    """PostgreSQL standing in for CrateDB on its default read: a dialect that has the fetch phase,
    a heap and a table size (PostgreSQL has no sys.shards) that make sub-windows of ``rows`` rows
    for ``readers`` connections. PostgreSQL runs the LIMITs as any query: what is tested is the cut,
    the probe and the reading, not CrateDB's speed."""
    from cratedb_airflow_export import attempt, sql
    from cratedb_airflow_export.engines import stream

    real_check = attempt.check_table

    def with_fetch_phase(cursor: Any, cfg: Any) -> Any:
        found = real_check(cursor, cfg)
        dialect = dataclasses.replace(found.dialect, query_then_fetch=True)
        return dataclasses.replace(found, dialect=dialect, heap_bytes=rows * readers * stream.HEAP_SHARE * 1000)

    monkeypatch.setattr(attempt, "check_table", with_fetch_phase)
    monkeypatch.setattr(stream, "MIN_WINDOW_ROWS", 1)
    monkeypatch.setattr(
        sql, "table_size", lambda cfg: sql.Statement(f"SELECT 1000 * count(*), count(*) FROM {sql.qualified(cfg)}")
    )


@pytest.fixture
def oracle_fetch_phase_setting(oracle_cursor_setting: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The oracle on the path CrateDB sources take by default: the window cut by a histogram of its
    rows into sub-windows of one row each, each declared with a LIMIT (CrateDB's fetch phase),
    dealt to three connections (:func:`fetch_phase_on_postgres`)."""
    fetch_phase_on_postgres(monkeypatch, rows=1, readers=3)
    return dataclasses.replace(oracle_cursor_setting, extra={**oracle_cursor_setting.extra, "fetch_phase": "always"})


@pytest.fixture(params=["azure", "gcs"])
def oracle_other_store_setting(
    request: pytest.FixtureRequest, connections: None, postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The oracle on the local PostgreSQL with the archive in Azurite or fake-gcs-server."""
    from tests.helpers import STORE_SCHEMES, new_bucket
    from tests.oracle import Setting, Source

    server, name = new_bucket(request, monkeypatch, request.param)
    return Setting(Source(postgres.url, cratedb=False), server, name, scheme=STORE_SCHEMES[request.param])


def with_catalog(setting: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``setting`` with a SQL catalog (SQLite) as AIRFLOW_CONN_ICEBERG_DEFAULT, for the product and the oracle."""
    import json

    import tests.oracle as oracle

    path = tmp_path / "catalog.db"
    conn = {"conn_type": "generic", "extra": {"type": "sql", "uri": f"sqlite:///{path}"}}
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", json.dumps(conn))
    monkeypatch.setattr(oracle, "SETTING_CATALOG", [str(path)])
    return setting


@pytest.fixture
def oracle_iceberg_setting(oracle_setting: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Iceberg oracle on the local PostgreSQL and S3 server."""
    return with_catalog(oracle_setting, tmp_path, monkeypatch)


@pytest.fixture
def oracle_other_iceberg_setting(
    oracle_other_store_setting: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The Iceberg oracle with the table in Azurite or fake-gcs-server."""
    return with_catalog(oracle_other_store_setting, tmp_path, monkeypatch)
