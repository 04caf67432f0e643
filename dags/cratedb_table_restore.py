"""Restore exported days into CrateDB (Airflow DAG ``cratedb_table_restore``, triggered by hand).

All logic lives in the ``cratedb_airflow_export`` package; this file points it at the same table
list as the export DAG.
"""

from pathlib import Path

from cratedb_airflow_export.edge.restore import build_restore_dag

dag = build_restore_dag(tables_file=Path(__file__).resolve().parent.parent / "include" / "table_exports.py")
