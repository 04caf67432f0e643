"""The shipped DAG file and config, and the ``cratedb-export plan`` command."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    REPO,
    last_line_of_python,
    make_dag,
)


def dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


def test_shipped_dag_imports_with_one_task_per_table():
    bag = dagbag(REPO / "dags")
    assert bag.import_errors == {}
    assert set(bag.dags) == {
        "cratedb_table_export",
        "cratedb_table_restore",
        "cratedb_export_consumer",
        "cratedb_table_retention",
    }
    assert bag.dags["cratedb_table_retention"].tasks == []  # the tutorial's table sets no retain_days
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
    assert set(errors) == {
        "cratedb_table_export.py",
        "cratedb_table_restore.py",
        "example_export_consumer.py",
        "cratedb_table_retention.py",
    }
    assert all(expected in text for text in errors.values())


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


def test_every_task_of_a_table_has_its_execution_timeout():
    from datetime import timedelta

    dag = make_dag(
        "e2e_timeouts",
        [
            {"table": "doc.a", "timestamp_column": "ts", "target": "s3://lake/x", "timeout_minutes": 7},
            {"table": "doc.b", "timestamp_column": "ts", "target": "s3://lake/x", "engine": "stream", "slices": 2},
        ],
    )
    timeouts = {t.task_id: t.execution_timeout for t in dag.tasks}
    assert timeouts == {
        "export_doc.a": timedelta(minutes=7),
        "export_doc.b.slices": timedelta(minutes=120),
        "export_doc.b": timedelta(minutes=120),
    }


def test_the_trigger_forms_table_list_is_shared_not_copied_into_every_task():
    """Airflow deep-copies the DAG's params into each task: the list of table names is shared, so
    that building the DAG stays linear in the tables (docs/benchmark.md: 500 tables), and the DAG
    still serializes it as a plain list."""
    from airflow.serialization.serialized_objects import DagSerialization

    from cratedb_airflow_export.edge.dag import build_dag
    from cratedb_airflow_export.loading import parse_tables

    tables = parse_tables(
        [{"table": f"doc.t{i}", "timestamp_column": "ts", "target": "s3://lake/cratedb"} for i in range(40)]
    )
    dag = build_dag(tables)
    names = dag.params.get_param("tables").schema["items"]["enum"]
    assert names == [f"doc.t{i}" for i in range(40)]
    assert all(task.params.get_param("tables").schema["items"]["enum"] is names for task in dag.tasks)
    restored = DagSerialization.from_json(DagSerialization.to_json(dag))
    assert restored.params.get_param("tables").schema["items"]["enum"] == [f"doc.t{i}" for i in range(40)]
