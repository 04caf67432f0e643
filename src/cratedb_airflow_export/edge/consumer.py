"""An example downstream DAG: scheduled on the export Assets, it reads each new partition's manifest.

Use it as a template: a DAG that processes a table's day as soon as its export is complete,
reading the exact object list from ``_manifest.json`` instead of listing the folder.

On Airflow 3.3+ every export event carries its day as ``partition_key`` (``YYYY-MM-DD``), and the
DAG is scheduled with ``PartitionedAssetTimetable``: one run per day, whose ``partition_key`` is
that day, whatever order the days arrive in (a backfill, a re-export). On 3.2, where an event
carries no key of its own, it runs on every event (``AssetAny``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, AssetAny, PartitionedAssetTimetable, task

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.edge.operators import export_asset, partition_of, per_event_partitions
from cratedb_airflow_export.loading import load_tables
from cratedb_airflow_export.manifest import Manifest, read_manifest
from cratedb_airflow_export.storage import split_object_uri

log = logging.getLogger(__name__)
CONSUMER_DAG_ID = "cratedb_export_consumer"


DEFAULT_CONN_IDS = {"s3": "aws_default", "az": "wasb_default", "gs": "google_cloud_default"}


def manifest_at(manifest_uri: str, conn_id: str | None = None) -> Manifest:
    """The manifest at ``manifest_uri`` (``s3://``, ``az://`` or ``gs://``), read with the store's
    Airflow connection ``conn_id`` (default: the store's default connection)."""
    from cratedb_airflow_export.edge.resolve import store_of  # the SDKs: at run time, not at parse time

    root, key = split_object_uri(manifest_uri)
    store = store_of(root.scheme, conn_id or DEFAULT_CONN_IDS[root.scheme])
    return read_manifest(store, root.bucket, key)


def summarize(manifest: Manifest) -> dict[str, Any]:
    return {
        "table": manifest.table,
        "interval": manifest.interval,
        "rows": manifest.rows,
        "objects": [o.key for o in manifest.objects],
        "run_id": manifest.run_id,
    }


def build_consumer_dag(
    tables: list[TableExport] | None = None, *, tables_file: Path | None = None, dag_id: str = CONSUMER_DAG_ID
) -> DAG:
    tables = tables if tables is not None else load_tables(tables_file)
    conn_of = {export_asset(t).uri: t.store_conn_id for t in tables}
    assets = AssetAny(*(export_asset(t) for t in tables))
    partitioned = per_event_partitions()
    with DAG(
        dag_id=dag_id,
        description="Example consumer: runs when a CrateDB export completes and reads its manifest",
        schedule=PartitionedAssetTimetable(assets=assets) if partitioned else assets,
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        tags=["cratedb", "export", "example"],
        doc_md=__doc__,
        default_args={"owner": "data-engineering"},
    ) as dag:

        @task
        def read_manifests(**context: Any) -> list[dict[str, Any]]:
            day = context["dag_run"].partition_key  # None unless partitioned
            summaries = []
            for asset, events in context["triggering_asset_events"].items():
                for event in events:
                    if day is not None and event.partition_key != day:
                        continue
                    extra = partition_of(event.extra, event.partition_key)
                    manifest = manifest_at(extra["manifest"], conn_of.get(asset.uri))
                    log.info(
                        "%s %s: %d rows in %d object(s)",
                        manifest.table,
                        manifest.interval["start"][:10],
                        manifest.rows,
                        len(manifest.objects),
                    )
                    summaries.append(summarize(manifest))
            return summaries

        read_manifests()
    return dag
