"""Targeted re-export: a manual run's Trigger form picks days and tables; the command line does the
same without Airflow. Each day is its own partition, published by the usual protocol."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date

import pytest

from tests.helpers import (
    REPO,
    Lake,
    asset_events,
    data_objects,
    json_lines,
    make_dag,
    partition_keys,
    read_objects,
    run_dag,
    task_states,
)

pytestmark = pytest.mark.e2e


def entry(table: str, lake: Lake, **extra: object) -> dict[str, object]:
    return {
        "table": table,
        "timestamp_column": "timestamp",
        "engine": "stream",
        "target": lake.target(),
        **extra,
    }


def test_the_trigger_form_exports_exactly_the_chosen_days_of_the_chosen_tables(
    airflow_db, connections, lake, metrics, big_table
):
    server, bucket = lake.server, lake.bucket
    dag = make_dag("e2e_reexport", [entry("doc.metrics", lake), entry(big_table, lake)])
    # the run's own data interval would be 2024-01-09; the form asks for 01-03 .. 01-04 of doc.metrics
    dag_run = run_dag(dag, date(2024, 1, 9), conf={"day": "2024-01-03", "to": "2024-01-04", "tables": ["doc.metrics"]})
    assert task_states(dag_run) == {"export_doc.metrics": "success", f"export_{big_table}": "skipped"}
    objects = read_objects(server, bucket)
    assert list(objects) == [
        *partition_keys("lake/doc.metrics/dt=2024-01-03", "part-00000.jsonl.gz"),
        *partition_keys("lake/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz"),
    ]
    assert [len(json_lines(data)) for data in data_objects(objects).values()] == [50, 50]
    events = asset_events("e2e_reexport", dag_run.run_id)
    assert [(uri, day, extra["rows"]) for uri, day, extra in events] == [
        (f"{lake.scheme}://{bucket}/lake/doc.metrics", "2024-01-03", 50),
        (f"{lake.scheme}://{bucket}/lake/doc.metrics", "2024-01-04", 50),
    ]
    xcom = dag_run.get_task_instance("export_doc.metrics").xcom_pull(task_ids="export_doc.metrics")
    assert [p["interval"]["start"][:10] for p in xcom["partitions"]] == ["2024-01-03", "2024-01-04"]


def test_a_sliced_table_exports_each_chosen_day_as_one_partition(airflow_db, connections, lake, metrics):
    server, bucket = lake.server, lake.bucket
    dag = make_dag("e2e_reexport_sliced", [entry("doc.metrics", lake, slices=2)])
    dag_run = run_dag(dag, date(2024, 1, 9), conf={"day": "2024-01-04", "to": "2024-01-05"})
    assert set(task_states(dag_run).values()) == {"success"}
    objects = read_objects(server, bucket)
    slices = ("slice-000-part-00000.jsonl.gz", "slice-001-part-00000.jsonl.gz")
    assert list(objects) == [
        *partition_keys("lake/doc.metrics/dt=2024-01-04", *slices),
        *partition_keys("lake/doc.metrics/dt=2024-01-05", *slices),
    ]
    rows = {key.split("/")[2]: 0 for key in data_objects(objects)}
    for key, data in data_objects(objects).items():
        rows[key.split("/")[2]] += len(json_lines(data))
    assert rows == {"dt=2024-01-04": 50, "dt=2024-01-05": 50}
    assert not list(read_objects(server, bucket, "_cratedb_export_staging/"))


def test_the_command_line_exports_days_without_airflow(connections, lake, metrics, tmp_path):
    server, bucket = lake.server, lake.bucket
    config = tmp_path / "exports.yaml"
    config.write_text(json.dumps({"tables": [entry("doc.metrics", lake, format="parquet")]}))
    code = (
        "import sys\n"
        "from cratedb_airflow_export.cli import main\n"
        "args = ['run', '--table', 'metrics', '--date', '2024-01-04', '--to', '2024-01-05']\n"
        f"args += ['--config', {str(config)!r}]\n"
        "code = main(args)\n"
        "print('airflow imported:', 'airflow' in sys.modules)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=os.environ, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "airflow imported: False"
    assert lines[0].startswith("OK doc.metrics 2024-01-04: 50 rows in 1 object(s)")
    assert lines[1].startswith("OK doc.metrics 2024-01-05: 50 rows in 1 object(s)")
    assert "Exporting doc.metrics (day 1 of 2), interval [2024-01-04" in proc.stderr  # progress in the log
    assert "Exporting doc.metrics (day 2 of 2), interval [2024-01-05" in proc.stderr
    assert list(read_objects(server, bucket)) == [
        *partition_keys("lake/doc.metrics/dt=2024-01-04", "part-00000.parquet"),
        *partition_keys("lake/doc.metrics/dt=2024-01-05", "part-00000.parquet"),
    ]


def test_the_command_line_reports_a_failed_day_and_goes_on(connections, lake, metrics, tmp_path, capsys):
    from cratedb_airflow_export.cli import main

    config = tmp_path / "exports.yaml"
    config.write_text(json.dumps({"tables": [entry("doc.metrics", lake), entry("doc.nosuch", lake)]}))
    assert main(["run", "--date", "2024-01-04", "--config", str(config)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK doc.metrics 2024-01-04: 50 rows")
    assert out[1].startswith("FAILED doc.nosuch 2024-01-04: export of doc.nosuch for [2024-01-04")
    assert "table doc.nosuch does not exist" in out[1]
    assert main(["run", "--date", "2024-01-04", "--to", "2023-01-01", "--config", str(config)]) == 2
