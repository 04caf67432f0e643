"""Faults caused for real: a worker killed mid-upload and a sliced run that died before publishing
(on S3, Azurite and fake-gcs-server), an S3 server stopped mid-upload. After the retry or the rerun
the partition is exact and nothing is left behind: no staged object, no open multipart upload;
``verify`` reports what a failure left.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from datetime import date

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import RunInfo, export_slice, run_export
from cratedb_airflow_export.layout import staging_root
from cratedb_airflow_export.verify import verify_partition
from cratedb_airflow_export.windows import Window
from tests.helpers import BIG_ROWS as ROWS
from tests.helpers import (
    REPO,
    aws_connection,
    make_dag,
    partition_keys,
    read_objects,
    run_dag,
    task_states,
    task_tries,
)

pytestmark = pytest.mark.e2e
DAY = date(2024, 1, 4)
WINDOW = Window.for_day(DAY)


def entry(table: str, bucket: str, **extra: object) -> dict[str, object]:
    return {
        "table": table,
        "timestamp_column": "timestamp",
        "engine": "stream",
        "compression": "none",
        "part_size_mb": 5,
        "target": f"s3://{bucket}/lake",
        **extra,
    }


# where each store's writer sends a part (module, class, method): the worker dies right after it
SENDS_A_PART = {
    "s3": ("cratedb_airflow_export.stores.s3", "MultipartWriter", "_send_part"),
    "azure": ("cratedb_airflow_export.stores.azure", "BlockWriter", "_send_part"),
    "gcs": ("google.cloud.storage.fileio", "BlobWriter", "_upload_chunks_from_buffer"),
}


def leftovers(store, cfg: TableExport) -> tuple[list[str], list[str]]:
    root = staging_root(cfg, DAY)
    return [o.key for o in store.list_objects(root)], [u.key for u in store.open_uploads(root)]


def test_a_worker_killed_mid_upload_leaves_nothing_after_the_rerun(connections, lake, big_table, monkeypatch):
    """The killed worker's lease stays behind: the rerun waits for it to expire (10 s here), takes it
    over, sweeps what the dead attempt staged and publishes the exact partition. On S3 the dead
    attempt leaves an open multipart upload (verify names it; the rerun aborts it); Azure's
    uncommitted blocks and GCS's unfinished resumable upload are no object at all."""
    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    cfg = TableExport.model_validate({**entry(big_table, lake.bucket), "target": lake.target()})
    module, owner, method = SENDS_A_PART[lake.kind]
    given = cfg.model_dump(mode="json", exclude_defaults=True)
    dies_after_first_part = textwrap.dedent(
        f"""
        import importlib, os, signal
        from datetime import date
        from cratedb_airflow_export.config import TableExport
        from cratedb_airflow_export.export import run_export
        from cratedb_airflow_export.windows import Window

        owner = getattr(importlib.import_module({module!r}), {owner!r})
        send = getattr(owner, {method!r})
        def send_then_die(self, *args, **kwargs):
            send(self, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies, as under the OOM killer
        setattr(owner, {method!r}, send_then_die)
        run_export(TableExport.model_validate({given!r}), Window.for_day(date(2024, 1, 4)))
        """
    )
    killed = subprocess.run([sys.executable, "-c", dies_after_first_part], cwd=REPO, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    store = lake.store
    lease = f"_cratedb_export_leases/lake/{big_table}/dt=2024-01-04.json"
    held_by = json.loads(store.read(lake.bucket, lease))
    assert held_by["what"].startswith(f"export of {big_table}") and held_by["holder"].startswith("manual-try0-")
    staged, uploads = leftovers(store, cfg)
    if lake.kind == "s3":
        assert staged == [] and len(uploads) == 1 and uploads[0].endswith("/part-00000.jsonl")  # an open upload
        report = verify_partition(store, None, cfg, WINDOW)
        assert any("open multipart upload(s) under" in p for p in report.problems), report.render()
    else:
        assert (staged, uploads) == ([], [])

    result = run_export(cfg, WINDOW)
    assert result.rows == result.source_count == ROWS
    assert leftovers(store, cfg) == ([], [])
    assert list(lake.objects("_cratedb_export_leases/")) == []  # released
    folder = f"lake/{big_table}/dt=2024-01-04"
    assert list(lake.objects("lake/")) == partition_keys(folder, "part-00000.jsonl")
    assert verify_partition(store, None, cfg, WINDOW).ok


def test_an_s3_outage_mid_upload_leaves_nothing_after_the_retry(
    airflow_db, connections, metrics, big_table, monkeypatch
):
    """The S3 server stops after the first part; the failed try cannot abort its upload, nor delete
    its lease; the server is back for Airflow's retry, which waits for that lease to expire (10 s
    here), removes the leftovers and publishes the exact partition. (S3 alone: moto restarts with
    its state; Azure and GCS leave no open upload to abort, and a store gone mid-run is in
    test_retention.py on each.)"""
    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    from devtools.devstack import LocalS3

    from cratedb_airflow_export.stores import s3 as storage

    s3 = LocalS3().start()
    outage_bucket = "outage-mid-upload"
    s3.client().create_bucket(Bucket=outage_bucket)
    cfg = TableExport.model_validate(entry(big_table, outage_bucket))
    upload_part = storage.MultipartWriter._send_part
    state = {"stopped": False}

    def upload_then_outage(self, number, chunk):
        upload_part(self, number, chunk)
        if not state["stopped"]:
            state["stopped"] = True
            s3.stop()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", s3.airflow_conn_uri())
        patch.setattr(storage.MultipartWriter, "_send_part", upload_then_outage)
        dag = make_dag("e2e_outage_mid_upload", [entry(big_table, outage_bucket)])
        dag.get_task(cfg.task_id).on_retry_callback = [lambda context: s3.start()]
        try:
            dag_run = run_dag(dag, DAY)
            assert task_states(dag_run) == {cfg.task_id: "success"}
            assert task_tries(dag_run) == {cfg.task_id: 2}
            store = s3.store()
            assert leftovers(store, cfg) == ([], [])
            folder = f"lake/{big_table}/dt=2024-01-04"
            assert list(read_objects(s3, outage_bucket)) == partition_keys(folder, "part-00000.jsonl")
            assert verify_partition(store, None, cfg, WINDOW).ok
        finally:
            s3.stop()


@pytest.mark.parametrize("lake", ["s3"], indirect=True)  # a lease expiry wait; each store: the killed worker above
def test_a_sliced_run_that_died_before_publishing_is_cleaned_by_the_next(
    airflow_db, connections, lake, metrics, monkeypatch
):
    """A run whose slices staged their files and then died (its publish never ran) leaves a staging
    folder of its own, and the day's lease its slices left for the publish; the next run of the day
    waits for that lease to expire (10 s here), publishes, and nothing of either run is left."""
    monkeypatch.setenv("CRATEDB_EXPORT_LEASE_SECONDS", "10")
    sliced = entry("doc.metrics", lake.bucket, slices=2, compression="gzip", target=lake.target())
    cfg = TableExport.model_validate(sliced)
    dead = RunInfo(dag_id="e2e_sliced_dead", run_id="scheduled__2024-01-05T00:00:00+00:00", try_number=1)
    for index in range(2):
        export_slice(cfg, WINDOW, index, dead)
    store = lake.store
    staged, _ = leftovers(store, cfg)
    assert len(staged) == 2 and all("/scheduled__2024-01-05T00-00-00-00-00/slice-00" in k for k in staged)

    dag = make_dag(f"e2e_sliced_rerun_{lake.kind}", [sliced])
    assert set(task_states(run_dag(dag, DAY)).values()) == {"success"}
    assert leftovers(store, cfg) == ([], [])
    folder = "lake/doc.metrics/dt=2024-01-04"
    assert list(lake.objects()) == partition_keys(
        folder, "slice-000-part-00000.jsonl.gz", "slice-001-part-00000.jsonl.gz"
    )
    assert verify_partition(store, None, cfg, WINDOW).ok


@pytest.mark.parametrize("reader", ["auto", "cursor"])
def test_a_source_stalled_mid_read_fails_within_its_bound_and_the_retry_publishes(
    airflow_db, connections, postgres, dialect_guard, s3_server, bucket, big_table, reader
):
    """The database stops answering after 1 MB of the day's rows (a proxy stops forwarding every
    byte); the attempt fails after stall_timeout_seconds naming the table, and Airflow's retry (the
    proxy forwarding again) publishes the exact partition."""
    import time

    from devtools.faults import FreezingProxy

    upstream = dialect_guard.port if reader == "cursor" else postgres.port  # CrateDB's path: through the guard
    proxy = FreezingProxy(upstream, freeze_after=1_000_000).start()
    stalled_url = postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/")
    cfg = TableExport.model_validate(entry(big_table, bucket, reader=reader, stall_timeout_seconds=3))
    first_try: dict[str, object] = {}

    def forward_again(context):
        first_try["failed_after"] = time.monotonic() - started
        first_try["error"] = str(context["exception"])
        proxy.thaw()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", stalled_url)
        dag = make_dag(
            f"e2e_stalled_source_{reader}", [entry(big_table, bucket, reader=reader, stall_timeout_seconds=3)]
        )
        dag.get_task(cfg.task_id).on_retry_callback = [forward_again]
        try:
            started = time.monotonic()
            dag_run = run_dag(dag, DAY)
        finally:
            proxy.thaw()
            proxy.stop()
    assert proxy.frozen.is_set()
    assert task_states(dag_run) == {cfg.task_id: "success"} and task_tries(dag_run) == {cfg.task_id: 2}
    assert f"export of {big_table} for [2024-01-04" in first_try["error"]
    assert "SourceStalled: the source sent no rows for 3 s while reading" in first_try["error"]
    assert first_try["failed_after"] < 3 + 20  # the bound, plus connecting and the first megabyte
    folder = f"lake/{big_table}/dt=2024-01-04"
    assert list(read_objects(s3_server, bucket, "lake/")) == partition_keys(folder, "part-00000.jsonl")
    assert verify_partition(s3_server.store(), None, cfg, WINDOW).ok


def test_a_black_holed_s3_endpoint_fails_the_bucket_check_within_15_seconds(connections, metrics):
    import time

    from devtools.faults import BlackHole

    hole = BlackHole().start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(f"http://127.0.0.1:{hole.port}"))
            started = time.monotonic()
            with pytest.raises(ExportError) as failure:
                run_export(TableExport.model_validate(entry("doc.metrics", "some-bucket")), WINDOW)
            elapsed = time.monotonic() - started
    finally:
        hole.stop()
    assert elapsed < 15, elapsed
    assert "TargetError: S3 endpoint http://127.0.0.1:" in str(failure.value)
    assert "accepted the connection but did not answer" in str(failure.value)
    assert failure.value.retryable is True


@pytest.mark.parametrize("status", [404, 200, 403])
def test_a_web_server_that_is_not_s3_is_told_from_a_missing_bucket(connections, metrics, status):
    from devtools.faults import NotS3

    server = NotS3(status).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection(f"http://127.0.0.1:{server.port}"))
            with pytest.raises(ExportError) as failure:
                run_export(TableExport.model_validate(entry("doc.metrics", "some-bucket")), WINDOW)
    finally:
        server.stop()
    assert "does not exist" not in str(failure.value)
    assert f"TargetUnusable: the endpoint http://127.0.0.1:{server.port}" in str(failure.value)
    assert "does not answer like an S3 server" in str(failure.value)
    assert failure.value.retryable is False
