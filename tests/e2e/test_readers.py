"""The cursor path (the one CrateDB sources take) against a real PostgreSQL: two cursors taking
turns on one declared cursor, timestamps and dates read as text and parsed by Arrow, other types
psycopg would turn into Python objects kept as the server's text. Each value is compared with
what psycopg's own default loaders make of it (the reference the path replaced)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from cratedb_airflow_export.readers import (
    CursorReader,
    FetchBudget,
    ParallelReader,
    Piece,
    Prefetcher,
    register_loaders,
    schema_for,
)

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


def fixed(fetch: str) -> Piece:
    """A piece declared already whose FETCH asks for the same rows whatever the budget says."""
    return Piece(fetch=lambda rows: fetch)


def read(url: str, sql: str, batch: int, time_zone: str = "UTC", binary: bool = False) -> Iterator[pa.RecordBatch]:
    with psycopg.connect(url, autocommit=True, options=f"-c TimeZone={time_zone}") as conn:
        conn.execute(f"DECLARE c NO SCROLL CURSOR WITH HOLD FOR {sql}")
        turns = [conn.cursor(), conn.cursor()]
        for cursor in turns:
            register_loaders(cursor)
        reader = CursorReader(turns, [fixed(f"FETCH {batch} FROM c")], budget=FetchBudget.fixed(batch), binary=binary)
        with Prefetcher(reader, stall_seconds=30, what="test") as prefetcher:
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
            readers.append(CursorReader(turns, [fixed(f"FETCH {batch} FROM c{n}")], budget=FetchBudget.fixed(batch)))
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


BINARY_COLUMNS = """
    id INT, flag BOOLEAN, small SMALLINT, big BIGINT, r REAL, d DOUBLE PRECISION, t TEXT, v VARCHAR(20),
    doc JSON, ts TIMESTAMPTZ, local_ts TIMESTAMP
