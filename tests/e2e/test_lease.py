"""One writer per table and day (lease.py), against each store's real server (S3, Azurite,
fake-gcs-server) and with real processes:
two command-line runs of one day started together, a run while another holds the day, a lease taken
over after its expiry, a writer that lost its lease publishes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError, LeaseHeld, LeaseLost
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.lease import Lease, lease_key
from cratedb_airflow_export.verify import verify_partition
from cratedb_airflow_export.windows import Window
from tests.helpers import BIG_ROWS, REPO, Lake, partition_keys, read_objects

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)
WINDOW = Window.for_day(DAY)


def entry(table: str, lake: Lake) -> dict[str, object]:
    return {"table": table, "timestamp_column": "timestamp", "engine": "stream", "format": "jsonl",
            "compression": "none", "batch_size": 2000, "target": lake.target()}  # fmt: skip


def slow_run(table: str, lake: Lake, seconds_per_batch: float) -> str:
    """``cratedb-export run`` of DAY in a process of its own, its writes slowed down (so that two
    runs overlap for sure), with the table given as YAML."""
    config = {"tables": [entry(table, lake)]}
    return textwrap.dedent(
        f"""
        import json, sys, tempfile, time
        from cratedb_airflow_export.cli import main
        from cratedb_airflow_export.engines.stream import RollingFiles
        write = RollingFiles.write
        def slowly(self, batch):
            time.sleep({seconds_per_batch})
            return write(self, batch)
        RollingFiles.write = slowly
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(json.dumps({config!r}))
        sys.exit(main(["run", "--date", "2024-01-04", "--config", f.name]))
        """
    )


def start(code: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lease_object(table: str) -> str:
    return f"_cratedb_export_leases/lake/{table}/dt=2024-01-04.json"


def test_two_runs_of_one_day_started_together_write_one_after_the_other(connections, lake, big_table):
    server, bucket = lake.server, lake.bucket
    runs = [start(slow_run(big_table, lake, 0.2)) for _ in range(2)]
    outcomes = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outcomes]
    waited = [err for _, err in outcomes if "waiting up to" in err]
    assert len(waited) == 1  # the second writer said why it waited, naming the first
    assert f"for export of {big_table} for [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00) (holder " in waited[0]
    store = server.store()
    cfg = TableExport.model_validate(entry(big_table, lake))
    folder = f"lake/{big_table}/dt=2024-01-04"
    assert list(read_objects(server, bucket, "lake/")) == partition_keys(folder, "part-00000.jsonl")
    assert list(read_objects(server, bucket, "_cratedb_export_")) == []  # no staging left, lease released
    with __import__("psycopg").connect(os.environ["AIRFLOW_CONN_CRATEDB_CONNECTION"]) as conn, conn.cursor() as cur:
        report = verify_partition(store, cur, cfg, WINDOW)
    assert report.ok, report.render()
    assert f"source count(*) over the window: {BIG_ROWS} = manifest rows" in report.render()


# 30 s of a slowed writer; each store: test_targets' second writer
@pytest.mark.parametrize("lake", ["s3"], indirect=True)
def test_a_run_while_another_writer_holds_the_day_fails_naming_it(connections, lake, big_table, monkeypatch):
    """The export a task runs (run_export), while a command-line run holds the day: it waits for
    the lease's duration (10 s here), then fails, retryable, naming the holder; nothing of it lands."""
    server, bucket = lake.server, lake.bucket
    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    holder = start(slow_run(big_table, lake, 5.0), CRATEDB_EXPORT_LEASE_SECONDS="10")  # 6 batches: 30 s
    store = server.store()
    key = lease_object(big_table)
    deadline = time.monotonic() + 60
    while not read_objects(server, bucket, key) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert read_objects(server, bucket, key), "the command-line run never took the lease"
    started = time.monotonic()
    with pytest.raises(ExportError) as failure:
        run_export(TableExport.model_validate(entry(big_table, lake)), WINDOW)
    assert time.monotonic() - started >= 9  # it waited the lease's duration
    message = str(failure.value)
    assert "failed: LeaseHeld: another writer is at work on this table's day: export of " in message
    assert f"pid {holder.pid})" in message and failure.value.retryable
    out, err = holder.communicate(timeout=600)
    assert holder.returncode == 0, err[-2000:]
    assert out.startswith(f"OK {big_table} 2024-01-04: {BIG_ROWS} rows")
    assert verify_partition(store, None, TableExport.model_validate(entry(big_table, lake)), WINDOW).ok


