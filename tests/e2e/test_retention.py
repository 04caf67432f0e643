"""Retention against the local PostgreSQL and each store's real server (S3, Azurite,
fake-gcs-server): a verified archive is purged (through the retention DAG and by hand) and
restored exactly; every way the archive or the source can disagree
deletes nothing of that day and says why. (Partitioned tables are CrateDB's: tests/cratedb.)"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.manifest import Manifest, PurgeRecord
from cratedb_airflow_export.reconcile import reconcile
from cratedb_airflow_export.restore import restore
from cratedb_airflow_export.retention import purge
from cratedb_airflow_export.windows import Window
from tests.helpers import SAMPLE_DAYS, Lake, make_dag, read_objects, run_dag, task_states

pytestmark = pytest.mark.e2e

FIRST, SECOND, THIRD = SAMPLE_DAYS  # 2024-01-03, -04, -05: purging before THIRD deletes FIRST and SECOND
PER_DAY = 20


@pytest.fixture
def table(postgres):
    name = f"doc.ret_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, PER_DAY, seed=5), table=name)
    return name


def config(table: str, lake: Lake, **extra: object) -> TableExport:
    entry = {"table": table, "timestamp_column": "timestamp", "engine": "stream", "target": lake.target()}
    return TableExport.model_validate({**entry, "retain_days": 1, **extra})


def all_rows(postgres, table: str) -> list[tuple]:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        return conn.execute(f'SELECT * FROM {table} ORDER BY "timestamp", hash_id').fetchall()


def day_count(postgres, table: str, day: date) -> int:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM {table} WHERE "timestamp" >= %s AND "timestamp" < %s', Window.for_day(day).bounds()
        )
        return int(row.fetchone()[0])


def folder(table: str, day: date) -> str:
    return f"lake/{table}/dt={day}/"


def purge_record(server, bucket: str, table: str, day: date) -> PurgeRecord | None:
    key = folder(table, day) + "_PURGED.json"
    found = read_objects(server, bucket, key)
    return PurgeRecord.model_validate_json(found[key]) if key in found else None


def export_days(cfg: TableExport, *days: date) -> None:
    for day in days:
        assert run_export(cfg, Window.for_day(day)).rows == PER_DAY


def test_the_retention_dag_purges_verified_days_and_restore_brings_every_row_back(
    airflow_db, connections, postgres, lake, table
):
    server, bucket = lake.server, lake.bucket
    cfg = config(table, lake)
    export_days(cfg, *SAMPLE_DAYS)
    before = all_rows(postgres, table)
    dag = make_dag("e2e_retention", [cfg.model_dump(mode="json", exclude_defaults=True)], kind="retention")
    dag_run = run_dag(dag, THIRD)  # keeps 1 day: THIRD; purges the days before it
    assert task_states(dag_run) == {f"purge_{table}": "success"}
    outcomes = dag_run.get_task_instance(f"purge_{table}").xcom_pull(task_ids=f"purge_{table}")["outcomes"]
    assert [(o["what"], o["state"], o["rows"], o["deleted"]) for o in outcomes] == [
        (f"day {FIRST}", "purged", PER_DAY, PER_DAY),
        (f"day {SECOND}", "purged", PER_DAY, PER_DAY),
    ]
    assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [0, 0, PER_DAY]
    for day in (FIRST, SECOND):
        record = purge_record(server, bucket, table, day)
        assert record is not None
        assert (record.state, record.rows, record.deleted, record.run_id) == ("done", PER_DAY, PER_DAY, dag_run.run_id)
        quoted = '"doc"."' + table.split(".")[1] + '"'
        assert record.statement.startswith(f'DELETE FROM {quoted} WHERE "timestamp" >= $1 AND "timestamp" < $2')
    assert purge_record(server, bucket, table, THIRD) is None
    assert not read_objects(server, bucket, "_cratedb_export_leases/")  # every lease released

    # the archive is now the only copy: nothing exports over it, reconcile leaves it, verify says so
    with pytest.raises(ExportError, match=r"PartitionPurged: .*the archive of rows that were purged"):
        run_export(cfg, Window.for_day(FIRST))
    assert [r.state for r in reconcile(cfg, list(SAMPLE_DAYS))] == ["purged", "purged", "unchanged"]
    from cratedb_airflow_export.cli import main

    assert main(["verify", "--date", str(FIRST), "--table", table, "--config", _yaml(cfg)]) == 0

    results = restore(cfg, [Window.for_day(FIRST), Window.for_day(SECOND)])
    assert [r.rows for r in results] == [PER_DAY, PER_DAY]
    assert all_rows(postgres, table) == before  # every row back, equal to the source before the purge


def _yaml(cfg: TableExport) -> str:
    import tempfile

    path = tempfile.mktemp(suffix=".yaml")
    with open(path, "w") as handle:
        json.dump({"tables": [cfg.model_dump(mode="json", exclude_defaults=True)]}, handle)
    return path


def damage(kind: str, postgres, server, bucket: str, table: str) -> None:
    """Make the archive of SECOND, or the source's SECOND, disagree with the other."""
    store = server.store()
    prefix = folder(table, SECOND)
    data = sorted(k for k in read_objects(server, bucket, prefix) if "/part-" in k)
    if kind == "never exported":
        for key in read_objects(server, bucket, prefix):
            store.delete(bucket, [key])
    elif kind == "no _SUCCESS":
        store.delete(bucket, [prefix + "_SUCCESS"])
    elif kind == "object deleted":
        store.delete(bucket, [data[0]])
    elif kind == "object altered":
        body = read_objects(server, bucket, data[0])[data[0]]
        store.put(bucket, data[0], body[:-1] + bytes([body[-1] ^ 1]))
    elif kind == "column dropped and added again":  # no row rewritten: count and change marker stay
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN name")
            conn.execute(f"ALTER TABLE {table} ADD COLUMN name TEXT")
    elif kind in ("rows arrived", "row updated", "row deleted"):
        noon = datetime(SECOND.year, SECOND.month, SECOND.day, 12, tzinfo=timezone.utc)
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            if kind == "rows arrived":
                create_metrics(conn, [(999, noon, "late", {"h": 1}, {"v": 1})], table=table)
            elif kind == "row updated":  # the count stays: only the change marker sees it
                conn.execute(
                    f"UPDATE {table} SET name = 'changed' WHERE hash_id = (SELECT min(hash_id) FROM {table} "
                    'WHERE "timestamp" >= %s AND "timestamp" < %s)',
                    Window.for_day(SECOND).bounds(),
                )
            else:
                conn.execute(
                    f"DELETE FROM {table} WHERE hash_id = (SELECT min(hash_id) FROM {table} "
                    'WHERE "timestamp" >= %s AND "timestamp" < %s)',
                    Window.for_day(SECOND).bounds(),
                )


