"""Example downstream DAG (``cratedb_export_consumer``): runs when an export Asset is updated and
reads the new partition's ``_manifest.json``. Delete this file if you do not need it."""

from pathlib import Path

from cratedb_airflow_export.edge.consumer import build_consumer_dag

dag = build_consumer_dag(tables_file=Path(__file__).resolve().parent.parent / "include" / "table_exports.py")
