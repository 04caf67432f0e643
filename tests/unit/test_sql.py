"""Every statement the project can send to CrateDB parses under CrateDB's own grammar
(cratedb-sqlparse) and respects the facts in docs/cratedb.md."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import date

import pytest
from cratedb_sqlparse import sqlparse

from cratedb_airflow_export import sql
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.engines import get_engine
from cratedb_airflow_export.engines.base import ExportJob
from cratedb_airflow_export.engines.stream import cursor_windows, reader_count
from cratedb_airflow_export.export import plan_statements as statements
from cratedb_airflow_export.source import CRATEDB, POSTGRESQL, SourceInfo
from cratedb_airflow_export.windows import Window

SECRET = "wJalr/K7MDENG+bPxRfiCY=EXAMPLEKEY"
WINDOW = Window.for_day(date(2024, 1, 4))

CONFIGS = [
    TableExport.model_validate(
        {
            "table": table,
            "timestamp_column": ts,
            "engine": engine,
            "compression": compression,
            "target": "s3://lake/x",
            **extra,
        }
    )
    for table, ts, engine, compression, extra in itertools.product(
        ["doc.metrics", "metrics", "My_Schema.Events"],
        ["timestamp", "ts"],
        ["copy", "stream"],
        ["gzip", "none"],
        [
            {},
            {"columns": ["hash_id", "timestamp", "name"]},
            {"filter": "name LIKE 'cpu%' AND (tags['host'] = 'h1' OR hash_id > 10)"},
            {"slices": 3},
        ],
    )
    if not (engine == "copy" and compression == "none" and "columns" in extra)  # refused: see test_config
]
CREDENTIALS = [
    None,
    S3Credentials("AKIAEXAMPLE", SECRET, origin="test"),
    S3Credentials("AKIAEXAMPLE", SECRET, region="eu-central-1", origin="test"),
    S3Credentials("minio", SECRET, endpoint_url="http://127.0.0.1:9000", origin="test"),
    S3Credentials("minio", SECRET, endpoint_url="https://minio.example.com", origin="test"),
]
GEO_TABLE = {"hash_id": "bigint", "timestamp": "timestamp with time zone", "pos": "geo_point", "o['it''s']": "text"}
SOURCES = [
    SourceInfo(CRATEDB, {}, "timestamp with time zone"),
    SourceInfo(CRATEDB, {}, "timestamp without time zone", version=(6, 4, 3)),  # DECLARE answers failures
    SourceInfo(CRATEDB, GEO_TABLE, "timestamp with time zone", version=(5, 10, 16)),  # _doc['pos'], the probe
    SourceInfo(CRATEDB, {}, "timestamp with time zone", version=(6, 4, 3), heap_bytes=2**31),  # the fetch phase
    SourceInfo(POSTGRESQL, {}, "timestamp with time zone"),
]


def all_statements():
    for cfg, creds, source in itertools.product(CONFIGS, CREDENTIALS, SOURCES):
        for statement in statements(cfg, WINDOW, source, creds):
            yield cfg, creds, source, statement


def parses(text: str) -> bool:
    result = sqlparse(text, raise_exception=False)
    return len(result) == 1 and result[0].exception is None


def test_every_emitted_statement_parses_under_cratedb_grammar():
    seen = set()
    for _, _, _, statement in all_statements():
        text = statement.wire_sql
        if text in seen:
            continue
        seen.add(text)
        assert parses(text), text
    assert len(seen) > 80  # the matrix really covers many variants


def test_grammar_check_can_fail():
    assert not parses("ROLLBACK")
    assert not parses("COPY doc.metrics TO DIRECTORY")


def test_secrets_are_never_in_statement_text_only_in_a_bind_parameter():
    for _, creds, _, statement in all_statements():
        assert SECRET not in statement.wire_sql
        assert "%2F" not in statement.wire_sql
        assert SECRET not in statement.describe()
        if statement.wire_sql.startswith("COPY") and creds is not None:
            uri = statement.bind()[-1]
            assert uri.startswith("s3://") and "wJalr%2FK7MDENG%2BbPxRfiCY%3DEXAMPLEKEY" in uri
            assert SECRET not in uri  # percent-encoded, never raw


def test_copy_statement_facts():
    for cfg, creds, _, statement in all_statements():
        text = statement.wire_sql
        if not text.startswith("COPY"):
            continue
        assert text.startswith("COPY ")  # no comment before it: the command tag carries the row count
        assert "wait_for_completion = true" in text
        assert "format = 'json_object'" in text
        assert ("compression = 'gzip'" in text) == (cfg.compression == "gzip")
        assert f'WHERE "{cfg.timestamp_column}" >= $1 AND "{cfg.timestamp_column}" < $2' in text
        assert "date_trunc" not in text.lower()  # no function on the column: partitions prune
        assert text.count("$") == 3 and "TO DIRECTORY $3 WITH" in text
        endpoint = creds.endpoint_url if creds else None
        expected_protocol = endpoint.split(":")[0] if endpoint else None
        assert (f"protocol = '{expected_protocol}'" in text) == bool(expected_protocol)


def test_copy_exact_text_for_the_tutorial_table():
    cfg = TableExport.model_validate(
        {"table": "doc.metrics", "timestamp_column": "timestamp", "target_bucket": "crate-astro-tutorial/metrics"}
    )
    creds = S3Credentials("AKIAEXAMPLE", SECRET, origin="test")
    *_, refresh, copy, count, identity = statements(cfg, WINDOW, SOURCES[0], creds)
    assert identity.wire_sql.startswith("SELECT DISTINCT partition_ident, partition_uuid FROM sys.shards")
    assert count.wire_sql == (
        'SELECT count(*), sum("_cratedb_export_row_version") FROM (SELECT _seq_no AS "_cratedb_export_row_version", '
        '* FROM "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2) AS "window_rows"'
    )
    assert refresh.wire_sql == 'REFRESH TABLE "doc"."metrics"'
    assert copy.wire_sql == (
        'COPY "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2 TO DIRECTORY $3 '
        "WITH (compression = 'gzip', format = 'json_object', wait_for_completion = true)"
    )
    assert copy.shown_params() == [
        "2024-01-04T00:00:00+00:00",
        "2024-01-05T00:00:00+00:00",
        "s3://AKIAEXAMPLE:***@crate-astro-tutorial/_cratedb_export_staging/metrics-2024-01-04/<attempt>",
    ]


def test_stream_statements_use_a_with_hold_cursor_and_never_rollback():
    cfg = CONFIGS[2].model_copy(update={"engine": "stream", "cursors": 1})
    texts = [s.wire_sql for s in statements(cfg, WINDOW, SOURCES[0], None)]
    assert texts[-5].startswith('DECLARE "cratedb_export" NO SCROLL CURSOR WITH HOLD FOR SELECT ')
    assert texts[-4] == f'FETCH FORWARD {cfg.batch_size} FROM "cratedb_export"'
    assert texts[-3] == 'CLOSE "cratedb_export"'
    assert texts[-2].startswith("SELECT count(*), sum(")
    assert texts[-1].startswith("SELECT DISTINCT partition_ident, partition_uuid FROM sys.shards")
    for _, _, _, statement in all_statements():
        assert "ROLLBACK" not in statement.wire_sql.upper()
        assert "TO STDOUT" not in statement.wire_sql.upper()


@pytest.mark.parametrize(("processors", "readers"), [(None, 4), (1, 2), (2, 2), (6, 6), (64, 16)])
def test_several_cursors_read_adjacent_sub_windows_that_cover_the_day(processors, readers):
    """By default one connection per processor of the cluster (2 to 16; 4 when it does not say),
    four sub-windows each: cursors of their own names, each declared, fetched and closed; together
    exactly the window, each row in one of them."""
    cfg = CONFIGS[2].model_copy(update={"engine": "stream"})
    assert cfg.cursors is None
    source = dataclasses.replace(SOURCES[1], processors=processors)
    job = ExportJob(cfg, WINDOW)
    assert reader_count(job, source) == readers
    engine_statements = get_engine("stream").statements(job, source, None)
    count = 4 * readers
    per_cursor = engine_statements[-3 * count :]
    names = [f'"cratedb_export_{n}"' for n in range(count)]
    assert [s.wire_sql.split(" ", 2)[1] for s in per_cursor[0::3]] == names
    assert [s.wire_sql for s in per_cursor[1::3]] == [f"FETCH FORWARD {cfg.batch_size} FROM {n}" for n in names]
    assert [s.wire_sql for s in per_cursor[2::3]] == [f"CLOSE {n}" for n in names]
    bounds = [s.params[:2] for s in per_cursor[0::3]]
    assert bounds[0][0] == WINDOW.start.replace(tzinfo=None) and bounds[-1][1] == WINDOW.end.replace(tzinfo=None)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # adjacent, half-open: no row twice


def test_with_the_heap_known_cratedb_reads_histogram_cut_sub_windows_through_its_fetch_phase():
    """The table's size and the window's histogram come first; one DECLARE stands for the cursors
    of every sub-window, each with a LIMIT no sub-window reaches (CrateDB then runs it as
    query-then-fetch; ``auto`` first reads one sub-window both ways). ``never`` reads plain sub-windows."""
    cfg = CONFIGS[2].model_copy(update={"engine": "stream", "filter": "name <> 'cpu'"})
    source = SOURCES[3]
    texts = [s.wire_sql for s in get_engine("stream").statements(ExportJob(cfg, WINDOW), source, None)]
    assert texts[-5] == (
        'SELECT sum(size), sum(num_docs) FROM sys.shards WHERE schema_name = $1 AND table_name = $2 AND "primary"'
    )
    assert texts[-4] == (
        f'SELECT floor((extract(epoch FROM "{cfg.timestamp_column}") * 1000000 - 1704326400000000) * 4096 '
        f'/ 86400000000) AS "bucket", count(*) FROM {sql.qualified(cfg)} '
        f'WHERE "{cfg.timestamp_column}" >= $1 AND "{cfg.timestamp_column}" < $2 AND (name <> \'cpu\') GROUP BY 1'
    )
    assert texts[-3].startswith('DECLARE "cratedb_export_0" NO SCROLL CURSOR WITH HOLD FOR SELECT ')
    assert texts[-3].endswith(" AND (name <> 'cpu') LIMIT 2147483647")
    assert texts[-2:] == [f'FETCH FORWARD {cfg.batch_size} FROM "cratedb_export_0"', 'CLOSE "cratedb_export_0"']
    plain = cfg.model_copy(update={"fetch_phase": "never"})
    texts = [s.wire_sql for s in get_engine("stream").statements(ExportJob(plain, WINDOW), source, None)]
    assert not any("LIMIT" in t or "sys.shards" in t for t in texts)


def test_pinned_cursors_and_slices_set_the_readers():
    """``cursors`` pins the connections; a slice of ``slices`` takes its share of the cluster's
    processors; PostgreSQL reads on one unless pinned."""
    cfg = CONFIGS[2].model_copy(update={"engine": "stream"})
    source = dataclasses.replace(SOURCES[1], processors=12)
    assert reader_count(ExportJob(cfg.model_copy(update={"cursors": 3}), WINDOW), source) == 3
    sliced = cfg.model_copy(update={"slices": 4})
    assert reader_count(ExportJob(sliced, WINDOW, slice_index=1), source) == 3
    assert reader_count(ExportJob(sliced.model_copy(update={"cursors": 5}), WINDOW, slice_index=1), source) == 5
    assert len(cursor_windows(ExportJob(cfg, WINDOW), 1)) == 1  # one reader: one cursor over the window
    # PostgreSQL computes a WITH HOLD cursor when it is declared: one connection reads it fastest
    assert reader_count(ExportJob(cfg, WINDOW), SOURCES[-1]) == 1
    assert reader_count(ExportJob(cfg.model_copy(update={"cursors": 3}), WINDOW), SOURCES[-1]) == 3


def test_refresh_only_on_cratedb():
    cfg = CONFIGS[0]
    on_crate = [s.wire_sql for s in statements(cfg, WINDOW, SOURCES[0], None)]
    on_pg = [s.wire_sql for s in statements(cfg, WINDOW, SOURCES[-1], None)]
    assert any(t.startswith("REFRESH TABLE") for t in on_crate)
    assert not any(t.startswith("REFRESH TABLE") for t in on_pg)


def test_geo_points_are_read_from_the_stored_document_on_cratedb():
    """CrateDB's column store rounds geo_point (13.399999989196658 for 13.4, seen on 5.10.16 and
    6.4.3); ``_doc['pos']`` is the value as written, what COPY TO writes too. Object sub-columns are
    not selected on their own."""
    cfg = TableExport.model_validate(
        {"table": "t", "timestamp_column": "timestamp", "target": "s3://lake/x", "engine": "stream"}
    )
    one = cfg.model_copy(update={"cursors": 1})
    (_, probe, declare, _, _) = get_engine("stream").statements(ExportJob(one, WINDOW), SOURCES[2], None)
    select = 'SELECT "hash_id", "timestamp", _doc[\'pos\'] AS "pos" FROM "doc"."t" WHERE'
    assert declare.wire_sql.startswith(f'DECLARE "cratedb_export" NO SCROLL CURSOR WITH HOLD FOR {select}')
    assert probe.wire_sql.startswith(select) and probe.wire_sql.endswith(" LIMIT 0")
    columns = dict(cfg.model_dump(), columns=["pos"])
    narrow = TableExport.model_validate({k: v for k, v in columns.items() if v is not None})
    assert SOURCES[2].reading(narrow) == sql.Reading(("pos", "timestamp"), frozenset({"pos"}))
    assert SOURCES[-1].reading(cfg) == sql.Reading(None)  # PostgreSQL: SELECT *


@pytest.mark.parametrize(
    ("version", "probed"),
    [
        (None, True),
        ((5, 10, 16), True),
        ((6, 2, 9), True),
        ((6, 2, 10), False),
        ((6, 3, 3), True),
        ((6, 3, 4), False),
        ((6, 4, 0), False),
        ((6, 4, 3), False),
    ],
)
def test_the_cursor_query_is_probed_first_where_declare_can_hang(version, probed):
    """CrateDB before 6.2.10 and 6.3.0 to 6.3.3 never answer a DECLARE whose query fails as it
    starts (seen on 5.10.16): there the query goes first with LIMIT 0, and fails with its own error."""
    cfg = TableExport.model_validate(
        {"table": "t", "timestamp_column": "ts", "target": "s3://lake/x", "engine": "stream"}
    )
    source = SourceInfo(CRATEDB, {}, "timestamp with time zone", version=version)
    texts = [s.wire_sql for s in get_engine("stream").statements(ExportJob(cfg, WINDOW), source, None)]
    assert any(t.endswith(" LIMIT 0") for t in texts) is probed
    assert source.declare_may_hang is probed


def test_the_cratedb_version_is_read_from_version():
    from cratedb_airflow_export.source import parse_version

    assert parse_version("CrateDB 5.10.16 (built bc622f1/NA, Linux 6.18.44 amd64, OpenJDK 64-Bit Server VM 25)") == (
        5,
        10,
        16,
    )
    assert parse_version("PostgreSQL 16.4 on x86_64-pc-linux-gnu") is None


def test_filter_percent_is_sent_as_is():
    cfg = TableExport.model_validate(
        {
            "table": "t",
            "timestamp_column": "ts",
            "target": "s3://lake/x",
            "engine": "stream",
            "filter": "name LIKE 'cpu%'",
        }
    )
    select = sql.select_window(cfg, WINDOW)
    assert select.sql.endswith("AND (name LIKE 'cpu%%')")  # escaped for psycopg
    assert select.wire_sql.endswith("AND (name LIKE 'cpu%')")  # what the server receives


@pytest.mark.parametrize("name", ['we"ird', "plain"])
def test_quote_ident(name):
    assert sql.quote_ident(name) == '"' + name.replace('"', '""') + '"'


def retention_statements() -> list[sql.Statement]:
    cfg = CONFIGS[0]
    scope = (("day", WINDOW.start), ("region", None), ("it's", "x"))
    return [
        sql.list_partitions(cfg),
        sql.first_timestamp(cfg, WINDOW.end),
        sql.first_timestamp(cfg, WINDOW.end, after=WINDOW.start, partition=scope),
        sql.partition_rows(cfg, scope),
        sql.partition_rows(cfg, scope, WINDOW),
        sql.delete_partition(cfg, scope),
        sql.block_writes(cfg, scope[:1] + scope[2:], blocked=True),
        sql.block_writes(cfg, scope[:1], blocked=False),
        sql.delete_window(cfg, WINDOW),
        *(sql.window_state(cfg, WINDOW, source.dialect.row_version) for source in SOURCES),
        *(sql.window_state(c, WINDOW, "_seq_no") for c in CONFIGS if c.filter),
        # what tells the table, its partitions and its columns from others of the same name
        sql.describe_column_ids(cfg),
        sql.shard_uuids(cfg),
        sql.window_partitions(cfg, WINDOW, ["day", "region"]),
        *(sql.window_partitions(c, WINDOW, ["day"], naive=True) for c in CONFIGS if c.filter),
    ]


def test_postgresql_locks_writers_out_of_the_table_for_the_purge_of_a_day():
    """PostgreSQL only (CrateDB has no LOCK TABLE and no transactions: it never gets these)."""
    timeout, lock = sql.lock_writers_out(CONFIGS[0], 300_000)
    assert timeout.wire_sql == "SET LOCAL lock_timeout = 300000"
    assert lock.wire_sql == 'LOCK TABLE "doc"."metrics" IN SHARE ROW EXCLUSIVE MODE'
    assert not CRATEDB.transactions and POSTGRESQL.transactions


def test_retention_and_change_marker_statements_parse_under_cratedb_grammar():
    for statement in retention_statements():
        assert parses(statement.wire_sql), statement.wire_sql


def test_a_partition_is_deleted_by_its_values_bound_and_null_as_is_null():
    cfg = CONFIGS[0]
    statement = sql.delete_partition(cfg, (("day", WINDOW.start), ("region", None), ("it's", "x")))
    assert statement.wire_sql == 'DELETE FROM "doc"."metrics" WHERE "day" = $1 AND "region" IS NULL AND "it\'s" = $2'
    assert statement.params == (WINDOW.start, "x")
    assert sql.list_partitions(cfg).wire_sql == (
        'SELECT partition_ident, "values" FROM information_schema.table_partitions '
        "WHERE table_schema = $1 AND table_name = $2 ORDER BY partition_ident"
    )


def test_the_change_marker_sums_each_dialects_row_version_over_the_counted_window():
    """The filter applies outside the window (as for count(*)); the version is the dialect's, not input."""
    cfg = next(c for c in CONFIGS if c.filter)
    statement = sql.window_state(cfg, WINDOW, POSTGRESQL.row_version)
    assert statement.wire_sql == (
        'SELECT count(*), sum("_cratedb_export_row_version") FROM (SELECT xmin::text::bigint AS '
        f'"_cratedb_export_row_version", * FROM {sql.qualified(cfg)} WHERE "{cfg.timestamp_column}" >= $1 AND '
        f'"{cfg.timestamp_column}" < $2) AS "window_rows" WHERE ({cfg.filter})'
    )
    assert CRATEDB.row_version == "_seq_no"


def test_writes_into_a_partition_are_blocked_and_allowed_again_by_its_values():
    cfg = CONFIGS[0]
    blocked = sql.block_writes(cfg, (("month", WINDOW.start), ("region", "eu")), blocked=True)
    assert blocked.wire_sql == (
        'ALTER TABLE "doc"."metrics" PARTITION ("month" = $1, "region" = $2) SET ("blocks.write" = true)'
    )
    assert blocked.params == (WINDOW.start, "eu")
    allowed = sql.block_writes(cfg, (("month", WINDOW.start),), blocked=False)
    assert allowed.wire_sql == 'ALTER TABLE "doc"."metrics" PARTITION ("month" = $1) RESET ("blocks.write")'
    with pytest.raises(ValueError, match="NULL"):
        sql.block_writes(cfg, (("month", None),), blocked=True)
