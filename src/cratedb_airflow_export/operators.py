"""CrateDBExportOperator: export one table's rows of the run's data interval to S3."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.windows import Window


class CrateDBExportOperator(BaseOperator):
    """Export ``export.table``'s rows with ``data_interval_start <= timestamp_column < data_interval_end``.

    Nothing is templated: the window comes from the run's data interval, and credentials are
    resolved at run time from Airflow connections, so no secret can end up in rendered fields.
    Returns (to XCom) the table, interval, target, row count and the objects written.
    """

    template_fields: Sequence[str] = ()
    ui_color = "#19c0ea"

    def __init__(self, *, export: TableExport | Mapping[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export = export if isinstance(export, TableExport) else TableExport.model_validate(export)

    def execute(self, context: Any) -> dict[str, Any]:
        window = Window.from_context(context)
        return run_export(self.export, window).as_dict()
