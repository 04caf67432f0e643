"""The export operators: one table's rows of the run's data interval to S3.

Each operator resolves its connections once (``airflow/connections.py``), hands them to the core,
and turns the core's result into XCom and an Asset event. A failure that no retry can heal (a
missing table or column, a wrong column type, credentials CrateDB cannot use) fails the task at
once with :class:`AirflowFailException`; anything else (network, S3, database unavailable) keeps
the task's retries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import Asset, BaseOperator

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.layout import dataset_uri
from cratedb_airflow_export.windows import Window

if TYPE_CHECKING:
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.engines import ExportResult
    from cratedb_airflow_export.export import RunInfo

T = TypeVar("T")


def export_asset(cfg: TableExport) -> Asset:
    """The Asset a table's export updates: its export location (the folder of its day folders)."""
    return Asset(uri=dataset_uri(cfg))


def run_info(context: Mapping[str, Any]) -> RunInfo:
    """The task instance's dag id, run id and try number."""
    from cratedb_airflow_export.export import RunInfo

    ti = context.get("ti")
    return RunInfo() if ti is None else RunInfo(dag_id=ti.dag_id, run_id=ti.run_id, try_number=ti.try_number)


class _TableTask(BaseOperator):
    """What the export operators share: the table entry, and running the core with the table's
    connections, resolved once per task."""

    template_fields: Sequence[str] = ()

    def __init__(self, *, export: TableExport | Mapping[str, Any], **kwargs: Any) -> None:
        self.export = export if isinstance(export, TableExport) else TableExport.model_validate(export)
        super().__init__(**kwargs)
        self._connections: Connections | None = None

    def _run(self, what: str, window: Window, call: Callable[[Connections], T]) -> T:
        """Resolve the connections and run ``call`` with them. An :class:`ExportError` that a retry
        cannot heal becomes :class:`AirflowFailException` (no retries), with the same message."""
        from airflow.sdk.exceptions import AirflowFailException

        from cratedb_airflow_export.airflow.connections import resolve
        from cratedb_airflow_export.errors import failures_named
        from cratedb_airflow_export.session import describe

        try:
            with failures_named(describe(what, self.export, window)):
                self._connections = resolve(self.export)
            return call(self._connections)
        except ExportError as exc:
            if not exc.retryable:
                raise AirflowFailException(f"{exc} (not retried: this cannot heal by itself)") from None
            raise


class CrateDBExportOperator(_TableTask):
    """Export ``export.table``'s rows with ``data_interval_start <= timestamp_column < data_interval_end``.

    Nothing is templated: the window comes from the run's data interval, and credentials are
    resolved at run time from Airflow connections, so no secret can end up in rendered fields.
    At most one instance of each table's task runs at a time (``max_active_tis_per_dag=1``), so
    two runs of the same table and interval can never interleave their writes.
    Emits an Asset event for the table's export location (extra: interval, rows, manifest URI),
    returns (to XCom) the table, interval, target, manifest, row counts and objects, and reports
    OpenLineage datasets (the source table in, the partition out).
    """

    ui_color = "#19c0ea"

    def __init__(self, *, export: TableExport | Mapping[str, Any], **kwargs: Any) -> None:
        cfg = export if isinstance(export, TableExport) else TableExport.model_validate(export)
        self.asset = export_asset(cfg)
        kwargs.setdefault("outlets", [self.asset])
        kwargs.setdefault("max_active_tis_per_dag", 1)
        super().__init__(export=cfg, **kwargs)
        self._result: ExportResult | None = None

    def execute(self, context: Any) -> dict[str, Any]:
        from cratedb_airflow_export.export import run_export  # heavy (pyarrow, boto3): not at parse time

        window = Window.from_context(context)
        result = self._run("export", window, lambda c: run_export(self.export, window, run_info(context), c))
        return self._announce(context, result)

    def _announce(self, context: Any, result: ExportResult) -> dict[str, Any]:
        self._result = result
        summary = result.as_dict()
        context["outlet_events"][self.asset].extra = {
            "table": summary["table"],
            "interval": summary["interval"],
            "rows": summary["rows"],
            "partition": summary["target"],
            "manifest": summary["manifest"],
        }
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by Airflow's OpenLineage provider after a successful export."""
        from cratedb_airflow_export.airflow.lineage import export_lineage

        if self._result is None or self._connections is None:
            return None
        return export_lineage(self.export, self._connections.source, self._result)


class CrateDBExportSliceOperator(_TableTask):
    """Export one slice of the run's day into the run's staging folder (``slices`` > 1).

    Mapped over ``slice_index``; the table's :class:`CrateDBPublishSlicesOperator` publishes all
    slices as one partition. Returns the slice's row count and staged objects.
    """

    ui_color = "#8fd3ea"

    def __init__(self, *, export: TableExport | Mapping[str, Any], slice_index: int, **kwargs: Any) -> None:
        super().__init__(export=export, **kwargs)
        self.slice_index = slice_index

    def execute(self, context: Any) -> dict[str, Any]:
        from cratedb_airflow_export.export import export_slice

        window = Window.from_context(context)
        return self._run(
            f"export of slice {self.slice_index}",
            window,
            lambda c: export_slice(self.export, window, self.slice_index, run_info(context), c),
        )


class CrateDBPublishSlicesOperator(CrateDBExportOperator):
    """Verify the slices of a table's day together (count(*) over the whole day) and publish them
    as one partition, with the manifest, ``_SUCCESS``, the Asset event and lineage."""

    template_fields: Sequence[str] = ("slice_results",)

    def __init__(self, *, slice_results: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slice_results = slice_results

    def execute(self, context: Any) -> dict[str, Any]:
        from cratedb_airflow_export.export import publish_slices

        window = Window.from_context(context)
        result = self._run(
            "publish",
            window,
            lambda c: publish_slices(self.export, window, list(self.slice_results), run_info(context), c),
        )
        return self._announce(context, result)
