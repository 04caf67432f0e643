"""Iceberg output against the local PostgreSQL and a SQL catalog (SQLite), on each store (S3: moto;
Azure: Azurite; GCS: fake-gcs-server): each day is one commit that pyiceberg's own file IO (not the
package's) and DuckDB read back exactly; a rerun replaces the day and nothing else; tables and days
commit concurrently into one catalog; a failure mid-commit leaves the table as it was; the table's
schema evolves, or is refused; verify and restore read it back through the store."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import date

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError, PermanentError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.iceberg import day_filter
from cratedb_airflow_export.windows import Window
from tests.helpers import SAMPLE_DAYS, Lake

pytestmark = pytest.mark.e2e

FIRST, SECOND, THIRD = SAMPLE_DAYS
PER_DAY = 15


@pytest.fixture
def catalog_db(tmp_path, monkeypatch, connections):
    """AIRFLOW_CONN_ICEBERG_DEFAULT: a SQL catalog in a SQLite file; files through the target's store."""
    path = tmp_path / "catalog.db"
    conn = {"conn_type": "generic", "extra": {"type": "sql", "uri": f"sqlite:///{path}"}}
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", json.dumps(conn))
    return path


def new_table(postgres, seed: int = 3) -> str:
    name = f"doc.ice_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, PER_DAY, seed=seed), table=name)
    return name


@pytest.fixture
def table(postgres):
    return new_table(postgres)


def config(table: str, lake: Lake, **extra: object) -> TableExport:
    entry = {"table": table, "timestamp_column": "timestamp", "engine": "stream", "format": "iceberg"}
    return TableExport.model_validate({**entry, "target": lake.target(), **extra})


def catalog(lake: Lake, path):
    """The catalog as an outside reader opens it: pyiceberg's own PyArrow file IO on the store."""
    from pyiceberg.catalog.sql import SqlCatalog

    # a SQL catalog's tables belong to the catalog's name: the connection id
    return SqlCatalog("iceberg_default", uri=f"sqlite:///{path}", **lake.reader_properties())


def source_rows(postgres, table: str, day: date) -> list[tuple]:
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        return conn.execute(
            f'SELECT hash_id, "timestamp", name, tags::text FROM {table} '
            'WHERE "timestamp" >= %s AND "timestamp" < %s ORDER BY hash_id',
            Window.for_day(day).bounds(),
        ).fetchall()


def iceberg_rows(lake: Lake, path, cfg: TableExport, day: date) -> list[tuple]:
    table = catalog(lake, path).load_table(cfg.iceberg_identifier)
    read = table.scan(row_filter=day_filter(cfg, Window.for_day(day), False)).to_arrow()
    return sorted(
        (r["hash_id"], r["timestamp"], r["name"], json.dumps(json.loads(r["tags"]), separators=(", ", ": ")))
        for r in read.to_pylist()
    )


def normalised(rows: list[tuple]) -> list[tuple]:
    return sorted((h, ts, n, json.dumps(json.loads(t), separators=(", ", ": "))) for h, ts, n, t in rows)


def test_each_day_is_one_commit_that_pyiceberg_and_duckdb_read_exactly(catalog_db, postgres, lake, table):
    cfg = config(table, lake)
    first = run_export(cfg, Window.for_day(FIRST))
    second = run_export(cfg, Window.for_day(SECOND))
    assert (first.rows, second.rows) == (PER_DAY, PER_DAY)
    for day in (FIRST, SECOND):
        assert iceberg_rows(lake, catalog_db, cfg, day) == normalised(source_rows(postgres, table, day))
    iceberg = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier)
    assert iceberg.location() == lake.uri(f"lake/{table}")
    assert [str(f) for f in iceberg.spec().fields] == ["1000: timestamp_day: day(2)"]
    summary = iceberg.current_snapshot().summary
    assert summary["cratedb-export.interval_start"] == "2024-01-04T00:00:00+00:00"
    assert (summary["cratedb-export.rows"], summary["cratedb-export.source_count"]) == (str(PER_DAY), str(PER_DAY))
    assert second.as_dict()["snapshot_id"] == iceberg.current_snapshot().snapshot_id
    assert second.as_dict()["manifest"] == iceberg.metadata_location  # the metadata file of that commit
    assert second.as_dict()["target"] == f"iceberg:{table}"
    (added,) = second.as_dict()["objects"]
    assert lake.uri(added["key"]) == second.as_dict()["files"][0]
    assert added["key"].startswith(f"lake/{table}/data/timestamp_day=2024-01-04/")
    assert added["rows"] == PER_DAY
    # one data file per day, under the table's data folder; nothing left in staging
    keys = lake.keys(f"lake/{table}/data/")
    assert sorted(k.split("/")[3] for k in keys) == ["timestamp_day=2024-01-03", "timestamp_day=2024-01-04"]
    assert lake.keys("_cratedb_export_staging/") == []
    # DuckDB over the table's current snapshot (pyiceberg's scan hands it the files' rows)
    connection = iceberg.scan(selected_fields=("hash_id", "timestamp")).to_duckdb("days")
    connection.execute("SET TimeZone = 'UTC'")  # DuckDB casts TIMESTAMPTZ to DATE in its own zone (the process's)
    by_day = connection.sql('SELECT CAST("timestamp" AS DATE) AS d, count(*) FROM days GROUP BY d ORDER BY d')
    assert [(str(d), n) for d, n in by_day.fetchall()] == [(str(FIRST), PER_DAY), (str(SECOND), PER_DAY)]


