"""The DAG, run through Airflow against a real PostgreSQL and a real S3-compatible server."""

from __future__ import annotations

from datetime import date, timezone

import pytest

from tests.helpers import (
    REPO,
    as_exported,
    data_objects,
    json_lines,
    make_dag,
    partition_keys,
    read_objects,
    rows_of_day,
    run_dag,
    task_states,
)

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)


@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_stream_export_lands_exactly_the_rows_of_the_day(airflow_db, connections, metrics, s3_server, bucket, reader):
    dag = make_dag(
        f"e2e_stream_hive_{reader}",
        [
            {
                "table": "doc.metrics",
                "timestamp_column": "timestamp",
                "engine": "stream",
                "reader": reader,
                "target": f"s3://{bucket}/lake",
            }
        ],
    )
    dag_run = run_dag(dag, DAY)
    assert task_states(dag_run) == {"export_doc.metrics": "success"}

    objects = read_objects(s3_server, bucket)
    assert list(objects) == partition_keys("lake/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz")
    exported = json_lines(objects["lake/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz"])
    expected = [as_exported(r) for r in rows_of_day(metrics, DAY)]
    key = lambda r: (r["timestamp"], r["hash_id"])  # noqa: E731
    assert sorted(exported, key=key) == sorted(expected, key=key)
    assert len(exported) == 50


def test_window_boundaries_are_half_open_utc(airflow_db, connections, metrics, s3_server, bucket):
    dag = make_dag(
        "e2e_boundaries",
        [
            {
                "table": "doc.metrics",
                "timestamp_column": "timestamp",
                "engine": "stream",
                "compression": "none",
                "target_bucket": f"{bucket}/metrics",
            }
        ],
    )
    assert task_states(run_dag(dag, DAY)) == {"export_doc.metrics": "success"}
    objects = read_objects(s3_server, bucket)
    assert list(objects) == partition_keys("metrics-2024-01-04", "part-00000.jsonl")  # the tutorial's folder layout
    stamps = {row["timestamp"] for row in json_lines(objects["metrics-2024-01-04/part-00000.jsonl"])}
    assert "2024-01-04T00:00:00.000000+00:00" in stamps  # exactly D 00:00: exported
    assert "2024-01-04T23:59:59.999999+00:00" in stamps  # last microsecond of D: exported
    assert "2024-01-04T01:00:00.000000+00:00" in stamps  # stored as 03:00+02:00
    assert "2024-01-04T22:00:00.000000+00:00" in stamps  # stored as 17:00-05:00
    assert "2024-01-05T00:00:00.000000+00:00" not in stamps  # exactly D+1 00:00: belongs to the next day
    assert "2024-01-03T23:59:59.999999+00:00" not in stamps
    assert "2024-01-05T00:00:00+00:00" in {m[1].astimezone(timezone.utc).isoformat() for m in metrics}  # in the source


def test_columns_and_filter(airflow_db, connections, metrics, s3_server, bucket):
    dag = make_dag(
        "e2e_columns_filter",
        [
            {
                "table": "doc.metrics",
                "timestamp_column": "timestamp",
                "engine": "stream",
                "target": f"s3://{bucket}/c",
                "columns": ["hash_id", "name"],
                "filter": "name IN ('cpu', 'température')",
            }
        ],
    )
    dag_run = run_dag(dag, DAY)
    assert task_states(dag_run) == {"export_doc.metrics": "success"}
    (data,) = data_objects(read_objects(s3_server, bucket)).values()
    expected = [{"hash_id": r[0], "name": r[2]} for r in rows_of_day(metrics, DAY) if r[2] in ("cpu", "température")]
    assert expected  # the sample has such rows
    assert sorted(json_lines(data), key=lambda r: r["hash_id"]) == sorted(expected, key=lambda r: r["hash_id"])
    xcom = dag_run.get_task_instance("export_doc.metrics").xcom_pull(task_ids="export_doc.metrics")
    assert xcom["rows"] == len(expected)
    assert xcom["interval"] == {"start": "2024-01-04T00:00:00+00:00", "end": "2024-01-05T00:00:00+00:00"}
    assert xcom["target"] == f"s3://{bucket}/c/doc.metrics/dt=2024-01-04/"
    assert [o["key"] for o in xcom["objects"]] == ["c/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz"]


def test_several_days_land_in_their_own_partitions(airflow_db, connections, metrics, s3_server, bucket):
    dag = make_dag(
        "e2e_days",
        [{"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{bucket}/d"}],
    )
    days = [date(2024, 1, 3), date(2024, 1, 4), date(2024, 1, 5), date(2024, 1, 6)]
    for day in days:
        assert task_states(run_dag(dag, day)) == {"export_doc.metrics": "success"}
    objects = read_objects(s3_server, bucket)
    counts = {key.split("/")[2]: len(json_lines(data)) for key, data in data_objects(objects).items()}
    assert counts == {"dt=2024-01-03": 50, "dt=2024-01-04": 50, "dt=2024-01-05": 50}
    # a day without rows: a complete partition with no JSON Lines object (tests/e2e/test_empty_days.py)
    assert [k for k in objects if "dt=2024-01-06" in k] == partition_keys("d/doc.metrics/dt=2024-01-06")


def test_airflow_backfill_accepts_the_dag(airflow_db):
    """Airflow's own backfill plans one run per past day (logical date = start of the exported day)."""
    from tests.helpers import airflow_cli

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
