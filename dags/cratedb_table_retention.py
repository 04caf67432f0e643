"""Retention (Airflow DAG ``cratedb_table_retention``): delete source rows older than each table's
``retain_days``, only where the exported archive verifies.

All logic lives in the ``cratedb_airflow_export`` package; this file points it at the same table
list as the export DAG. Tables without ``retain_days`` are never touched.
"""

from pathlib import Path

from cratedb_airflow_export.edge.retention import build_retention_dag

dag = build_retention_dag(tables_file=Path(__file__).resolve().parent.parent / "include" / "table_exports.py")