def test_a_rerun_after_the_source_changed_replaces_that_day_and_nothing_else(catalog_db, postgres, lake, table):
    cfg = config(table, lake)
    for day in SAMPLE_DAYS:
        run_export(cfg, Window.for_day(day))
    files_before = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier).inspect.files().to_pylist()
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        start, _ = Window.for_day(SECOND).bounds()
        conn.execute(
            f'DELETE FROM {table} WHERE hash_id IN (SELECT hash_id FROM {table} WHERE "timestamp" >= %s '
            "AND \"timestamp\" < %s + interval '1 day' ORDER BY hash_id LIMIT 4)",
            (start, start),
        )
        conn.execute(f"UPDATE {table} SET name = 'renamed' WHERE \"timestamp\" = %s", (start,))
    again = run_export(cfg, Window.for_day(SECOND))
    assert again.rows == PER_DAY - 4
    for day in SAMPLE_DAYS:
        assert iceberg_rows(lake, catalog_db, cfg, day) == normalised(source_rows(postgres, table, day)), day
    run_export(cfg, Window.for_day(SECOND))  # once more: still no duplicate
    assert iceberg_rows(lake, catalog_db, cfg, SECOND) == normalised(source_rows(postgres, table, SECOND))
    files_after = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier).inspect.files().to_pylist()
    untouched = sorted(f["file_path"] for f in files_before if "=2024-01-04/" not in f["file_path"])
    assert sorted(f["file_path"] for f in files_after if "=2024-01-04/" not in f["file_path"]) == untouched
    assert len([f for f in files_after if "=2024-01-04/" in f["file_path"]]) == 1


def test_tables_and_days_commit_concurrently_into_one_catalog(catalog_db, postgres, lake):
    tables = [new_table(postgres, seed=n) for n in (1, 2)]
    jobs = [(config(t, lake), day) for t in tables for day in SAMPLE_DAYS]
    errors: list[BaseException] = []

    def export(cfg: TableExport, day: date) -> None:
        try:
            run_export(cfg, Window.for_day(day))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=export, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    for cfg, day in jobs:
        assert iceberg_rows(lake, catalog_db, cfg, day) == normalised(source_rows(postgres, cfg.table, day))


def test_a_failure_in_the_commit_leaves_the_table_as_it_was(catalog_db, postgres, lake, table, monkeypatch):
    """The catalog fails as the day's files are added (a fault not caused for real here: pyiceberg's
    reading of a file's metadata raises): the current snapshot is the one before, no file it
    references is new, the copied files are gone; the next try commits the day."""
    import pyiceberg.io.pyarrow

    cfg = config(table, lake)
    run_export(cfg, Window.for_day(FIRST))
    before = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier)
    snapshot = before.current_snapshot().snapshot_id
    referenced = sorted(f["file_path"] for f in before.inspect.files().to_pylist())

    def fail(*args, **kwargs):
        raise OSError("catalog unreachable")

    described = pyiceberg.io.pyarrow.parquet_file_to_data_file
    monkeypatch.setattr(pyiceberg.io.pyarrow, "parquet_file_to_data_file", fail)
    with pytest.raises(ExportError, match="catalog unreachable"):
        run_export(cfg, Window.for_day(SECOND))
    after = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier)
    assert after.current_snapshot().snapshot_id == snapshot
    assert sorted(f["file_path"] for f in after.inspect.files().to_pylist()) == referenced
    assert lake.keys(f"lake/{table}/data/timestamp_day=2024-01-04/") == []
    monkeypatch.setattr(pyiceberg.io.pyarrow, "parquet_file_to_data_file", described)
    run_export(cfg, Window.for_day(SECOND))
    assert iceberg_rows(lake, catalog_db, cfg, SECOND) == normalised(source_rows(postgres, table, SECOND))


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the catalog's schema policy: one store is enough
def test_the_tables_schema_evolves_or_is_refused(catalog_db, postgres, lake, table):
    cfg = config(table, lake)
    run_export(cfg, Window.for_day(FIRST))
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE {table} ADD COLUMN "unit" TEXT')
        conn.execute(f"UPDATE {table} SET unit = 'C'")
    strict = config(table, lake, schema_change="fail")
    with pytest.raises(ExportError) as refused:
        run_export(strict, Window.for_day(SECOND))
    assert isinstance(refused.value, PermanentError)
    assert "unit added (string)" in str(refused.value) and "nothing was committed" in str(refused.value)
    evolved = run_export(cfg, Window.for_day(SECOND))
    assert evolved.as_dict()["schema_changes"] == ["unit added (string)"]
    iceberg = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier)
    assert iceberg.schema().find_field("unit") is not None
    units = {(str(r["timestamp"].date()), r["unit"]) for r in iceberg.scan().to_arrow().to_pylist()}
    assert units == {(str(FIRST), None), (str(SECOND), "C")}
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN hash_id TYPE TEXT")
    with pytest.raises(ExportError) as breaking:
        run_export(cfg, Window.for_day(THIRD))
    assert isinstance(breaking.value, PermanentError)
    assert "Iceberg cannot evolve table" in str(breaking.value)
    assert iceberg_rows(lake, catalog_db, cfg, THIRD) == []


