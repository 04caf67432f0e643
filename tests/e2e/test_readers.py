"""The cursor path (the one CrateDB sources take) against a real PostgreSQL: two cursors taking
turns on one declared cursor, timestamps and dates read as text and parsed by Arrow, other types
psycopg would turn into Python objects kept as the server's text. Each value is compared with
what psycopg's own default loaders make of it (the reference the path replaced)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from cratedb_airflow_export.readers import CursorReader, Prefetcher, register_loaders, schema_for

pytestmark = pytest.mark.e2e

COLUMNS = """
    id INT, ts TIMESTAMPTZ, local_ts TIMESTAMP, day DATE, stamps TIMESTAMPTZ[], days DATE[],
    amount NUMERIC, tiny NUMERIC, ident UUID, gap INTERVAL, clock TIME, addr INET, gaps INTERVAL[]
"""
VALUES = [
    "(1, '2024-01-04 00:00:00+00', '2024-01-04 08:30:00', '2024-01-04', "
    "ARRAY['2024-01-04 01:02:03.000004+00'::timestamptz, NULL], ARRAY['2024-01-03'::date], 12.50, 0.0000001, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00:00', '13:14:15.5', '10.0.0.1/8', "
    "ARRAY['1 mon'::interval, '-3 days'::interval])",
    "(2, '2024-01-04 23:59:59.999999+00', '0001-01-01 00:00:00', '0001-01-01', '{}', NULL, -0.001, 1e-20, NULL, "
    "'-1 year', NULL, NULL, NULL)",
    "(3, '2024-01-04 12:00:00.000001+05', '9999-12-31 23:59:59.999999', '9999-12-31', "
    "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(4, NULL, NULL, NULL, NULL, NULL, 'NaN', 0, NULL, NULL, NULL, NULL, NULL)",
    # before 1901 this zone's offset has seconds (+05:53:28): Arrow does not parse those, psycopg does
    "(5, '1890-06-01 12:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]
TEXT_COLUMNS = ("amount", "tiny", "ident", "gap", "clock", "addr", "gaps")


@pytest.fixture(scope="module")
def typed(postgres) -> str:
    name = f"public.cursor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} ({COLUMNS})")
        conn.execute(f"INSERT INTO {name} VALUES {', '.join(VALUES)}")
    return name


def read(url: str, sql: str, batch: int, time_zone: str = "UTC") -> Iterator[pa.RecordBatch]:
    with psycopg.connect(url, autocommit=True, options=f"-c TimeZone={time_zone}") as conn:
        conn.execute(f"DECLARE c NO SCROLL CURSOR WITH HOLD FOR {sql}")
        turns = [conn.cursor(), conn.cursor()]
        for cursor in turns:
            register_loaders(cursor)
        with Prefetcher(CursorReader(turns, f"FETCH {batch} FROM c"), stall_seconds=30, what="test") as prefetcher:
            yield from prefetcher
        conn.execute("CLOSE c")


def reference(url: str, sql: str, time_zone: str = "UTC") -> list[dict[str, Any]]:
    """psycopg's default loaders, then Arrow: what the cursor path did before reading text."""
    with psycopg.connect(url, autocommit=True, options=f"-c TimeZone={time_zone}") as conn, conn.cursor() as cur:
        cur.execute(sql)
        schema = schema_for(cur.description)
        rows = cur.fetchall()
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [
            pa.array(c, f.type) if f.name not in TEXT_COLUMNS else pa.array(c)
            for c, f in zip(columns, schema, strict=True)
        ],
        names=schema.names,
    ).to_pylist()


