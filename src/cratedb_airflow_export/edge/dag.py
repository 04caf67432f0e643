"""The ``cratedb_table_export`` DAG: one export task per configured table, daily, UTC.

The DAG file under ``dags/`` only calls :func:`build_dag`; configuration errors raise here and
become DAG import errors naming the entry and the field.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, Param

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.edge.operators import (
    CrateDBExportOperator,
    CrateDBExportSliceOperator,
    CrateDBPublishSlicesOperator,
)
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.loading import DagSettings, load_tables

DAG_ID = "cratedb_table_export"

DOC = """\
### CrateDB → S3 daily export

Each run exports, for every configured table, the rows of its data interval
`[data_interval_start, data_interval_end)`: one whole UTC day, `day <= timestamp_column < day + 1`.
A run for day D fires at D+1 00:00 UTC. Tasks are independent and run in parallel, bounded by
the `{pool}` pool. Each task returns (XCom) the row count and the objects written.

| task | table | engine | target (one folder per day) |
|---|---|---|---|
{rows}

**Re-export chosen days** (Trigger DAG w/ config): set `day` (and `to` for a range) and, to limit
the run, `tables`. Each day becomes its own partition, replaced by the usual publish protocol.
Left empty, a manual run exports its data interval: for logical date D, the day before D.
Scheduled runs ignore these fields.

Configuration: `include/table_exports.py` or the YAML file named by `CRATEDB_EXPORT_CONFIG`.
Dry run: `cratedb-export plan --date YYYY-MM-DD`; without Airflow: `cratedb-export run --date YYYY-MM-DD`.
"""


class SharedList(list[str]):
    """A list every task shares instead of copying. Airflow deep-copies the DAG's params into each
    task; the form's list of table names would make building the DAG quadratic in the tables (500
    tables: 250,000 names copied). Nothing changes a param's schema after the DAG is built."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedList:
        return self


def trigger_params(tables: list[TableExport]) -> dict[str, Param]:
    """The Trigger form: which days and which tables a manual run exports."""
    names = SharedList(t.qualified_name for t in tables)
    return {
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day",
            description="The (first) UTC day to export, YYYY-MM-DD. Empty: the run's data interval "
            "(a manual run with logical date D exports the day before D).",
        ),
        "to": Param(
            None,
            type=["null", "string"],
            format="date",
            title="To (last day, optional)",
            description="With a day: the last day of the range to export, inclusive (at most 366 days).",
        ),
        "tables": Param(
            [],
            type="array",
            items={"type": "string", "enum": names},
            uniqueItems=True,
            title="Tables",
            description="Only these tables (empty: all configured tables).",
        ),
    }


def _doc(tables: list[TableExport], pool: str) -> str:
    rows = "\n".join(
        f"| `{t.task_id}` | `{t.qualified_name}` | {t.engine} | "
        f"`{partition(t, datetime(2024, 1, 4).date()).uri.replace('2024-01-04', 'YYYY-MM-DD')}` |"
        for t in tables
    )
    return DOC.format(rows=rows, pool=pool)


def build_dag(
    tables: list[TableExport] | None = None,
    *,
    tables_file: Path | None = None,
    settings: DagSettings | None = None,
    dag_id: str = DAG_ID,
) -> DAG:
    """Build the export DAG from ``tables`` (or ``$CRATEDB_EXPORT_CONFIG`` / ``tables_file``)."""
    tables = tables if tables is not None else load_tables(tables_file)
    settings = settings or DagSettings.from_env()
    with DAG(
        dag_id=dag_id,
        description="Export each configured CrateDB table's rows of the previous UTC day to S3",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=settings.start,
        catchup=settings.catchup,
        max_active_runs=settings.max_active_runs,
        tags=["cratedb", "export", "s3"],
        doc_md=_doc(tables, settings.pool),
        params=trigger_params(tables),
        default_args={
            "owner": "data-engineering",
            "retries": settings.retries,
            "retry_delay": timedelta(minutes=settings.retry_delay_minutes),
            "pool": settings.pool,
        },
    ) as dag:
        for table in tables:
            bound = {"execution_timeout": timedelta(minutes=table.timeout_minutes)}
            if table.slices == 1:
                CrateDBExportOperator(task_id=table.task_id, export=table, **bound)
                continue
            slices = CrateDBExportSliceOperator.partial(
                task_id=f"{table.task_id}.slices", export=table, **bound
            ).expand(slice_index=list(range(table.slices)))
            CrateDBPublishSlicesOperator(task_id=table.task_id, export=table, slice_results=slices.output, **bound)
    return dag
