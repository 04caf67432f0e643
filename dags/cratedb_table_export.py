"""Daily CrateDB -> S3 export (Airflow DAG ``cratedb_table_export``).

All logic lives in the ``cratedb_airflow_export`` package; this file only points it at the
project's table list. Set ``CRATEDB_EXPORT_CONFIG`` to a YAML file to configure from outside.
"""

from pathlib import Path

from cratedb_airflow_export.edge.dag import build_dag

dag = build_dag(tables_file=Path(__file__).resolve().parent.parent / "include" / "table_exports.py")
