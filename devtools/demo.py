"""``make demo`` / ``make up``: the export on a local stack, no Docker.

Run from the repository root: ``python -m devtools.demo [--up]``.

1. starts PostgreSQL 16 (pgserver wheel) and an S3-compatible server (moto) on 127.0.0.1,
   or uses the CrateDB at ``CRATEDB_URL`` instead of PostgreSQL;
2. creates the tutorial's ``doc.metrics`` table with a few days of sample rows;
3. runs the ``cratedb_table_export`` DAG for one interval through Airflow itself
   (``airflow dags test``), with the connections given as AIRFLOW_CONN_* variables;
4. prints what landed in S3 (keys, sizes, row counts) and compares with the source;
5. with ``--up``: keeps Airflow running (``airflow standalone`` on 127.0.0.1) with the UI until Ctrl-C;
6. stops everything it started.

Environment: CRATEDB_URL (use CrateDB), DEMO_ENGINE (stream|copy, default stream),
DEMO_ROWS_PER_DAY (default 1000), AIRFLOW_PORT (default 8080, with --up), DEMO_S3_ENDPOINT (an
S3-compatible server to use instead of moto, e.g. MinIO from compose.yaml; with DEMO_S3_ACCESS_KEY
and DEMO_S3_SECRET_KEY, default minioadmin; the bucket is created when missing).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg

from cratedb_airflow_export.layout import MANIFEST, is_data_object
from cratedb_airflow_export.manifest import read_manifest
from devtools.devstack import (
    LocalPostgres,
    LocalS3,
    RemoteS3,
    create_metrics,
    sample_metrics,
    wait_for_airflow_api,
)

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / ".demo"
BUCKET = "demo-bucket"
DAYS = [date(2024, 1, 2) + timedelta(days=i) for i in range(4)]  # 2024-01-02 .. 2024-01-05
EXPORT_DAY = date(2024, 1, 4)  # the run with logical date 2024-01-05 covers [2024-01-04, 2024-01-05)
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def say(text: str) -> None:
    print(text, flush=True)


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, check=False)


def count_lines(data: bytes) -> int:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return sum(1 for line in data.splitlines() if line.strip())


def source_count(url: str, cratedb: bool) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            'SELECT count(*) FROM doc.metrics WHERE "timestamp" >= %s AND "timestamp" < %s',
            (
                f"{EXPORT_DAY.isoformat()}T00:00:00+00:00",
                f"{(EXPORT_DAY + timedelta(days=1)).isoformat()}T00:00:00+00:00",
            ),
        ).fetchone()
    return int(row[0])


def prepare_source(url: str, cratedb: bool, per_day: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS doc.metrics")
        create_metrics(conn, sample_metrics(DAYS, per_day), cratedb=cratedb)


def run_up(env: dict[str, str]) -> None:
    port = os.environ.get("AIRFLOW_PORT", "8080")
    env = {
        **env,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }
    log_file = WORK / "standalone.log"
    say(f"starting airflow standalone on 127.0.0.1:{port} (log: .demo/standalone.log) ...")
    with open(log_file, "w") as log:
        # own process group, SIGINT at its default even when we were started in the background
        proc = subprocess.Popen(
            [AIRFLOW, "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        if not wait_for_airflow_api(int(port), proc, timeout=180):
            say(log_file.read_text()[-3000:])
            raise RuntimeError("airflow standalone did not come up")
        say(f"\nAirflow is running: http://127.0.0.1:{port}/  (DAG cratedb_table_export starts paused)")
        password_file = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        if password_file.exists():
            for user, password in json.loads(password_file.read_text()).items():
                say(f"login: {user} / {password}")
        say("Press Ctrl-C to stop Airflow, S3 and PostgreSQL.")
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # standalone stops its children only on SIGINT
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the group we started (scheduler, workers, api-server)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop what we started on SIGTERM too
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--up", action="store_true", help="keep Airflow running with the UI afterwards")
    args = parser.parse_args()

    crate_url = os.environ.get("CRATEDB_URL")
    engine = os.environ.get("DEMO_ENGINE", "stream")
    per_day = int(os.environ.get("DEMO_ROWS_PER_DAY", "1000"))
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    airflow_home = WORK / "airflow"
    airflow_home.mkdir()

    say("== cratedb-airflow-export demo ==")
    pg = None if crate_url else LocalPostgres(WORK / "postgres")
    s3_endpoint = os.environ.get("DEMO_S3_ENDPOINT")
    s3 = (
        RemoteS3(
            access_key=os.environ.get("DEMO_S3_ACCESS_KEY", "minioadmin"),
            secret_key=os.environ.get("DEMO_S3_SECRET_KEY", "minioadmin"),
            endpoint=s3_endpoint,
        )
        if s3_endpoint
        else LocalS3()
    )
    try:
        if pg is not None:
            pg.start()
            say(f"source: local PostgreSQL on 127.0.0.1:{pg.port} (pid {pg.pid})")
        else:
            say("source: CrateDB at CRATEDB_URL")
        source_url = crate_url or pg.url  # type: ignore[union-attr]
        s3.start()
        s3.ensure_bucket(BUCKET)
        say(f"S3: {'DEMO_S3_ENDPOINT' if s3_endpoint else 'moto'} on {s3.endpoint_url}, bucket {BUCKET}")

        prepare_source(source_url, cratedb=bool(crate_url), per_day=per_day)
        say(f"created doc.metrics with {per_day} rows a day for {DAYS[0]} .. {DAYS[-1]}")

        config = WORK / "table_exports.yaml"
        config.write_text(
            json.dumps(
                {
                    "tables": [
                        {
                            "table": "doc.metrics",
                            "timestamp_column": "timestamp",
                            "engine": engine,
                            "target": f"s3://{BUCKET}/exports",
                        },
                    ]
                },
                indent=2,
            )
        )
        env = {
            **os.environ,
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # standalone runs `airflow`
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "CRATEDB_EXPORT_CONFIG": str(config),
            "AIRFLOW_CONN_CRATEDB_CONNECTION": source_url,
            "AIRFLOW_CONN_AWS_DEFAULT": s3.airflow_conn_uri(),
            "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system"),  # as the Dockerfile
        }
        say("airflow db migrate ...")
        migrated = airflow(env, "db", "migrate")
        if migrated.returncode != 0:
            say(migrated.stdout[-3000:] + migrated.stderr[-3000:])
            return 1
        airflow(env, "pools", "set", "cratedb_export", "4", "Concurrent exports against CrateDB")

        logical = EXPORT_DAY + timedelta(days=1)
        say(f"airflow dags test cratedb_table_export {logical}  (data interval [{EXPORT_DAY}, {logical}) UTC) ...")
        started = time.monotonic()
        run = airflow(env, "dags", "test", "cratedb_table_export", logical.isoformat())
        (WORK / "dags-test.log").write_text(run.stdout + run.stderr)
        say(f"  finished in {time.monotonic() - started:.1f}s, exit code {run.returncode} (log: .demo/dags-test.log)")
        if run.returncode != 0:
            say((run.stdout + run.stderr)[-4000:])
            return 1

        client = s3.client()
        listing = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
        say(f"\nObjects in s3://{BUCKET}/:")
        exported = 0
        for item in sorted(listing, key=lambda o: o["Key"]):
            if is_data_object(item["Key"]):
                rows = count_lines(client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read())
                exported += rows
                say(f"  {item['Key']}  {item['Size']:,} bytes  {rows} rows")
            else:
                say(f"  {item['Key']}  {item['Size']:,} bytes")
        manifest_key = next((o["Key"] for o in listing if o["Key"].endswith(MANIFEST)), None)
        manifest_rows = read_manifest(s3.store(), BUCKET, manifest_key).rows if manifest_key else None
        expected = source_count(source_url, bool(crate_url))
        verdict = "OK" if exported == expected == manifest_rows and listing else "MISMATCH"
        say(
            f"\nRows exported: {exported}; manifest: {manifest_rows}; "
            f"source rows in [{EXPORT_DAY}, {logical}): {expected}  -> {verdict}"
        )
        check = subprocess.run(
            [
                str(Path(AIRFLOW).parent / "cratedb-export"),
                "verify",
                "--table",
                "doc.metrics",
                "--date",
                EXPORT_DAY.isoformat(),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        say(f"\n$ cratedb-export verify --table doc.metrics --date {EXPORT_DAY}\n{check.stdout.strip()}")
        if verdict != "OK" or check.returncode != 0:
            return 1
        if args.up:
            run_up(env)
        return 0
    finally:
        s3.stop()
        if pg is not None:
            pg.stop()
        say("stopped the local services")


if __name__ == "__main__":
    sys.exit(main())