def test_an_expired_lease_is_taken_over_and_its_old_holder_can_neither_renew_nor_publish(lake):
    server, bucket = lake.server, lake.bucket
    store = server.store()
    partition = lake.location("lake/doc.t/dt=2024-01-04")
    first = Lease(store, lease_key(partition), "first", "export of doc.t", seconds=10)
    first.acquire(wait=0)
    second = Lease(store, lease_key(partition), "second", "export of doc.t", seconds=10)
    with pytest.raises(
        LeaseHeld, match=r"another writer is at work on this table's day: export of doc.t \(holder first"
    ):
        second.acquire(wait=0)
    first.renew()  # its own: fine
    first.acquire(wait=0)  # the same holder again (the slice tasks of one run): fine
    expired = json.loads(store.read(bucket, first.key.prefix))
    expired["expires_at"] = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    first.tag = store.replace_if(bucket, first.key.prefix, json.dumps(expired).encode(), first.tag)
    second.acquire(wait=0)  # first stopped renewing: taken over
    assert json.loads(store.read(bucket, first.key.prefix))["holder"] == "second"
    with pytest.raises(LeaseLost, match="lost its lease"):
        first.renew()
    with pytest.raises(LeaseLost, match=r"no longer holds its lease .* \(held by export of doc.t \(holder second"):
        first.check()
    first.release()  # not its lease any more: left alone
    assert json.loads(store.read(bucket, first.key.prefix))["holder"] == "second"
    second.release()
    assert read_objects(server, bucket, "_cratedb_export_leases/") == {}


def test_a_writer_that_lost_its_lease_publishes_nothing(connections, lake, big_table, monkeypatch):
    """Another writer takes the lease over while this one writes (as if this one had stalled past
    its expiry): the check right before publishing fails, and nothing of this attempt lands."""
    server, bucket = lake.server, lake.bucket
    from cratedb_airflow_export.engines.stream import RollingFiles

    store = server.store()

    key = lease_object(big_table)
    real_write = RollingFiles.write

    def write_while_taken_over(self, batch):
        body = json.dumps({"holder": "usurper", "what": "export of elsewhere", "host": "h", "pid": 1,
                           "expires_at": (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()})  # fmt: skip
        store.put(bucket, key, body.encode())
        return real_write(self, batch)

    monkeypatch.setattr(RollingFiles, "write", write_while_taken_over)
    with pytest.raises(ExportError, match=r"LeaseLost: export of .* no longer holds its lease .*: not published"):
        run_export(TableExport.model_validate(entry(big_table, lake)), WINDOW)
    assert read_objects(server, bucket, "lake/") == {}
    assert json.loads(read_objects(server, bucket, key)[key])["holder"] == "usurper"  # not released: not ours


def test_the_tasks_of_one_sliced_run_share_their_lease(lake):
    """The slice tasks of a run hold the lease under the run's name: each renews it in turn (each
    renewal changes its ETag) without taking it from the others; another writer still waits."""
    server, bucket = lake.server, lake.bucket
    store = server.store()
    key = lease_key(lake.location("lake/doc.s/dt=2024-01-04"))
    slices = [Lease(store, key, "run-1", f"export of slice {i}", seconds=10) for i in range(3)]
    for lease in slices:
        lease.acquire(wait=0)
    for _ in range(2):
        for lease in slices:
            lease.renew()
            lease.check()
    with pytest.raises(LeaseHeld, match=r"\(holder run-1,"):
        Lease(store, key, "run-2", "export of doc.s", seconds=10).acquire(wait=0)
    slices[0].release()
    assert read_objects(server, bucket, "_cratedb_export_leases/") == {}


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # Airflow meeting the CLI; the lease on each store: above
def test_the_dags_task_meets_a_command_line_run_of_its_day(
    airflow_db, connections, lake, big_table, monkeypatch, capfd
):
    """The scheduler's task (here: a DAG run) starts while a person's ``cratedb-export run`` of the
    same day is at work: each try waits for the lease (10 s here), fails naming the holder and is
    retried; the person's run publishes the one complete partition."""
    server, bucket = lake.server, lake.bucket
    from tests.helpers import make_dag, run_dag, task_states, task_tries

    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    holder = start(slow_run(big_table, lake, 8.0), CRATEDB_EXPORT_LEASE_SECONDS="10")  # about 50 s of writing
    key = lease_object(big_table)
    deadline = time.monotonic() + 60
    while not read_objects(server, bucket, key) and time.monotonic() < deadline:
        time.sleep(0.2)
    dag = make_dag("lease_vs_cli", [entry(big_table, lake)])
    dag_run = run_dag(dag, DAY)
    assert holder.poll() is None, "the command-line run ended before the DAG's tries: nothing was tested"
    task = f"export_{big_table}"
    assert task_states(dag_run) == {task: "failed"} and task_tries(dag_run) == {
        task: 2
    }  # both tries waited, then failed
    said = capfd.readouterr()
    assert "LeaseHeld: another writer is at work on this table's day" in said.out + said.err
    assert f"pid {holder.pid})" in said.out + said.err
    _, err = holder.communicate(timeout=600)
    assert holder.returncode == 0, err[-2000:]
    cfg = TableExport.model_validate(entry(big_table, lake))
    assert verify_partition(server.store(), None, cfg, WINDOW).ok
    folder = f"lake/{big_table}/dt=2024-01-04"
    assert list(read_objects(server, bucket, "lake/")) == partition_keys(folder, "part-00000.jsonl")