"""
BINARY_VALUES = [
    "(1, true, -32768, -9223372036854775808, 0.1, 1e308, 'température', '電力', '{\"a\": [1, 2.5, null]}', "
    "'2024-01-04 00:00:00.000001+00', '1999-12-31 23:59:59.999999')",
    "(2, false, 32767, 9223372036854775807, 'NaN', '-Infinity', '', 'x', '\"text\"', "
    "'1969-12-31 23:59:59.999999+00', '0001-01-01 00:00:00')",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(4, true, 0, 0, -0.0, 5e-324, 'a\nb', 'y', '{}', '9999-12-31 23:59:59.999999+00', '2000-01-01 00:00:00')",
]


def test_the_binary_format_reads_what_the_text_format_reads(postgres):
    """Every type of readers.BINARY_OIDS, at its edges (before 1970 and 2000, the last microsecond of
    9999, int extremes, NaN, unicode, NULL): the same values whichever format the server sends."""
    name = f"public.binary_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} ({BINARY_COLUMNS})")
        conn.execute(f"INSERT INTO {name} VALUES {', '.join(BINARY_VALUES)}")
    query = f"SELECT * FROM {name} ORDER BY id"
    text = pa.Table.from_batches(list(read(postgres.url, query, 1)))
    binary = pa.Table.from_batches(list(read(postgres.url, query, 1, binary=True)))
    assert binary.schema == text.schema
    got_rows, want_rows = binary.to_pylist(), text.to_pylist()
    assert [got_rows[0], *got_rows[2:]] == [want_rows[0], *want_rows[2:]]  # NaN is not equal to itself: row 2 below
    got, want = got_rows[1], want_rows[1]
    assert str(got.pop("r")) == str(want.pop("r")) == "nan"
    assert got == want
    assert binary.column("ts")[3].as_py() == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert binary.column("ts")[1].as_py() == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert binary.column("doc")[0].as_py() == '{"a": [1, 2.5, null]}'  # JSON's own text


def test_the_binary_format_is_asked_for_only_after_a_result_showed_every_column_allows_it(postgres):
    """The first FETCH is text; later ones binary when every column is in BINARY_OIDS, else text
    (a date or a numeric column keeps the whole read on text)."""
    seen: list[int] = []
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        for query in (
            "SELECT g AS id, now() AS ts FROM generate_series(1, 5) AS g",
            "SELECT g AS id, current_date AS day FROM generate_series(1, 5) AS g",
        ):
            conn.execute(f"DECLARE c NO SCROLL CURSOR WITH HOLD FOR {query}")
            turns = [conn.cursor(), conn.cursor()]
            for cursor in turns:
                register_loaders(cursor)
            reader = CursorReader(turns, [fixed("FETCH 2 FROM c")], budget=FetchBudget.fixed(2), binary=True)
            with Prefetcher(reader, stall_seconds=30, what="test") as prefetcher:
                batches = list(prefetcher)
            seen.append(reader.binary_fetches)
            assert [b.num_rows for b in batches] == [2, 2, 1]
            assert sorted(pa.Table.from_batches(batches).column("id").to_pylist()) == [1, 2, 3, 4, 5]
            conn.execute("CLOSE c")
    assert seen == [3, 0]  # 4 FETCHes: the first text, the rest (3, the empty one too) binary; none with a date


def declared(conn: psycopg.Connection[Any], name: str, lows: list[int], size: int) -> list[Piece]:
    """A cursor of its own on ``conn`` per ``low``, over ``size`` ids from there: declared now, fetched
    and closed by the reader."""
    pieces = []
    for n, low in enumerate(lows):
        query = "SELECT g AS id FROM generate_series(%s::int, %s::int) AS g"
        conn.execute(f"DECLARE {name}_{n} NO SCROLL CURSOR WITH HOLD FOR {query}", (low, low + size - 1))
        pieces.append(Piece(fetch=lambda rows, n=n: f"FETCH {rows} FROM {name}_{n}", close=f"CLOSE {name}_{n}"))
    return pieces


class CountingBudget(FetchBudget):
    """A FetchBudget that records the most results it ever had out at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out = self.most = 0
        self._lock = threading.Lock()

    def acquire(self, stopped: Any) -> bool:
        taken = super().acquire(stopped)
        with self._lock:
            self.out += taken
            self.most = max(self.most, self.out)
        return taken

    def release(self) -> None:
        with self._lock:
            self.out -= 1
        super().release()


@pytest.mark.parametrize("readers", [1, 3])
def test_readers_read_their_cursors_one_by_one_and_hold_no_more_than_the_budget(postgres, readers):
    """Each connection's cursors (one empty, one much larger than the rest) read one after the
    other: every row exactly once, every cursor closed, and never more results out than the budget's
    slots for all readers together, with a slow consumer."""
    conns = [psycopg.connect(postgres.url, autocommit=True) for _ in range(readers)]
    budget = CountingBudget(slots=2, batch_bytes=1 << 30, max_rows=64, first_rows=16)
    try:
        parts = []
        for n, conn in enumerate(conns):
            lows = [low for low in range(0, 800, 100) if (low // 100) % readers == n]
            pieces = declared(conn, f"p{n}", lows, 100) + declared(conn, f"e{n}", [0], 0)  # 0 to -1: nothing
            if n == readers - 1:
                pieces += declared(conn, "q", [10_000], 2_000)
            turns = [conn.cursor(), conn.cursor()]
            for cursor in turns:
                register_loaders(cursor)
            parts.append(CursorReader(turns, pieces, budget=budget))
        ids: list[int] = []
        with Prefetcher(ParallelReader(parts), stall_seconds=30, what="test") as prefetcher:
            for batch in prefetcher:
                time.sleep(0.002)  # a consumer slower than the readers: the budget is what holds them
                ids += batch.column("id").to_pylist()
        assert sorted(ids) == list(range(800)) + list(range(10_000, 12_000))
        assert budget.most <= 2 and budget.out == 0
        assert sum(part.fetches for part in parts) > 2_800 // 64  # the budget's 64 rows per FETCH, at most
        for conn in conns:
            assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone() == (0,)
    finally:
        for conn in conns:
            conn.close()
