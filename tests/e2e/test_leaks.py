"""No secret in task logs, rendered fields, XCom, the serialized DAG or error messages.

Runs the shipped DAG file through Airflow's real task path (API server + LocalExecutor via
``airflow dags test --use-executor``), so the task logs are the files Airflow writes in
production. Two tables: one exports for real (``stream``), one fails (``copy`` against
PostgreSQL, which has no COPY ... TO DIRECTORY: refused after the plan, with its secret-bearing
URI, was logged) so the failure path is searched too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from devtools.devstack import free_port, wait_for_airflow_api

from tests.helpers import REPO, airflow_cli, json_lines, partition_keys, read_objects, run_in_group

pytestmark = pytest.mark.e2e

AWS_SECRET = "Aws/Canary+Secret=9zQ"
PG_PASSWORD = "Pg/Canary+Pass=7xW"
METADATA_DB = "leak_airflow"


def forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


@pytest.fixture
def leak_home(tmp_path_factory, postgres):
    """A metadata DB of its own, in PostgreSQL as in production: the API server, `dags test` and
    its LocalExecutor all write to it at once (with SQLite the run could stall for minutes on its
    locks), and nothing else from the suite is in the logs or the DB that are searched."""
    home = tmp_path_factory.mktemp("leak-airflow-home")
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {METADATA_DB}")
        conn.execute(f"CREATE DATABASE {METADATA_DB}")
    metadata_url = postgres.url.replace("postgresql://", "postgresql+psycopg2://").rsplit("/", 1)[0]
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{metadata_url}/{METADATA_DB}",
    }
    migrated = airflow_cli("db", "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return home, env, postgres.url.rsplit("/", 1)[0] + f"/{METADATA_DB}"


@pytest.fixture
def api_server(leak_home):
    home, home_env, metadata = leak_home
    port = free_port()
    env = {
        **os.environ,
        **home_env,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if not wait_for_airflow_api(port, proc, timeout=120):
            raise RuntimeError("airflow api-server did not come up")
        yield home, env, metadata
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def azure_sas(azurite, container: str) -> str:
    """A SAS token for the container (the export's permissions: racwdl), signed now: unique per run."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    creds = azurite.credentials()
    permission = ContainerSasPermissions(read=True, add=True, create=True, write=True, delete=True, list=True)
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    return generate_container_sas(creds.account, container, account_key=creds.key, permission=permission, expiry=expiry)


def test_no_secret_leaks_anywhere(api_server, postgres, s3_server, azurite, metrics, bucket, tmp_path):
    """Also with Azure Blob Storage through a container's SAS token (its signature is the secret): one
    table streams into Azurite, one asks for CrateDB's COPY TO az:// and is refused (Azurite's
    path-style endpoint), so the failure path holds the token too."""
    from urllib.parse import parse_qs

    airflow_home, server_env, metadata = api_server
    container = azurite.create_container(f"leak-{bucket[-12:]}")
    sas = azure_sas(azurite, container)
    signature = parse_qs(sas)["sig"][0]
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS leaktest")
        conn.execute(f"CREATE ROLE leaktest LOGIN PASSWORD '{PG_PASSWORD}'")
        for copy in ("metrics_copy", "metrics_az", "metrics_azcopy"):
            conn.execute(f"CREATE TABLE IF NOT EXISTS doc.{copy} AS SELECT * FROM doc.metrics")
        conn.execute("GRANT USAGE ON SCHEMA doc TO leaktest")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA doc TO leaktest")

    config = tmp_path / "exports.yaml"
    config.write_text(
        json.dumps(
            {
                "tables": [
                    {
                        "table": "doc.metrics",
                        "timestamp_column": "timestamp",
                        "engine": "stream",
                        "target": f"s3://{bucket}/ok",
                    },
                    {
                        "table": "doc.metrics_copy",
                        "timestamp_column": "timestamp",
                        "engine": "copy",
                        "target": f"s3://{bucket}/cp",
                    },
                    {
                        "table": "doc.metrics_az",
                        "timestamp_column": "timestamp",
                        "engine": "stream",
                        "target": f"az://{container}/ok",
                    },
                    {
                        "table": "doc.metrics_azcopy",
                        "timestamp_column": "timestamp",
                        "engine": "copy",
                        "target": f"az://{container}/cp",
                    },
                ]
            }
        )
    )
    env = {
        **server_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "CRATEDB_EXPORT_CONFIG": str(config),
        "AIRFLOW_CONN_CRATEDB_CONNECTION": (
            f"postgresql://leaktest:{quote(PG_PASSWORD, safe='')}@127.0.0.1:{postgres.port}/{postgres.database}"
        ),
        "AIRFLOW_CONN_AWS_DEFAULT": (
            f"aws://AKIALEAKTEST:{quote(AWS_SECRET, safe='')}@/?endpoint_url="
            f"{quote(s3_server.endpoint_url, safe='')}&region_name=us-east-1"
        ),
        "AIRFLOW_CONN_WASB_DEFAULT": json.dumps(
            {
                "conn_type": "wasb",
                "login": azurite.credentials().account,
                "host": azurite.endpoint,
                "extra": {"sas_token": sas},
            }
        ),
    }
    assert airflow_cli("pools", "set", "cratedb_export", "4", "CrateDB exports", env=env).returncode == 0
    _, console = run_in_group(
        ["dags", "test", "--use-executor", "cratedb_table_export", "2024-01-05"], env, 240, finished="DagRun Finished"
    )
    assert "DagRun Finished: dag_id=cratedb_table_export" in console and "state=failed" in console

    # the export really ran: the stream table landed, the copy table failed as expected
    objects = read_objects(s3_server, bucket)
    assert list(objects) == partition_keys("ok/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz")
    assert len(json_lines(objects["ok/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz"])) == 50
    in_azure = read_objects(azurite, container)
    assert list(in_azure) == partition_keys("ok/doc.metrics_az/dt=2024-01-04", "part-00000.jsonl.gz")

    logs = {p: p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*.log")}
    copy_logs = [text for p, text in logs.items() if "task_id=export_doc.metrics_copy" in str(p)]
    stream_logs = [text for p, text in logs.items() if "task_id=export_doc.metrics/" in str(p)]
    assert len(copy_logs) == 1 and len(stream_logs) == 1, sorted(map(str, logs))  # cannot heal: not retried
    # positive controls: the secret-bearing statement and the failure were logged, redacted
    assert "statements to send:\\n  1. COPY " in copy_logs[0] and "TO DIRECTORY $3" in copy_logs[0]
    assert "s3://AKIALEAKTEST:***@127.0.0.1" in copy_logs[0]
    assert (
        "export of doc.metrics_copy for [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00) failed: "
        "SourceError: engine 'copy' needs CrateDB's COPY ... TO DIRECTORY" in copy_logs[0]
    )
    assert "Exported 50 rows of doc.metrics" in stream_logs[0]
    (az_copy_log,) = [text for p, text in logs.items() if "task_id=export_doc.metrics_azcopy" in str(p)]
    assert "CrateDB's COPY addresses an Azure account by host name" in az_copy_log  # Azurite's path-style endpoint
    (az_log,) = [text for p, text in logs.items() if "task_id=export_doc.metrics_az/" in str(p)]
    assert "Exported 50 rows of doc.metrics_az" in az_log

    with psycopg.connect(metadata) as db:
        tables = [name for (name,) in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        dump = "\n".join(
            str(row) for table in tables for row in db.execute(f'SELECT t::text FROM "{table}" t').fetchall()
        )
        checked = {
            table: db.execute(f"SELECT count(*) FROM {table} WHERE dag_id = 'cratedb_table_export'").fetchone()[0]
            for table in ("rendered_task_instance_fields", "xcom", "serialized_dag")
        }
    # nothing is templated (template_fields = ()), so there may be no rendered row at all
    assert checked["xcom"] >= 1 and checked["serialized_dag"] >= 1, checked
    assert "doc.metrics_copy" in dump  # the dump holds the run: the failed task's config is in it

    places = {"console": console, "metadata database": dump, **{str(p): t for p, t in logs.items()}}
    for secret in (AWS_SECRET, PG_PASSWORD, sas, signature):
        for form in forms(secret):
            leaked = [place for place, text in places.items() if form in text]
            assert not leaked, f"{form!r} found in {leaked}"
