"""Late-arriving rows: a run waits for the table's lateness (deferred), and reconciling runs export
again the days whose source count changed, leaving unchanged days alone."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from cratedb_airflow_export.manifest import Manifest
from tests.helpers import SAMPLE_DAYS, asset_events, make_dag, read_objects, run_dag, task_states

pytestmark = pytest.mark.e2e


@pytest.fixture
def table(postgres):
    name = f"doc.l_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics(SAMPLE_DAYS, 20, seed=17), table=name)
    return name


def entry(table: str, bucket: str, **extra: object) -> dict[str, object]:
    target = f"s3://{bucket}/lake"
    return {"table": table, "timestamp_column": "timestamp", "engine": "stream", "target": target, **extra}


def manifest(s3_server, bucket: str, table: str, day: date) -> Manifest:
    key = f"lake/{table}/dt={day}/_manifest.json"
    return Manifest.from_bytes(read_objects(s3_server, bucket, key)[key])


def insert_late_row(postgres, table: str, day: date) -> None:
    late = (99, datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc), "late", {"host": "x"}, {"v": 1})
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, [late], table=table)


def test_a_run_waits_for_late_rows_then_exports(airflow_db, connections, postgres, s3_server, bucket):
    """The day that ended at 00:00 today, with a lateness reaching 4 s past now: the task defers
    (Airflow's DateTimeTrigger, run inline by dag.test) and exports after the wait."""
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today.date() - timedelta(days=1)
    name = f"doc.w_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics([yesterday], 10, seed=3), table=name)
    lateness = int((datetime.now(timezone.utc) - today).total_seconds()) + 4
    dag = make_dag("e2e_lateness", [entry(name, bucket, lateness=f"{lateness}s")])
    started = datetime.now(timezone.utc)
    dag_run = run_dag(dag, yesterday)
    assert task_states(dag_run) == {f"export_{name}": "success"}
    exported_at = datetime.fromisoformat(manifest(s3_server, bucket, name, yesterday).exported_at)
    assert exported_at >= today + timedelta(seconds=lateness) > started  # not before the lateness passed
    assert manifest(s3_server, bucket, name, yesterday).rows == 10


def test_a_reconciling_run_exports_a_day_with_late_rows_again(
    airflow_db, connections, postgres, s3_server, bucket, table
):
    first, second, third = SAMPLE_DAYS  # 2024-01-03, -04, -05
    plain = make_dag("e2e_reconcile_plain", [entry(table, bucket)])
    for day in (first, second):
        assert set(task_states(run_dag(plain, day)).values()) == {"success"}
    before = {day: manifest(s3_server, bucket, table, day) for day in (first, second)}
    insert_late_row(postgres, table, first)
    time.sleep(0.01)

    reconciling = make_dag("e2e_reconcile", [entry(table, bucket, reconcile_days=2)])
    dag_run = run_dag(reconciling, third)
    assert set(task_states(dag_run).values()) == {"success"}
    after = {day: manifest(s3_server, bucket, table, day) for day in (first, second, third)}
    assert (before[first].rows, after[first].rows, after[first].source_count) == (20, 21, 21)
    assert after[first].exported_at > before[first].exported_at and after[first].run_id == dag_run.run_id
    assert after[second] == before[second]  # unchanged: not rewritten, same exported_at
    assert after[third].rows == 20
    xcom = dag_run.get_task_instance(f"export_{table}").xcom_pull(task_ids=f"export_{table}")
    assert xcom["reconciled"] == [
        {"day": str(first), "state": "re-exported", "recorded": 20, "counted": 21},
        {"day": str(second), "state": "unchanged", "recorded": 20, "counted": 20},
    ]
    events = asset_events("e2e_reconcile", dag_run.run_id)
    assert [(day, extra["rows"]) for _, day, extra in events] == [
        (str(first), 21),  # the re-exported day is announced again
        (str(third), 20),
    ]


def test_reconcile_by_hand_prints_what_changed(connections, postgres, s3_server, bucket, table, tmp_path, capsys):
    from cratedb_airflow_export.cli import main

    config = tmp_path / "exports.yaml"
    config.write_text(json.dumps({"tables": [entry(table, bucket)]}))
    first, second, third = SAMPLE_DAYS
    assert main(["run", "--date", str(first), "--to", str(second), "--config", str(config)]) == 0
    capsys.readouterr()
    insert_late_row(postgres, table, second)
    assert main(["reconcile", "--days", "3", "--until", str(third), "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{table} {first}: unchanged (20 rows)",
        f"{table} {second}: re-exported, 20 -> 21 rows in the source",
        f"{table} {third}: no complete partition (not exported; a backfill exports it)",
    ]
    assert manifest(s3_server, bucket, table, second).rows == 21
    assert main(["reconcile", "--days", "0", "--config", str(config)]) == 2
