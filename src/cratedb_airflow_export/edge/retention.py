"""The ``cratedb_table_retention`` DAG: each day, delete from the source what is older than each
table's ``retain_days`` and safely archived (``retention.py``), one task per table that sets it.

A DAG of its own rather than a task in the export DAG: deleting is the one step that loses data if it
goes wrong, so it can be paused (or never deployed) without stopping the exports, and it fails
without marking an export run failed; and it judges each day by the archive in the bucket, whichever
run or command wrote it, not by the export task of the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, CronDataIntervalTimetable

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.edge.failures import airflow_failures
from cratedb_airflow_export.edge.operators import run_info
from cratedb_airflow_export.loading import DagSettings, load_tables

RETENTION_DAG_ID = "cratedb_table_retention"

DOC = """\
### Retention: keep CrateDB small without losing history

The run of day D deletes, for every table with `retain_days: N`, the source rows of the days before
D - N + 1 (the N days up to D stay). Each CrateDB partition (or, for an unpartitioned table, each
day) is deleted only when every day it holds rows of has a complete exported partition whose
objects verify against its manifest and whose row count and change marker equal the source's right
before the `DELETE`; otherwise nothing of it is deleted and the task fails naming the day and why
(what did check out is deleted). `_PURGED.json` in the day's partition records each deletion.

| task | table | keeps |
|---|---|---|
{rows}

Dry run with the same checks: `cratedb-export purge --table T --before YYYY-MM-DD --dry-run`.
Pause this DAG to stop all deletion; the exports go on.
"""


class CrateDBRetentionOperator(BaseOperator):
    """Purge ``export.table``'s days before the run's day minus ``retain_days`` that are safely
    archived. Fails (no retries: the next run checks again) when anything was refused; returns (XCom)
    each partition or day with its state."""

    template_fields: Sequence[str] = ()
    ui_color = "#e76f51"

    def __init__(self, *, export: TableExport | Mapping[str, Any], **kwargs: Any) -> None:
        self.export = export if isinstance(export, TableExport) else TableExport.model_validate(export)
        if self.export.retain_days is None:
            raise ValueError(f"{self.export.qualified_name} sets no retain_days")
        kwargs.setdefault("max_active_tis_per_dag", 1)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> dict[str, Any]:
        from cratedb_airflow_export.edge.resolve import resolve
        from cratedb_airflow_export.errors import failures_named
        from cratedb_airflow_export.retention import cutoff, purge, refusals
        from cratedb_airflow_export.windows import Window

        cfg, days = self.export, self.export.retain_days or 0
        before = cutoff(Window.from_context(context).day, days)
        self.log.info("%s: keeping %d days, purging archived days before %s", cfg.qualified_name, days, before)
        with airflow_failures(), failures_named(f"retention of {cfg.qualified_name} before {before}"):
            outcomes = purge(cfg, before, run=run_info(context), connections=resolve(cfg))
            for outcome in outcomes:
                self.log.info("%s", outcome.describe(cfg.qualified_name))
            refused = refusals(cfg, outcomes)
            if refused is not None:
                raise refused
        return {"table": cfg.qualified_name, "before": before.isoformat(), "outcomes": [o.as_dict() for o in outcomes]}


def build_retention_dag(
    tables: list[TableExport] | None = None,
    *,
    tables_file: Path | None = None,
    settings: DagSettings | None = None,
    dag_id: str = RETENTION_DAG_ID,
) -> DAG:
    """One purge task per table with ``retain_days``, daily at 00:00 UTC, one run at a time."""
    tables = [t for t in (tables if tables is not None else load_tables(tables_file)) if t.retain_days is not None]
    settings = settings or DagSettings.from_env()
    rows = "\n".join(f"| `purge_{t.qualified_name}` | `{t.qualified_name}` | {t.retain_days} days |" for t in tables)
    with DAG(
        dag_id=dag_id,
        description="Delete source rows older than each table's retain_days, only where the archive verifies",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
        start_date=settings.start,
        catchup=False,  # each run purges every earlier day that qualifies: nothing to catch up
        max_active_runs=1,
        tags=["cratedb", "retention", "s3"],
        doc_md=DOC.format(rows=rows or "| (none) | no table sets `retain_days` | |"),
        default_args={"owner": "data-engineering", "retries": 0, "retry_delay": timedelta(minutes=5)},
    ) as dag:
        for table in tables:
            CrateDBRetentionOperator(
                task_id=f"purge_{table.qualified_name}",
                export=table,
                execution_timeout=timedelta(minutes=table.timeout_minutes),
            )
    return dag
