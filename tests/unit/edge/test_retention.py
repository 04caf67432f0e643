"""The retention DAG's shape (its runs are in tests/e2e/test_retention.py)."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.edge.retention import CrateDBRetentionOperator, build_retention_dag


def entry(table: str, **extra: object) -> TableExport:
    return TableExport.model_validate({"table": table, "timestamp_column": "ts", "target": "s3://lake/x", **extra})


def test_one_purge_task_per_table_that_sets_retain_days_and_none_for_the_others():
    dag = build_retention_dag([entry("doc.a", retain_days=30), entry("doc.b"), entry("s.c", retain_days=7)])
    assert [t.task_id for t in dag.tasks] == ["purge_doc.a", "purge_s.c"]
    assert all(t.retries == 0 and t.max_active_tis_per_dag == 1 for t in dag.tasks)
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.timetable.expression == "0 0 * * *"
    assert "| `purge_doc.a` | `doc.a` | 30 days |" in dag.doc_md
    assert "| `purge_s.c` | `s.c` | 7 days |" in dag.doc_md


def test_a_purge_task_needs_retain_days():
    with pytest.raises(ValueError, match=r"doc\.b sets no retain_days"):
        CrateDBRetentionOperator(task_id="purge", export=entry("doc.b"))
