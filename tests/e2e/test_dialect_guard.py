"""The CrateDB dialect guard (devtools/dialect_guard.py) itself, against the real local PostgreSQL:
it refuses what CrateDB would refuse, passes what CrateDB takes, in both wire protocols, and the
connection stays usable after a refusal."""

from __future__ import annotations

import psycopg
import pytest
from devtools.dialect_guard import refusal

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("ROLLBACK", "transaction control"),
        ("SAVEPOINT a", "transaction control"),
        ("RELEASE SAVEPOINT a", "transaction control"),
        ("COPY doc.metrics TO STDOUT", "COPY ... TO STDOUT"),
        ("COPY (SELECT 1) TO STDOUT (FORMAT binary)", "COPY ... TO STDOUT"),
        ("COPY doc.metrics FROM STDIN", "COPY ... TO STDOUT / FROM STDIN"),
        ("LISTEN jobs", "notifications"),
        ("NOTIFY jobs", "notifications"),
        ("DO $$ BEGIN END $$", "not CrateDB SQL"),
        ("SELECT 1 FROM doc.metrics FOR UPDATE", "not CrateDB SQL"),
        ("PREPARE p AS SELECT 1", "not CrateDB SQL"),
    ],
)
def test_refuses_what_cratedb_refuses(statement, reason):
    assert reason in (refusal(statement) or "")


@pytest.mark.parametrize(
    "statement",
    [
        'DECLARE "cratedb_export" NO SCROLL CURSOR WITH HOLD FOR SELECT "a" FROM "doc"."t" WHERE "ts" >= $1',
        'FETCH FORWARD 10000 FROM "cratedb_export"',
        'CLOSE "cratedb_export"',
        'REFRESH TABLE "doc"."metrics"',
        'COPY "doc"."metrics" WHERE "ts" >= $1 AND "ts" < $2 TO DIRECTORY $3 WITH (format = \'json_object\')',
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
        "BEGIN",
        "COMMIT",
    ],
)
def test_passes_what_cratedb_takes(statement):
    assert refusal(statement) is None


@pytest.fixture
def guarded_url(dialect_guard, postgres):
    dialect_guard.reset()
    return dialect_guard.route(postgres.url)


def test_a_refused_statement_fails_and_the_connection_stays_usable(dialect_guard, guarded_url):
    with psycopg.connect(guarded_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="does not support transaction control"):
            conn.execute("ROLLBACK")  # simple query protocol (no parameters)
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not CrateDB SQL"):
            conn.execute("SELECT %s::int FOR UPDATE", (1,))  # extended protocol
        assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
        assert conn.execute("SELECT 'ok'").fetchone() == ("ok",)
    assert [s for s, _ in dialect_guard.refused] == ["ROLLBACK", "SELECT $1::int FOR UPDATE"]
    assert dialect_guard.seen[-2:] == ["SELECT $1::int + 1", "SELECT 'ok'"]


def test_a_cursor_is_declared_fetched_and_closed_through_it(dialect_guard, guarded_url):
    with psycopg.connect(guarded_url, autocommit=True) as conn:
        conn.execute("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 5) AS g")
        batches = []
        while rows := conn.execute("FETCH FORWARD 2 FROM c").fetchall():
            batches.append([r[0] for r in rows])
        conn.execute("CLOSE c")
    assert batches == [[1, 2], [3, 4], [5]]
    assert dialect_guard.refused == []


def test_pipelined_statements_keep_their_own_results(dialect_guard, guarded_url):
    """A refusal inside a pipeline fails that statement: the one before it keeps its result, the
    error arrives in the refused statement's place, and the connection goes on."""
    with psycopg.connect(guarded_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="notifications"):
            with conn.pipeline():
                first = conn.execute("SELECT %s::int", (1,))
                conn.execute("LISTEN jobs")
        assert first.fetchone() == (1,)
        assert conn.execute("SELECT %s::int", (2,)).fetchone() == (2,)
    assert [s for s, _ in dialect_guard.refused] == ["LISTEN jobs"]


@pytest.mark.cratedb_dialect
@pytest.mark.guard_refusals_expected
def test_a_run_that_sends_rollback_fails_through_the_guard(
    airflow_db, connections, dialect_guard, metrics, s3_server, bucket, monkeypatch
):
    """Were the product to send ROLLBACK (as psycopg does for a connection left in a transaction),
    the export through Airflow fails at once, naming the cause, and publishes nothing."""
    from datetime import date

    from cratedb_airflow_export import attempt
    from tests.helpers import make_dag, read_objects, run_dag, task_states, task_tries

    real_inspect = attempt.check_table

    def inspect_then_roll_back(cursor, cfg):
        cursor.execute("ROLLBACK")
        return real_inspect(cursor, cfg)

    monkeypatch.setattr(attempt, "check_table", inspect_then_roll_back)
    entry = {"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream", "reader": "cursor"}
    dag = make_dag("e2e_guard_rollback", [{**entry, "target": f"s3://{bucket}/x"}])
    dag_run = run_dag(dag, date(2024, 1, 4))
    assert task_states(dag_run) == {"export_doc.metrics": "failed"}
    assert task_tries(dag_run) == {"export_doc.metrics": 1}  # 0A000: cannot heal, not retried
    assert [s for s, _ in dialect_guard.refused] == ["ROLLBACK"]
    assert read_objects(s3_server, bucket) == {}


def test_copy_from_takes_its_uri_list_only_typed_as_text_array(dialect_guard, guarded_url, postgres):
    """CrateDB reads an untyped parameter as one string, so a plain list of URIs arrives at
    ``COPY ... FROM $1`` as ``{s3://a,s3://b}`` (seen on CrateDB 5.10.16 and 6.4.3). psycopg sends
    a plain list untyped (OID 0): the guard refuses that, as CrateDB fails it. The restore's
    statement, run as the product runs it, goes typed ``text[]`` (OID 1009) and passes the guard
    (PostgreSQL itself then refuses a parameter in COPY, which is not the guard speaking)."""
    from cratedb_airflow_export import source, sql
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import SourceParams

    cfg = TableExport.model_validate({"table": "doc.metrics", "timestamp_column": "ts", "target": "s3://lake/x"})
    uris = [
        sql.Secret(f"s3://k:s@127.0.0.1:9000/lake/f{i}.json", f"s3://k:***@127.0.0.1:9000/lake/f{i}.json")
        for i in (0, 1)
    ]
    statement = sql.copy_from(cfg, uris, gzip=False)
    params = SourceParams(
        host="127.0.0.1",
        port=dialect_guard.port,
        dbname=postgres.database,
        user=postgres.user,
        password=postgres.password,
    )
    with source.connect(params) as conn, conn.cursor() as cursor:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"untyped parameter \$1 of COPY \.\.\. FROM"):
            cursor.execute(statement.sql, [list(statement.bind()[0])])  # a plain list: OID 0
        with pytest.raises(psycopg.errors.SyntaxError):  # PostgreSQL's own answer: the guard let it through
            source.execute(cursor, statement, 10)
    assert dialect_guard.parameter_types == [(statement.wire_sql, (0,)), (statement.wire_sql, (1009,))]
    assert [reason for _, reason in dialect_guard.refused] == [
        "CrateDB reads the untyped parameter $1 of COPY ... FROM as one string: send the URIs typed, as text[] "
        "(OID 1009)"
    ]
