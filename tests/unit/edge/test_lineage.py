"""OpenLineage: an export's run events name the source table as input and the S3 partition as output.

Runs the DAG through ``airflow dags test`` in its own process with Airflow's OpenLineage provider
enabled and its file transport (one JSON event per line), the way a deployment configures it."""

from __future__ import annotations


def test_cratedb_sources_are_named_as_cratedb_tables():
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import SourceParams
    from cratedb_airflow_export.edge.lineage import source_dataset_id

    cfg = TableExport.model_validate({"table": "metrics", "timestamp_column": "ts", "target": "s3://lake/x"})
    params = SourceParams(host="my-cluster.cratedb.net", port=5432, dbname="doc")
    assert source_dataset_id(cfg, params, "CrateDB") == ("crate://my-cluster.cratedb.net:5432", "doc.metrics")
    assert source_dataset_id(cfg, params, "PostgreSQL") == ("postgres://my-cluster.cratedb.net:5432", "doc.doc.metrics")