DAMAGES = {
    "never exported": f"{SECOND}: _SUCCESS is missing",
    "no _SUCCESS": f"{SECOND}: _SUCCESS is missing",
    "object deleted": "is listed in the manifest but missing",
    "object altered": "the stored checksum (",
    "rows arrived": f"{SECOND}: the source holds {PER_DAY + 1} rows of the day now, it held {PER_DAY} at the export",
    "row updated": f"{SECOND}: rows of the day were updated since the export of 20",
    "row deleted": f"{SECOND}: the source holds {PER_DAY - 1} rows of the day now, it held {PER_DAY} at the export",
    "column dropped and added again": f"{SECOND}: the column(s) name were dropped and added again since the export",
    "exported with fewer columns": f"{SECOND}: the partition lacks the column(s) tags, fields: export the day",
    "exported with a filter": f"{SECOND}: the partition holds only the rows of the filter \"name <> 'x'\"",
}


@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_day_whose_archive_does_not_check_out_is_not_deleted(connections, postgres, lake, table, kind):
    server, bucket = lake.server, lake.bucket
    cfg = config(table, lake)
    export_days(cfg, FIRST, SECOND)
    if kind.startswith("exported with"):  # the day as an earlier configuration exported it
        earlier = {"columns": ["hash_id", "timestamp", "name"]} if "columns" in kind else {"filter": "name <> 'x'"}
        export_days(config(table, lake, retain_days=None, **earlier), SECOND)
    damage(kind, postgres, server, bucket, table)
    second_before = day_count(postgres, table, SECOND)
    outcomes = purge(cfg, THIRD)
    if kind == "column dropped and added again":  # every day's name values are gone: every day refused
        assert [(o.what, o.state) for o in outcomes] == [(f"day {FIRST}", "refused"), (f"day {SECOND}", "refused")]
        assert DAMAGES[kind].replace(str(SECOND), str(FIRST)) in outcomes[0].reasons[0]
        assert DAMAGES[kind] in outcomes[1].reasons[0]
        assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [PER_DAY, PER_DAY, PER_DAY]
        return
    assert [(o.what, o.state) for o in outcomes] == [(f"day {FIRST}", "purged"), (f"day {SECOND}", "refused")]
    (reason,) = outcomes[1].reasons
    assert DAMAGES[kind] in reason
    assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [0, second_before, PER_DAY]
    assert purge_record(server, bucket, table, SECOND) is None
    assert purge_record(server, bucket, table, FIRST) is not None


