"""Targeted re-export: a manual run's Trigger form picks days and tables; the command line does the
same without Airflow. Each day is its own partition, published by the usual protocol."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cratedb_airflow_export.edge.operators import Request
from cratedb_airflow_export.errors import ExportError
from tests.helpers import (
    make_dag,
)


def test_scheduled_runs_ignore_the_form_and_bad_requests_are_refused():
    params = {"day": "2024-01-03", "to": "2024-01-04", "tables": ["doc.metrics"]}
    scheduled = {"dag_run": SimpleNamespace(run_type="scheduled"), "params": params}
    assert Request.from_context(scheduled) == Request()
    manual = {"dag_run": SimpleNamespace(run_type="manual"), "params": params}
    request = Request.from_context(manual)
    assert [str(d) for d in request.days or []] == ["2024-01-03", "2024-01-04"]
    assert request.tables == frozenset({"doc.metrics"})
    assert Request.from_context({"dag_run": SimpleNamespace(run_type="manual"), "params": {}}) == Request()
    with pytest.raises(ExportError, match="'to' needs a 'day'"):
        Request.from_context({"params": {"to": "2024-01-04"}})
    with pytest.raises(ValueError, match=r"the last day 2024-01-02 is before the first day 2024-01-04"):
        Request.from_context({"params": {"day": "2024-01-04", "to": "2024-01-02"}})
    with pytest.raises(ValueError, match=r"day '4\.1\.2024' is not a date in the form YYYY-MM-DD"):
        Request.from_context({"params": {"day": "4.1.2024"}})


def test_the_trigger_form_lists_the_configured_tables():
    dag = make_dag("e2e_reexport_form", [{"table": "doc.a", "timestamp_column": "ts", "target": "s3://lake/x"}])
    params = dag.params.dump()
    assert set(params) == {"day", "to", "tables"}
    assert params["day"] is None and params["tables"] == []
    assert dag.params.get_param("tables").schema["items"]["enum"] == ["doc.a"]


def summary(day: str) -> dict[str, object]:
    uri = f"s3://lake/doc.metrics/dt={day}/"
    return {
        "table": "doc.metrics",
        "interval": {"start": f"{day}T00:00:00+00:00", "end": "..."},
        "rows": 5,
        "schema_changes": [],
        "target": uri,
        "manifest": f"{uri}_manifest.json",
        "objects": ["not in the event"],
    }


def test_an_event_names_its_own_partition_in_either_form():
    from cratedb_airflow_export.edge.operators import event_extra, partition_of, partitions_extra

    one = event_extra(summary("2024-01-03"))
    assert one == {
        "table": "doc.metrics",
        "interval": {"start": "2024-01-03T00:00:00+00:00", "end": "..."},
        "rows": 5,
        "schema_changes": [],
        "partition": "s3://lake/doc.metrics/dt=2024-01-03/",
        "manifest": "s3://lake/doc.metrics/dt=2024-01-03/_manifest.json",
    }
    assert partition_of(one, "2024-01-03") == one
    assert partition_of(one, None) == one  # Airflow 3.2: no key, one partition per event
    two = event_extra(summary("2024-01-04"))
    shared = partitions_extra(["2024-01-03", "2024-01-04"], [one, two])
    assert shared == {"table": "doc.metrics", "partitions": {"2024-01-03": one, "2024-01-04": two}}
    assert partition_of(shared, "2024-01-04") == two
    with pytest.raises(KeyError, match="'2024-01-05' is none of"):
        partition_of(shared, "2024-01-05")
