"""The shipped DAG file and config, and the ``cratedb-export plan`` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cratedb_sqlparse import sqlparse

from conftest import REPO, last_line_of_python
from cratedb_airflow_export.cli import main

CLI = str(Path(sys.executable).parent / "cratedb-export")


def dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def test_shipped_dag_imports_with_one_task_per_table():
    bag = dagbag(REPO / "dags")
    assert bag.import_errors == {}
    assert set(bag.dags) == {"cratedb_table_export", "cratedb_table_restore", "cratedb_export_consumer"}
    restore = bag.dags["cratedb_table_restore"]
    assert type(restore.timetable).__name__ == "NullTimetable"  # triggered by hand
    assert restore.params.get_param("table").schema["enum"] == ["doc.metrics"]
    dag = bag.dags["cratedb_table_export"]
    assert [t.task_id for t in dag.tasks] == ["export_doc.metrics"]
    task = dag.tasks[0]
    assert (task.owner, task.pool, task.retries) == ("data-engineering", "cratedb_export", 1)  # tests set 1 retry
    assert task.upstream_task_ids == set() and task.downstream_task_ids == set()
    assert dag.catchup is False
    assert set(dag.tags) == {"cratedb", "export", "s3"}
    assert "CrateDB → S3 daily export" in dag.doc_md and "s3://crate-astro-tutorial/metrics-YYYY-MM-DD/" in dag.doc_md
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.expression == "0 0 * * *"
    assert str(dag.timetable.timezone) in {"UTC", "Timezone('UTC')"}


def test_shipped_defaults_two_retries_five_minutes(monkeypatch):
    from datetime import timedelta

    monkeypatch.delenv("CRATEDB_EXPORT_RETRIES")
    monkeypatch.delenv("CRATEDB_EXPORT_RETRY_DELAY_MINUTES")
    dag = dagbag(REPO / "dags").dags["cratedb_table_export"]
    assert (dag.tasks[0].retries, dag.tasks[0].retry_delay) == (2, timedelta(minutes=5))


def test_catchup_is_configurable(monkeypatch):
    monkeypatch.setenv("CRATEDB_EXPORT_CATCHUP", "true")
    assert dagbag(REPO / "dags").dags["cratedb_table_export"].catchup is True


def broken_project(tmp_path: Path, tables: str) -> Path:
    shutil.copytree(REPO / "dags", tmp_path / "dags")
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "table_exports.py").write_text(f"TABLES = {tables}\n")
    return tmp_path / "dags"


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            '[{"table": "doc.metrics", "target_bucket": "b/p"}]',
            "entry 0 (table 'doc.metrics'): field 'timestamp_column': Field required",
        ),
        (
            '[{"table": "doc.metrics", "timestamp_column": "ts", "target_bucket": "bkt/p", "engines": "copy"}]',
            "entry 0 (table 'doc.metrics'): field 'engines': unknown key",
        ),
        (
            '[{"table": "a.b.c", "timestamp_column": "ts", "target_bucket": "bkt/p"}]',
            "entry 0 (table 'a.b.c'): field 'table'",
        ),
    ],
)
def test_broken_tables_entry_is_a_dag_import_error(tmp_path, tables, expected):
    bag = dagbag(broken_project(tmp_path, tables))
    assert bag.dags == {}
    errors = {Path(path).name: text for path, text in bag.import_errors.items()}
    assert set(errors) == {"cratedb_table_export.py", "cratedb_table_restore.py", "example_export_consumer.py"}
    assert all(expected in text for text in errors.values())


def test_plan_json_for_the_shipped_config():
    proc = subprocess.run(
        [CLI, "plan", "--date", "2024-01-04", "--json"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["interval"] == {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"}
    (table,) = plan["tables"]
    assert table["table"] == "doc.metrics"
    assert table["engine"] == "copy"
    assert table["interval"] == plan["interval"]
    assert table["target"] == "s3://crate-astro-tutorial/metrics-2024-01-04/"
    assert table["statements"][-3:] == [
        'REFRESH TABLE "doc"."metrics"',
        'COPY "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2 TO DIRECTORY $3 '
        "WITH (compression = 'gzip', format = 'json_object', wait_for_completion = true)",
        'SELECT count(*) FROM "doc"."metrics" WHERE "timestamp" >= $1 AND "timestamp" < $2',
    ]
    assert table["parameters"][-2] == [
        "2024-01-04T00:00:00+00:00",
        "2024-01-05T00:00:00+00:00",
        "s3://<access_key>:<secret_key>@crate-astro-tutorial/_cratedb_export_staging/metrics-2024-01-04/<attempt>",
    ]
    for statement in table["statements"]:
        assert sqlparse(statement, raise_exception=False)[0].exception is None


def test_plan_redacts_a_configured_secret_and_uses_the_endpoint(tmp_path, monkeypatch, capsys):
    secret = "Plan/Secret+Key=1"
    extra = {"endpoint_url": "http://127.0.0.1:9000"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT", json.dumps({"conn_type": "aws", "login": "AK", "password": secret, "extra": extra})
    )
    config = tmp_path / "c.yaml"
    config.write_text("tables: [{table: doc.metrics, timestamp_column: ts, target: 's3://lake/x'}]\n")
    assert main(["plan", "--date", "2024-01-04", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert secret not in out and "Plan%2FSecret" not in out
    assert "protocol = 'http'" in out
    assert (
        "$3 = s3://<access_key>:<secret_key>@127.0.0.1:9000/lake/_cratedb_export_staging/x/doc.metrics/dt=2024-01-04/"
        "<attempt>" in out
    )
    assert "target: s3://lake/x/doc.metrics/dt=2024-01-04/" in out


def test_plan_errors(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("tables: [{table: doc.metrics, target: 's3://lake/x'}]\n")
    assert main(["plan", "--date", "2024-01-04", "--config", str(config)]) == 2
    assert "field 'timestamp_column': Field required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "--date", "04.01.2024"])
    assert exit_.value.code == 2
    assert "'04.01.2024' is not a date in the form YYYY-MM-DD" in capsys.readouterr().err


def test_plan_single_table(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "tables: [{table: doc.a, timestamp_column: ts, target: 's3://lake/x'},"
        " {table: doc.b, timestamp_column: ts, target: 's3://lake/x', engine: stream}]\n"
    )
    assert main(["plan", "--date", "2024-01-04", "--config", str(config), "--table", "b", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [t["table"] for t in plan["tables"]] == ["doc.b"]
    declares = [t for t in plan["tables"][0]["statements"] if t.startswith("DECLARE")]
    assert [d.split(" ", 2)[1] for d in declares] == [f'"cratedb_export_{n}"' for n in range(4)]  # cursors: 4
    assert all(" NO SCROLL CURSOR WITH HOLD FOR " in d for d in declares)
    assert main(["plan", "--date", "2024-01-04", "--config", str(config), "--table", "doc.zzz"]) == 2


def test_plan_json_stays_valid_when_airflow_logs(tmp_path):
    """Airflow logs to stdout when it reads a connection; --json output must not be corrupted."""
    env = {
        **os.environ,
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://AKIA:Long%2FSecret%2BKey@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000",
    }
    proc = subprocess.run(
        [CLI, "plan", "--date", "2024-01-04", "--json"], cwd=REPO, capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert "protocol = 'http'" in plan["tables"][0]["statements"][-2]
    assert "Long/Secret" not in proc.stdout and "Long%2FSecret" not in proc.stdout


def test_airflow_backfill_accepts_the_dag(airflow_db):
    """Airflow's own backfill plans one run per past day (logical date = start of the exported day)."""
    from conftest import airflow_cli

    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")}
    assert airflow_cli("dags", "reserialize", env=env).returncode == 0
    proc = airflow_cli(
        "backfill",
        "create",
        "--dag-id",
        "cratedb_table_export",
        "--from-date",
        "2024-01-01",
        "--to-date",
        "2024-01-03",
        "--dry-run",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dates = [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| 2024-")]
    assert dates == ["2024-01-01 00:00:00+00:00", "2024-01-02 00:00:00+00:00", "2024-01-03 00:00:00+00:00"]


def test_parsing_the_dag_files_does_not_import_the_export_machinery():
    """DAG files are parsed often: pyarrow, psycopg and the ADBC driver load only when a task runs."""
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(REPO / 'dags' / 'cratedb_table_export.py')!r})\n"
        f"runpy.run_path({str(REPO / 'dags' / 'example_export_consumer.py')!r})\n"
        f"runpy.run_path({str(REPO / 'dags' / 'cratedb_table_restore.py')!r})\n"
        "heavy = ('pyarrow', 'psycopg', 'adbc_driver_postgresql', 'cratedb_sqlparse')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert last_line_of_python(code) == "[]"