def test_a_failed_export_leaves_the_day_in_the_source(connections, postgres, lake, table, monkeypatch):
    """The export of SECOND fails half way (its upload dies): no partition, so retention keeps it."""
    import cratedb_airflow_export.publish as publish

    cfg = config(table, lake)
    export_days(cfg, FIRST)

    def broken(*args, **kwargs):
        raise OSError("the worker died while publishing")

    with monkeypatch.context() as patched, pytest.raises(ExportError, match="the worker died"):
        patched.setattr(publish, "write_success", broken)
        run_export(cfg, Window.for_day(SECOND))
    outcomes = purge(cfg, THIRD)
    assert [(o.what, o.state) for o in outcomes] == [(f"day {FIRST}", "purged"), (f"day {SECOND}", "refused")]
    assert "_SUCCESS is missing" in outcomes[1].reasons[0]
    assert day_count(postgres, table, SECOND) == PER_DAY


def test_with_the_server_unreachable_nothing_is_deleted(connections, postgres, lake, table, monkeypatch):
    import socket

    cfg = config(table, lake)
    export_days(cfg, FIRST, SECOND)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lake.point_at(monkeypatch, port)
    with pytest.raises(ExportError) as failure:
        purge(cfg, THIRD)
    assert failure.value.retryable
    assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [PER_DAY, PER_DAY, PER_DAY]


def test_with_the_server_gone_in_the_middle_of_the_checks_nothing_more_is_deleted(
    connections, postgres, lake, table, monkeypatch
):
    """The store reached through a proxy that is stopped (listener closed, connections cut) just before the
    second day's archive is read: the first day, checked before, is purged; the second is not."""
    server, bucket = lake.server, lake.bucket
    from devtools.faults import FreezingProxy

    import cratedb_airflow_export.retention as retention

    cfg = config(table, lake)
    export_days(cfg, FIRST, SECOND)
    proxy = FreezingProxy(server.port).start()
    lake.point_at(monkeypatch, proxy.port)
    real = retention.check_archive

    def cut_before_the_second_day(client, cfg, window):
        if window.day == SECOND:
            proxy.stop()
        return real(client, cfg, window)

    monkeypatch.setattr(retention, "check_archive", cut_before_the_second_day)
    try:
        with pytest.raises(ExportError) as failure:
            purge(cfg, THIRD)
    finally:
        proxy.stop()
    assert failure.value.retryable
    assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [0, PER_DAY, PER_DAY]
    assert purge_record(server, bucket, table, SECOND) is None


