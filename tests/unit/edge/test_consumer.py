"""``cratedb-export verify`` and the example consumer, against real exports in the local S3 server."""

from __future__ import annotations

from tests.helpers import REPO


def test_consumer_dag_is_scheduled_on_the_export_assets():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    consumer = bag.dags["cratedb_export_consumer"]
    assert [a.uri for a in consumer.timetable.asset_condition.objects] == ["s3://crate-astro-tutorial/metrics"]
    from cratedb_airflow_export.edge.operators import per_event_partitions

    # Airflow 3.3+: one run per day announced (partition_key); 3.2: a run per event
    assert type(consumer.timetable).__name__ == (
        "PartitionedAssetTimetable" if per_event_partitions() else "AssetTriggeredTimetable"
    )
    export = bag.dags["cratedb_table_export"]
    asset, alias = export.tasks[0].outlets  # the alias announces further partitions of the same Asset
    assert (asset.uri, alias.name) == (
        "s3://crate-astro-tutorial/metrics",
        "cratedb-export:s3://crate-astro-tutorial/metrics",
    )