@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata", "America/St_Johns", "Asia/Kathmandu"])
@pytest.mark.parametrize("batch", [1, 2, 100])
def test_times_equal_psycopgs_own_loaders_in_any_session_time_zone(postgres, typed, time_zone, batch):
    sql = f"SELECT id, ts, local_ts, day, stamps, days FROM {typed} ORDER BY id"
    batches = list(read(postgres.url, sql, batch, time_zone))
    assert sum(b.num_rows for b in batches) == len(VALUES)
    assert len(batches) == -(-len(VALUES) // batch)  # every FETCH's rows, in order, none twice
    got = pa.Table.from_batches(batches).to_pylist()
    assert got == reference(postgres.url, sql, time_zone)
    assert got[0]["ts"] == datetime(2024, 1, 4, tzinfo=timezone.utc)
    assert got[2]["ts"] == datetime(2024, 1, 4, 7, 0, 0, 1, tzinfo=timezone.utc)  # +05 taken off
    assert got[4]["ts"] == datetime(1890, 6, 1, 12, tzinfo=timezone.utc)
    assert (got[1]["local_ts"], got[1]["day"]) == (datetime(1, 1, 1), date(1, 1, 1))
    assert got[0]["stamps"] == [datetime(2024, 1, 4, 1, 2, 3, 4, tzinfo=timezone.utc), None]
    assert batches[0].schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_other_types_keep_the_servers_text(postgres, typed):
    names = ", ".join(TEXT_COLUMNS)
    got = pa.Table.from_batches(list(read(postgres.url, f"SELECT {names} FROM {typed} ORDER BY id", 2))).to_pylist()
    texts = ", ".join(f"{c}::text" for c in TEXT_COLUMNS)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        want = [
            dict(zip(TEXT_COLUMNS, row, strict=True))
            for row in conn.execute(f"SELECT {texts} FROM {typed} ORDER BY id")
        ]
    assert got == want
    assert got[0]["tiny"] == "0.0000001"  # str(Decimal) would say 1E-7
    assert got[0]["gap"] == "1 day 02:00:00"  # str(timedelta) would say 1 day, 2:00:00
    assert got[1]["tiny"] == "0.00000000000000000001"


@pytest.mark.parametrize(
    ("value", "error"),
    [("'4713-01-01 BC'::date", "BC"), ("'infinity'::timestamptz", "infinity"), ("'-infinity'::timestamp", "infinity")],
)
def test_values_python_cannot_hold_fail_as_psycopg_fails(postgres, value, error):
    """Arrow does not parse them; psycopg's loader then raises what it raised before."""
    with pytest.raises(psycopg.DataError, match=error):
        list(read(postgres.url, f"SELECT 1 AS id, {value} AS v", 10))


def parallel(url: str, sqls: list[str], batch: int) -> list[pa.RecordBatch]:
    """One cursor per query, each on a connection of its own, read together by a ParallelReader."""
    from cratedb_airflow_export.readers import ParallelReader

    # WITHOUT HOLD, in a transaction: PostgreSQL then runs the query as it is fetched (a WITH HOLD
    # cursor in autocommit is computed whole when declared), so an error arrives with a FETCH
    conns = [psycopg.connect(url) for _ in sqls]
    try:
        readers = []
        for n, (conn, sql) in enumerate(zip(conns, sqls, strict=True)):
            conn.execute(f"DECLARE c{n} NO SCROLL CURSOR WITHOUT HOLD FOR {sql}")
            turns = [conn.cursor(), conn.cursor()]
            for cursor in turns:
                register_loaders(cursor)
            readers.append(CursorReader(turns, f"FETCH {batch} FROM c{n}"))
        with Prefetcher(ParallelReader(readers), stall_seconds=30, what="test") as prefetcher:
            batches = list(prefetcher)
            assert prefetcher.schema is not None
        return batches
    finally:
        for conn in conns:
            conn.close()


def test_several_cursors_read_together_deliver_every_row_once(postgres):
    sqls = [f"SELECT g AS id, g * 2 AS twice FROM generate_series({lo}, {lo + 999}) AS g" for lo in (0, 1000, 2000)]
    batches = parallel(postgres.url, [*sqls, "SELECT 1 AS id, 2 AS twice WHERE false"], 128)  # one reads nothing
    rows = pa.Table.from_batches(batches).to_pylist()
    assert sorted(r["id"] for r in rows) == list(range(3000))
    assert all(r["twice"] == 2 * r["id"] for r in rows)


def test_several_cursors_that_read_nothing_still_give_the_schema(postgres):
    batches = parallel(postgres.url, ["SELECT 1 AS id WHERE false", "SELECT 2 AS id WHERE false"], 10)
    assert batches == []


def test_an_error_of_one_cursor_ends_the_read(postgres):
    bad = "SELECT g AS id FROM generate_series(1, 10) AS g WHERE 1 / (g - 5) > -100"  # division by zero at row 5
    started = time.monotonic()
    with pytest.raises(psycopg.errors.DivisionByZero):
        parallel(postgres.url, ["SELECT g AS id FROM generate_series(1, 1000000) AS g", bad], 1)
    assert time.monotonic() - started < 20  # the other cursor did not have to be read to its end


@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_numerics_special_values_are_written_as_postgresql_spells_them(
    connections, postgres, s3_server, bucket, reader
):
    """numeric's exact text, whichever reader: ADBC's decoder says nan/inf/-inf, PostgreSQL (and the
    cursor path, and the docs) NaN/Infinity/-Infinity; inside arrays too."""
    import io

    import pyarrow.parquet as pq

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.export import run_export
    from cratedb_airflow_export.windows import Window

    name = f"public.numerics_{uuid.uuid4().hex[:8]}"
    values = ["NaN", "Infinity", "-Infinity", "1.50", "-0.001", None]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id INT, ts TIMESTAMPTZ, n NUMERIC, ns NUMERIC[])")
        for n, value in enumerate(values):
            conn.execute(
                f"INSERT INTO {name} VALUES (%s, '2024-01-04 12:00:00+00', %s::numeric, ARRAY[%s::numeric])",
                (n, value, value),
            )
    cfg = TableExport.model_validate(
        {
            "table": name,
            "timestamp_column": "ts",
            "engine": "stream",
            "format": "parquet",
            "reader": reader,
            "target": f"s3://{bucket}/lake",
        }
    )
    result = run_export(cfg, Window.for_day(date(2024, 1, 4)))
    (obj,) = result.objects
    body = s3_server.client().get_object(Bucket=bucket, Key=obj.key)["Body"].read()
    rows = sorted(pq.read_table(io.BytesIO(body)).to_pylist(), key=lambda r: r["id"])
    assert [r["n"] for r in rows] == values
    assert [r["ns"] for r in rows] == [[v] for v in values]