def test_purge_by_hand_dry_run_then_for_real(connections, postgres, lake, table, capsys):
    server, bucket = lake.server, lake.bucket
    from cratedb_airflow_export.cli import main

    cfg = config(table, lake)
    export_days(cfg, FIRST, SECOND)
    path = _yaml(cfg)
    assert main(["purge", "--table", table, "--before", str(THIRD), "--dry-run", "--config", path]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        f"{table} day {FIRST} ({FIRST}, {PER_DAY} rows)",
        f"{table} day {SECOND} ({SECOND}, {PER_DAY} rows)",
    ]
    assert all(": would be deleted (dry run): 1 archived day(s) verified: DELETE FROM" in line for line in lines)
    assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [PER_DAY, PER_DAY, PER_DAY]
    written = read_objects(server, bucket)
    assert not [k for k in written if k.endswith("_PURGED.json") or k.startswith("_cratedb_export_leases/")]

    assert main(["purge", "--table", table, "--before", str(THIRD), "--config", path]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{table} day {FIRST} ({FIRST}, {PER_DAY} rows): purged, {PER_DAY} rows deleted",
        f"{table} day {SECOND} ({SECOND}, {PER_DAY} rows): purged, {PER_DAY} rows deleted",
    ]
    assert main(["purge", "--table", table, "--before", str(THIRD), "--config", path]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{table}: nothing to purge before {THIRD}"]
    tomorrow = datetime.now(timezone.utc).date() + timedelta(days=2)
    assert main(["purge", "--table", table, "--before", str(tomorrow), "--config", path]) == 1
    assert "would delete days that are not over yet" in capsys.readouterr().out


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's change marker: one store is enough
@pytest.mark.parametrize("reader", ["auto", "cursor"])  # cursor: through the CrateDB dialect guard
def test_an_update_moves_the_change_marker_and_reconcile_exports_the_day_again(
    connections, postgres, lake, table, reader
):
    server, bucket = lake.server, lake.bucket
    cfg = config(table, lake, retain_days=None, reader=reader)
    export_days(cfg, FIRST, SECOND)
    key = folder(table, FIRST) + "_manifest.json"
    first = Manifest.from_bytes(read_objects(server, bucket, key)[key])
    assert first.source_marker is not None and first.source_marker.startswith("sum(xmin)=")
    damage("row updated", postgres, server, bucket, table)  # a row of SECOND: count unchanged
    recounts = reconcile(cfg, [FIRST, SECOND])
    assert [(r.state, r.recorded, r.counted, r.updated) for r in recounts] == [
        ("unchanged", PER_DAY, PER_DAY, False),
        ("re-exported", PER_DAY, PER_DAY, True),
    ]
    assert recounts[1].describe(table) == f"{table} {SECOND}: re-exported, rows updated in the source ({PER_DAY} rows)"
    assert Manifest.from_bytes(read_objects(server, bucket, key)[key]) == first  # untouched: same exported_at
    objects = read_objects(server, bucket, folder(table, SECOND))
    lines = [json.loads(line) for k, v in objects.items() if "/part-" in k for line in _lines(k, v)]
    assert sorted(row["name"] for row in lines).count("changed") == 1
    assert reconcile(cfg, [SECOND])[0].state == "unchanged"  # the new marker is recorded


def _lines(key: str, data: bytes) -> list[str]:
    import gzip

    return (gzip.decompress(data) if key.endswith(".gz") else data).decode().splitlines()


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's locks: one store is enough
def test_a_row_written_while_the_day_is_purged_waits_and_is_kept(connections, postgres, lake, table, monkeypatch):
    """PostgreSQL: the checks and the DELETE run in one transaction that locks writers out. A row
    inserted into the day right before the DELETE (from another connection, for real) waits for the
    purge to commit and lands after it: the DELETE removed exactly the archived rows, the new row is
    still in the source."""
    server, bucket = lake.server, lake.bucket
    import threading

    import cratedb_airflow_export.retention as retention

    cfg = config(table, lake)
    export_days(cfg, FIRST)
    real, writers = retention.execute, []
    noon = datetime(FIRST.year, FIRST.month, FIRST.day, 12, tzinfo=timezone.utc)

    def insert() -> None:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            create_metrics(conn, [(777, noon, "racing", {"h": 1}, {"v": 1})], table=table)

    def racing(cursor, statement, seconds):
        if statement.sql.startswith("DELETE"):
            writer = threading.Thread(target=insert)
            writer.start()
            writer.join(2)  # it waits for the purge's lock: still running
            assert writer.is_alive()
            writers.append(writer)
        return real(cursor, statement, seconds)

    monkeypatch.setattr(retention, "execute", racing)
    (outcome,) = purge(cfg, SECOND)
    writers[0].join(30)
    assert not writers[0].is_alive()
    assert (outcome.state, outcome.rows, outcome.deleted, outcome.unarchived) == ("purged", PER_DAY, PER_DAY, 0)
    assert day_count(postgres, table, FIRST) == 1  # the racing row, kept
    record = purge_record(server, bucket, table, FIRST)
    assert record is not None and (record.state, record.rows, record.deleted) == ("done", PER_DAY, PER_DAY)


@pytest.fixture
def no_transactions(monkeypatch):
    """The source as CrateDB is for an unpartitioned table: no transaction, no lock that keeps writers
    out (CI has no CrateDB; tests/cratedb does this for real)."""
    import dataclasses

    import cratedb_airflow_export.source as source

    monkeypatch.setattr(source, "POSTGRESQL", dataclasses.replace(source.POSTGRESQL, transactions=False))


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's transactions: one store
def test_without_transactions_an_unpartitioned_table_is_refused_unless_the_window_is_accepted(
    connections, postgres, lake, table, no_transactions, monkeypatch, capsys
):
    server, bucket = lake.server, lake.bucket
    import cratedb_airflow_export.retention as retention
    from cratedb_airflow_export.cli import main

    cfg = config(table, lake)
    export_days(cfg, FIRST)
    (outcome,) = purge(cfg, SECOND)
    assert outcome.state == "refused"
    assert "is not partitioned and PostgreSQL has no transaction" in outcome.reasons[0]
    assert "unpartitioned_retention: accept_window" in outcome.reasons[0]
    assert day_count(postgres, table, FIRST) == PER_DAY

    accepted = config(table, lake, unpartitioned_retention="accept_window")
    real = retention.execute

    def racing(cursor, statement, seconds):
        if statement.sql.startswith("DELETE"):
            noon = datetime(FIRST.year, FIRST.month, FIRST.day, 12, tzinfo=timezone.utc)
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                create_metrics(conn, [(777, noon, "racing", {"h": 1}, {"v": 1})], table=table)
        return real(cursor, statement, seconds)

    monkeypatch.setattr(retention, "execute", racing)
    code = main(["purge", "--table", table, "--before", str(SECOND), "--config", _yaml(accepted)])
    printed = capsys.readouterr().out
    assert code == 1  # rows deleted that were not archived: the command fails, as the retention task does
    assert f"{PER_DAY + 1} rows deleted; 1 OF THEM WERE NOT ARCHIVED" in printed
    record = purge_record(server, bucket, table, FIRST)
    assert record is not None and (record.rows, record.deleted) == (PER_DAY, PER_DAY + 1)


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's columns: one store is enough
def test_a_column_added_since_the_export_keeps_every_day_until_it_is_exported_again(connections, postgres, lake, table):
    cfg = config(table, lake)
    export_days(cfg, FIRST, SECOND)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN unit TEXT")
    outcomes = purge(cfg, THIRD)
    assert [(o.state, o.reasons) for o in outcomes] == [
        ("refused", (f"{day}: the partition lacks the column(s) unit: export the day again first",))
        for day in (FIRST, SECOND)
    ]
    export_days(cfg, SECOND)  # exported again: now with the column
    assert [o.state for o in purge(cfg, THIRD)] == ["refused", "purged"]
    assert [day_count(postgres, table, d) for d in SAMPLE_DAYS] == [PER_DAY, 0, PER_DAY]


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's rows: one store is enough
def test_rows_chosen_by_another_timestamp_column_are_not_deleted(connections, postgres, lake):
    """The attack: the day was exported by ``created``; the configuration now names ``updated``,
    whose day holds other rows with the same count and change marker (one transaction wrote them all).
    The archive is no proof for them: refused, nothing deleted."""
    table = f"doc.two_ts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(f"CREATE TABLE {table} (id INT, created TIMESTAMPTZ, updated TIMESTAMPTZ)")
        with conn.transaction():  # one xmin for every row
            for n in range(4):
                created = datetime(FIRST.year, FIRST.month, FIRST.day, n, tzinfo=timezone.utc)
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (n, created, created + timedelta(days=1)))
                conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s)", (10 + n, created - timedelta(days=1), created))
    by_created = config(table, lake, timestamp_column="created")
    assert run_export(by_created, Window.for_day(FIRST)).rows == 4
    by_updated = config(table, lake, timestamp_column="updated")
    (outcome,) = purge(by_updated, SECOND)
    assert outcome.state == "refused"
    assert (
        "the day's rows were chosen by the column 'created', the table is configured with timestamp_column "
        in (outcome.reasons[0])
    )
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 8


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the source's baseline: one store is enough
def test_after_a_purge_and_a_restore_the_restored_rows_are_the_baseline(connections, postgres, lake, table):
    """A restore puts new copies of the rows back (new row versions): it records them as what the
    archive is the copy of. An update of a restored row then keeps the day (the archive does not hold
    it); with the row as restored, the day can be purged again; and a restored day can be exported
    again, after which the purge takes the new export."""
    server, bucket = lake.server, lake.bucket
    cfg = config(table, lake)
    export_days(cfg, FIRST)
    assert [o.state for o in purge(cfg, SECOND)] == ["purged"]
    assert [r.rows for r in restore(cfg, [Window.for_day(FIRST)])] == [PER_DAY]
    restored = read_objects(server, bucket, folder(table, FIRST) + "_RESTORED.json")
    record = json.loads(next(iter(restored.values())))
    assert (record["rows"], record["method"]) == (PER_DAY, "worker")
    assert record["source_marker"].startswith("sum(xmin)=") and record["table_id"].startswith("oid:")

    assert [o.state for o in purge(cfg, SECOND)] == ["purged"]  # the rows as restored: the baseline holds
    assert day_count(postgres, table, FIRST) == 0
    restore(cfg, [Window.for_day(FIRST)])
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {table} SET name = 'changed after the restore' WHERE hash_id = (SELECT min(hash_id) FROM {table})"
        )
    (outcome,) = purge(cfg, SECOND)
    assert outcome.state == "refused"
    assert "rows of the day were updated since the restore of " in outcome.reasons[0]
    assert day_count(postgres, table, FIRST) == PER_DAY

    # the day is in the source again: exported again (replacing the purge and restore records), then purged
    assert run_export(cfg, Window.for_day(FIRST)).rows == PER_DAY
    assert purge_record(server, bucket, table, FIRST) is None
    assert [o.state for o in purge(cfg, SECOND)] == ["purged"]
    names = [r["name"] for r in _archived_rows(server, bucket, table, FIRST)]
    assert "changed after the restore" in names


def _archived_rows(server, bucket: str, table: str, day: date) -> list[dict]:
    rows = []
    for key, data in read_objects(server, bucket, folder(table, day)).items():
        if "/part-" in key:
            rows += [json.loads(line) for line in _lines(key, data)]
    return rows