def test_verify_and_restore_an_iceberg_day(catalog_db, postgres, lake, table, tmp_path, capsys):
    from cratedb_airflow_export.cli import main
    from cratedb_airflow_export.restore import restore

    cfg = config(table, lake)
    run_export(cfg, Window.for_day(SECOND))
    config_file = tmp_path / "exports.yaml"
    config_file.write_text(json.dumps({"tables": [cfg.model_dump(mode="json", exclude_defaults=True)]}))
    assert main(["verify", "--table", table, "--date", str(SECOND), "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert f"OK: iceberg:{table} {SECOND}" in out
    assert f"source count(*) over the window: {PER_DAY} = rows in the table" in out
    assert main(["verify", "--table", table, "--date", str(FIRST), "--config", str(config_file), "--no-source"]) == 1
    assert "no commit of this export names the day" in capsys.readouterr().out

    copy_of = f"{table}_back"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {copy_of} (LIKE {table})")
    (result,) = restore(cfg, [Window.for_day(SECOND)], into=copy_of)
    assert (result.rows, result.method) == (PER_DAY, "worker")
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        query = 'SELECT hash_id, "timestamp", name, tags::jsonb, fields::jsonb FROM {} ORDER BY hash_id'
        original = [r for r in conn.execute(query.format(table)).fetchall() if r[1] >= Window.for_day(SECOND).start]
        original = [r for r in original if r[1] < Window.for_day(SECOND).end]
        assert conn.execute(query.format(copy_of)).fetchall() == original


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # Airflow's path; every store's connections: test_targets
def test_the_dag_commits_the_day_through_airflow_connections(airflow_db, catalog_db, postgres, lake, table):
    from tests.helpers import make_dag, run_dag, task_states

    cfg = config(table, lake)
    dag = make_dag("e2e_iceberg", [cfg.model_dump(mode="json", exclude_defaults=True)])
    dag_run = run_dag(dag, SECOND)
    assert task_states(dag_run) == {f"export_{table}": "success"}
    assert iceberg_rows(lake, catalog_db, cfg, SECOND) == normalised(source_rows(postgres, table, SECOND))


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # the catalog's database: one store is enough
def test_a_sql_catalog_in_postgresql(connections, postgres, lake, table, monkeypatch):
    """The SQL catalog most deployments would use: PostgreSQL through SQLAlchemy and psycopg 3."""
    from pyiceberg.catalog.sql import SqlCatalog

    database = f"catalog_{uuid.uuid4().hex[:8]}"  # a database of its own: no other test's catalog tables
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    uri = postgres.url.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + f"/{database}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_ICEBERG_DEFAULT", json.dumps({"conn_type": "generic", "extra": {"type": "sql", "uri": uri}})
    )
    cfg = config(table, lake)
    assert run_export(cfg, Window.for_day(FIRST)).rows == PER_DAY
    iceberg = SqlCatalog("iceberg_default", uri=uri, **lake.reader_properties()).load_table(cfg.iceberg_identifier)
    read = iceberg.scan(row_filter=day_filter(cfg, Window.for_day(FIRST), False)).to_arrow()
    assert sorted(read.column("hash_id").to_pylist()) == [r[0] for r in source_rows(postgres, table, FIRST)]


def day_rows_at(table, cfg: TableExport, day: date, snapshot_id: int) -> list[int]:
    """The day's hash_ids as the table held them at ``snapshot_id`` (time travel)."""
    read = table.scan(row_filter=day_filter(cfg, Window.for_day(day), False), snapshot_id=snapshot_id).to_arrow()
    return sorted(read.column("hash_id").to_pylist())


def test_a_rerun_is_one_snapshot_that_never_shows_the_day_empty(catalog_db, postgres, lake, table):
    """Time travel to every snapshot the table has: the day is either the first export's rows or the
    rerun's, never empty or half (a delete snapshot followed by an append one would show it empty)."""
    cfg = config(table, lake)
    run_export(cfg, Window.for_day(FIRST))
    first = [r[0] for r in source_rows(postgres, table, FIRST)]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {table} WHERE hash_id = %s", (first[0],))
    run_export(cfg, Window.for_day(FIRST))
    iceberg = catalog(lake, catalog_db).load_table(cfg.iceberg_identifier)
    snapshots = iceberg.snapshots()
    assert len(snapshots) == 2  # one per commit
    assert [day_rows_at(iceberg, cfg, FIRST, s.snapshot_id) for s in snapshots] == [sorted(first), sorted(first[1:])]
    assert iceberg.current_snapshot().summary.operation.value == "overwrite"


def test_an_empty_day_is_a_commit_that_verify_finds(catalog_db, postgres, lake, table, tmp_path, capsys):
    """A day without rows in the source: committed (a snapshot naming the day, adding no file), so
    verify says it was exported, with 0 rows; after rows of it were exported and then deleted at the
    source, a rerun empties the day in the same way."""
    from cratedb_airflow_export.cli import main

    cfg = config(table, lake)
    empty = THIRD + (THIRD - SECOND) * 30  # no sample rows
    assert run_export(cfg, Window.for_day(empty)).rows == 0
    config_file = tmp_path / "exports.yaml"
    config_file.write_text(json.dumps({"tables": [cfg.model_dump(mode="json", exclude_defaults=True)]}))
    assert main(["verify", "--table", table, "--date", str(empty), "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert "committed: 0 rows" in out and "the table holds 0 rows in the window in 0 file(s)" in out

    run_export(cfg, Window.for_day(FIRST))
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(
            f'DELETE FROM {table} WHERE "timestamp" >= %s AND "timestamp" < %s', Window.for_day(FIRST).bounds()
        )
    assert run_export(cfg, Window.for_day(FIRST)).rows == 0
    assert iceberg_rows(lake, catalog_db, cfg, FIRST) == []
    assert main(["verify", "--table", table, "--date", str(FIRST), "--config", str(config_file)]) == 0


def test_verify_finds_a_data_file_of_the_day_gone(catalog_db, postgres, lake, table, tmp_path, capsys):
    """The row count comes from the table's metadata, which still names a deleted file: verify looks
    for every file of the day, as every reader would."""
    from cratedb_airflow_export.cli import main

    cfg = config(table, lake)
    result = run_export(cfg, Window.for_day(SECOND))
    config_file = tmp_path / "exports.yaml"
    config_file.write_text(json.dumps({"tables": [cfg.model_dump(mode="json", exclude_defaults=True)]}))
    (path,) = result.as_dict()["files"]
    lake.store.delete(lake.bucket, [path.split("/", 3)[3]])
    assert main(["verify", "--table", table, "--date", str(SECOND), "--config", str(config_file)]) == 1
    assert f"! {path}: a data file of the day is missing" in capsys.readouterr().out


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # JSON values: one store is enough
def test_restore_keeps_a_json_null_apart_from_sql_null(catalog_db, postgres, lake, tmp_path):
    """PostgreSQL's json holds ``null`` as a value, distinct from SQL NULL: both survive the trip."""
    from cratedb_airflow_export.restore import restore

    name = f"doc.nulls_{uuid.uuid4().hex[:8]}"
    noon = Window.for_day(SECOND).start.replace(hour=12)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS doc")
        conn.execute(f'CREATE TABLE {name} (id INT, "timestamp" TIMESTAMPTZ, doc JSON, docb JSONB)')
        values = "(1, %s, 'null', 'null'), (2, %s, NULL, NULL), (3, %s, '{\"a\": null}', '[null]')"
        conn.execute(f"INSERT INTO {name} VALUES {values}", (noon, noon, noon))
        conn.execute(f"CREATE TABLE {name}_back (LIKE {name})")
    cfg = config(name, lake)
    assert run_export(cfg, Window.for_day(SECOND)).rows == 3
    restore(cfg, [Window.for_day(SECOND)], into=f"{name}_back")
    query = "SELECT id, doc IS NULL, doc::text, docb IS NULL, docb::text FROM {} ORDER BY id"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        assert conn.execute(query.format(f"{name}_back")).fetchall() == [
            (1, False, "null", False, "null"),
            (2, True, None, True, None),
            (3, False, '{"a": null}', False, "[null]"),
        ]
