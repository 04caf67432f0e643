"""The DAG, run through Airflow against a real PostgreSQL and a real S3-compatible server."""

from __future__ import annotations

from datetime import date

import pytest

from conftest import as_exported, json_lines, make_dag, read_objects, rows_of_day, run_dag, task_states

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)


def test_stream_export_lands_exactly_the_rows_of_the_day(airflow_db, connections, metrics, s3_server, bucket):
    dag = make_dag(
        "e2e_stream_hive",
        [
            {
                "table": "doc.metrics",
                "timestamp_column": "timestamp",
                "engine": "stream",
                "target": f"s3://{bucket}/lake",
            }
        ],
    )
    dag_run = run_dag(dag, DAY)
    assert task_states(dag_run) == {"export_doc.metrics": "success"}

    objects = read_objects(s3_server, bucket)
    assert list(objects) == ["lake/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz"]
    exported = json_lines(objects["lake/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz"])
    expected = [as_exported(r) for r in rows_of_day(metrics, DAY)]
    key = lambda r: (r["timestamp"], r["hash_id"])  # noqa: E731
    assert sorted(exported, key=key) == sorted(expected, key=key)
    assert len(exported) == 50
