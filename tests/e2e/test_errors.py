"""Bad input against real servers: a clear error naming the table and the cause, nothing written."""

from __future__ import annotations

from datetime import date

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.windows import Window
from tests.helpers import make_dag, partition_keys, read_objects, run_dag, task_states, task_tries

pytestmark = pytest.mark.e2e
WINDOW = Window.for_day(date(2024, 1, 4))


def entry(bucket: str, **overrides: object) -> dict[str, object]:
    base = {"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{bucket}/x"}
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"table": "doc.nosuchtable"}, "table doc.nosuchtable does not exist"),
        (
            {"timestamp_column": "ts"},
            "timestamp_column 'ts' does not exist in doc.metrics (columns: hash_id, timestamp",
        ),
        ({"timestamp_column": "name"}, "timestamp_column 'name' of doc.metrics is text, not a timestamp"),
        ({"columns": ["hash_id", "nope"]}, "columns ['nope'] do not exist in doc.metrics"),
    ],
)
@pytest.mark.parametrize("engine", ["stream", "copy"])
@pytest.mark.cratedb_dialect
def test_bad_table_or_column_fails_before_writing(connections, metrics, s3_server, bucket, overrides, message, engine):
    cfg = TableExport.model_validate(entry(bucket, engine=engine, **overrides))
    with pytest.raises(ExportError) as failure:
        run_export(cfg, WINDOW)
    text = str(failure.value)
    assert text.startswith(f"export of {cfg.qualified_name} for [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00)")
    assert message in text
    assert read_objects(s3_server, bucket) == {}


def test_missing_bucket_fails_fast(connections, metrics, lake):
    """On each store: named, and not retried (it cannot heal by itself)."""
    target = f"{lake.scheme}://no-such-bucket-here/x"
    cfg = TableExport.model_validate(entry("-", target=target))
    kind = "container" if lake.kind == "azure" else "bucket"
    with pytest.raises(
        ExportError, match=rf"doc\.metrics .* failed: TargetUnusable: {kind} 'no-such-bucket-here' does not exist"
    ) as failure:
        run_export(cfg, WINDOW)
    assert not failure.value.retryable


def test_unreachable_database(monkeypatch, connections, s3_server, bucket):
    from devtools.devstack import free_port

    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", f"postgresql://u:p@127.0.0.1:{free_port()}/doc")
    cfg = TableExport.model_validate(entry(bucket))
    with pytest.raises(ExportError, match=r"doc\.metrics .* failed: OperationalError: .*127\.0\.0\.1.*refused"):
        run_export(cfg, WINDOW)
    assert read_objects(s3_server, bucket) == {}


def test_an_unreachable_endpoint(monkeypatch, connections, metrics, lake):
    """On each store: named, and retried (an outage can heal)."""
    from devtools.devstack import free_port

    lake.point_at(monkeypatch, free_port())
    cfg = TableExport.model_validate(entry("-", target=lake.target("x")))
    name = {"s3": "S3", "azure": "Azure", "gcs": "GCS"}[lake.kind]
    with pytest.raises(
        ExportError, match=rf"doc\.metrics .* failed: TargetError: {name} endpoint .*unreachable"
    ) as failure:
        run_export(cfg, WINDOW)
    assert failure.value.retryable


def test_no_credentials_at_all(monkeypatch, connections, metrics, bucket):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT")
    cfg = TableExport.model_validate(entry(bucket, aws_conn_id="aws_missing"))
    with pytest.raises(ExportError, match="no Airflow connection 'aws_missing' and no ACCESS_KEY_ID/SECRET_ACCESS_KEY"):
        run_export(cfg, WINDOW)


@pytest.mark.cratedb_dialect
def test_failed_task_in_airflow_leaves_nothing_and_other_tables_still_export(
    airflow_db, connections, metrics, s3_server, bucket
):
    dag = make_dag(
        "e2e_one_bad_table",
        [
            entry(bucket, table="doc.nosuchtable", reader="cursor"),
            entry(bucket, target=f"s3://{bucket}/good", reader="cursor"),  # CrateDB's read path
        ],
    )
    dag_run = run_dag(dag, date(2024, 1, 4))
    assert task_states(dag_run) == {"export_doc.nosuchtable": "failed", "export_doc.metrics": "success"}
    assert task_tries(dag_run)["export_doc.nosuchtable"] == 1  # cannot heal: no retry (CRATEDB_EXPORT_RETRIES=1)
    assert list(read_objects(s3_server, bucket)) == partition_keys(
        "good/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz"
    )


def test_s3_outage_is_retried_and_the_retry_publishes_the_partition(airflow_db, connections, metrics):
    """A transient failure keeps the task's retries: the S3 server is down for the first try and
    back (started by the retry callback) for the second, which publishes the exact partition."""
    from devtools.devstack import LocalS3

    s3 = LocalS3()  # not started yet: the endpoint refuses connections
    outage_bucket = "outage-bucket"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", s3.airflow_conn_uri())
        dag = make_dag("e2e_s3_outage", [entry(outage_bucket)])

        def s3_is_back(context):
            s3.start()
            s3.client().create_bucket(Bucket=outage_bucket)

        dag.get_task("export_doc.metrics").on_retry_callback = [s3_is_back]
        try:
            dag_run = run_dag(dag, date(2024, 1, 4))
            assert task_states(dag_run) == {"export_doc.metrics": "success"}
            assert task_tries(dag_run) == {"export_doc.metrics": 2}
            assert list(read_objects(s3, outage_bucket)) == partition_keys(
                "x/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz"
            )
        finally:
            s3.stop()
