"""The ``cratedb_table_restore`` DAG: a manually triggered restore, its choices in the Trigger form
(table, day or range, target table, replace, method), the same core as ``cratedb-export restore``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param

from cratedb_airflow_export.config import TableExport, qualify
from cratedb_airflow_export.edge.failures import airflow_failures
from cratedb_airflow_export.errors import PermanentExportError
from cratedb_airflow_export.loading import load_tables

RESTORE_DAG_ID = "cratedb_table_restore"

DOC = """\
### Restore exported days into CrateDB

Trigger with config: the **table** (as configured for the export), the **day** (and **to** for a
range), optionally **into** another table with the same columns, **replace** to delete the
target's rows of each day first (otherwise a target that has rows in the day is refused), and the
**method**: `copy` lets CrateDB read the files (partitions of the `copy` engine), `worker` reads and
inserts them here (any format), `auto` picks `copy` where it applies. Only complete partitions
(`_SUCCESS` + `_manifest.json`) are restored; afterwards `count(*)` over each day in the target must
equal the manifest's rows.
"""


class CrateDBRestoreOperator(BaseOperator):
    """Restore the partitions the run's params name; returns one summary per day (XCom)."""

    template_fields: Sequence[str] = ()
    ui_color = "#f4a261"

    def __init__(self, *, tables: list[TableExport], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tables = {t.qualified_name: t for t in tables}

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from cratedb_airflow_export.edge.resolve import resolve
        from cratedb_airflow_export.errors import failures_named
        from cratedb_airflow_export.restore import restore
        from cratedb_airflow_export.windows import Window, days_between, parse_day

        params = context["params"]
        name = str(params["table"])
        cfg = self.tables.get(qualify(name))
        with airflow_failures():
            if cfg is None:
                raise PermanentExportError(f"table {name!r} is not configured for export")
            with failures_named(f"restore of {cfg.qualified_name}"):
                first = parse_day(params["day"], "day")
                days = days_between(first, parse_day(params["to"], "to") if params.get("to") else None)
                connections = resolve(cfg)
            results = restore(
                cfg,
                [Window.for_day(day) for day in days],
                into=params.get("into") or None,
                replace=bool(params.get("replace")),
                method=params.get("method") or "auto",
                connections=connections,
            )
        return [result.as_dict() for result in results]


def build_restore_dag(
    tables: list[TableExport] | None = None, *, tables_file: Path | None = None, dag_id: str = RESTORE_DAG_ID
) -> DAG:
    tables = tables if tables is not None else load_tables(tables_file)
    names = [t.qualified_name for t in tables]
    with DAG(
        dag_id=dag_id,
        description="Restore exported days of a table back into CrateDB (triggered by hand)",
        schedule=None,
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        tags=["cratedb", "restore", "s3"],
        doc_md=DOC,
        default_args={"owner": "data-engineering", "retries": 0},
        params={
            "table": Param(names[0], type="string", enum=names, title="Table", description="The exported table."),
            "day": Param(None, type=["null", "string"], format="date", title="Day", description="YYYY-MM-DD"),
            "to": Param(None, type=["null", "string"], format="date", title="To (last day, optional)"),
            "into": Param(
                None, type=["null", "string"], title="Into (optional)", description="Another table, same columns."
            ),
            "replace": Param(False, type="boolean", title="Replace the target's rows of each day"),
            "method": Param("auto", type="string", enum=["auto", "copy", "worker"], title="Method"),
        },
    ) as dag:
        CrateDBRestoreOperator(task_id="restore", tables=tables)
    return dag
