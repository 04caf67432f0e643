"""OpenLineage: an export's run events name the source table as input and the partition as output,
on each store (S3, Azurite, fake-gcs-server).

Runs the DAG through ``airflow dags test`` in its own process with Airflow's OpenLineage provider
enabled and its file transport (one JSON event per line), the way a deployment configures it.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date

import psycopg
import pytest
from devtools.devstack import create_metrics, sample_metrics

from tests.helpers import TEST_DAGS, airflow_cli, make_dag, store_connection

pytestmark = pytest.mark.e2e


def test_export_reports_the_table_in_and_the_partition_out(airflow_db, connections, postgres, lake, tmp_path):
    table = f"doc.lin_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        create_metrics(conn, sample_metrics([date(2024, 1, 4)], 30, seed=5), table=table)
    entry = {
        "table": table,
        "timestamp_column": "timestamp",
        "engine": "stream",
        "columns": ["hash_id", "timestamp", "name"],
        "target": lake.target(),
    }
    make_dag("e2e_lineage", [entry])
    events_file = tmp_path / "openlineage.jsonl"
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS),
        "AIRFLOW__OPENLINEAGE__DISABLED": "false",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "cratedb-export-test",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW_CONN_CRATEDB_CONNECTION": os.environ["AIRFLOW_CONN_CRATEDB_CONNECTION"],
    }
    variable, value = store_connection(lake.kind, lake.server)
    env[variable] = value
    proc = airflow_cli("dags", "test", "e2e_lineage", "2024-01-05", env=env, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    text = events_file.read_text()
    secret = {"s3": "secret_key", "azure": "key", "gcs": None}[lake.kind]
    if secret:  # no credential in any event
        creds = lake.server if lake.kind == "s3" else lake.server.credentials()
        assert getattr(creds, secret) not in text
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    task_events = [e for e in events if e["job"]["name"] == f"e2e_lineage.export_{table}"]
    assert [e["eventType"] for e in task_events] == ["START", "COMPLETE"]
    complete = task_events[-1]

    (source,) = complete["inputs"]
    assert source["namespace"] == f"postgres://127.0.0.1:{postgres.port}"  # the local stack stands in for CrateDB
    assert source["name"] == f"{postgres.database}.{table}"
    fields = [(f["name"], f["type"]) for f in source["facets"]["schema"]["fields"]]
    assert fields == [("hash_id", "bigint"), ("timestamp", "timestamp with time zone"), ("name", "text")]

    (partition,) = complete["outputs"]
    # as lake tools spell the store (Azurite's path-style endpoint: the account is not in the host)
    assert partition["namespace"] == {"s3": "s3", "azure": "abfs", "gcs": "gs"}[lake.kind] + f"://{lake.bucket}"
    assert partition["name"] == f"lake/{table}/dt=2024-01-04"
    assert partition["facets"]["schema"]["fields"] == source["facets"]["schema"]["fields"]
    assert partition["facets"]["lifecycleStateChange"]["lifecycleStateChange"] == "OVERWRITE"
    lineage = partition["facets"]["columnLineage"]["fields"]
    assert sorted(lineage) == ["hash_id", "name", "timestamp"]
    assert lineage["name"]["inputFields"] == [
        {
            "namespace": source["namespace"],
            "name": source["name"],
            "field": "name",
            "transformations": [{"type": "DIRECT", "subtype": "IDENTITY"}],
        }
    ]
    stats = partition["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["fileCount"]) == (30, 1) and stats["size"] > 0
