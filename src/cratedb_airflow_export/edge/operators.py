"""The export operators: one table's rows of the run's data interval (or of the days a person
chose in the Trigger form) to S3.

Each operator resolves its connections once (``edge/resolve.py``), hands them to the core,
and turns the core's results into XCom and Asset events (one per partition published). A failure
that no retry can heal (a missing table or column, a wrong column type, credentials CrateDB cannot
use) fails the task at once with :class:`AirflowFailException`; anything else (network, S3,
database unavailable) keeps the task's retries.

A manual run may carry the Trigger form's params: ``day`` (and ``to``, the last day) export exactly
those days, each its own partition; ``tables`` limits the run to those tables (the others skip).
Scheduled and backfill runs ignore the params and export their data interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from airflow.sdk import Asset, AssetAlias, BaseOperator

from cratedb_airflow_export.config import TableExport, qualify
from cratedb_airflow_export.edge.failures import airflow_failures
from cratedb_airflow_export.errors import PermanentExportError
from cratedb_airflow_export.layout import dataset_uri
from cratedb_airflow_export.windows import Window, days_between, parse_day

if TYPE_CHECKING:
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.engines import ExportResult
    from cratedb_airflow_export.export import RunInfo
    from cratedb_airflow_export.reconcile import Recount

T = TypeVar("T")


def export_asset(cfg: TableExport) -> Asset:
    """The Asset a table's export updates: its export location (the folder of its day folders)."""
    return Asset(uri=dataset_uri(cfg))


def export_alias(cfg: TableExport) -> AssetAlias:
    """The alias through which a task emits one Asset event per further partition it publishes
    (several days of a manual run)."""
    return AssetAlias(name=f"cratedb-export:{dataset_uri(cfg)}")


def per_event_partitions() -> bool:
    """Whether this Airflow gives each Asset event a task emits its own ``partition_key``
    (``outlet_events[asset].add_partitions``, Airflow 3.3+). On 3.2 an event carries its run's
    partition key only, and an export run has none."""
    try:
        from airflow.sdk.execution_time.context import OutletEventAccessor
    except ImportError:  # pragma: no cover - a layout this package was never installed with
        return False
    return hasattr(OutletEventAccessor, "add_partitions")


def event_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """An Asset event's extra for one published partition: what a consumer needs to read it."""
    extra = {key: summary[key] for key in ("table", "interval", "rows", "schema_changes")}
    return extra | {"partition": summary["target"], "manifest": summary["manifest"]}


def partitions_extra(days: Sequence[str], extras: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The extra shared by the events of a task that published several days on Airflow 3.3+ (an
    Asset's events of one task share one extra there): each day's own extra under its
    partition key."""
    return {"table": extras[0]["table"], "partitions": dict(zip(days, extras, strict=True))}


def partition_of(extra: Mapping[str, Any], partition_key: str | None) -> Mapping[str, Any]:
    """The extra of the one partition an Asset event announces (:func:`event_extra`), whichever
    form it came in: its own, or under its partition key in a several-day task's shared extra."""
    if "partitions" not in extra:
        return extra
    if partition_key is None or partition_key not in extra["partitions"]:
        raise KeyError(f"the event's partition_key {partition_key!r} is none of {sorted(extra['partitions'])}")
    return extra["partitions"][partition_key]  # type: ignore[no-any-return]


SCHEDULED_RUN_TYPES = frozenset({"scheduled", "backfill"})


@dataclass(frozen=True)
class Request:
    """What a run asks of a table task: the days (None: the run's data interval) and the tables
    (None: all)."""

    days: list[date] | None = None
    tables: frozenset[str] | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Request:
        run_type = getattr(context.get("dag_run"), "run_type", None)
        if str(getattr(run_type, "value", run_type)) in SCHEDULED_RUN_TYPES:
            return cls()  # scheduled and backfill runs export their data interval, whatever the params
        params = context.get("params") or {}
        day, last, tables = params.get("day"), params.get("to"), params.get("tables")
        if last and not day:
            raise PermanentExportError("the Trigger form's 'to' needs a 'day' to start from")
        days = days_between(parse_day(day, "day"), parse_day(last, "to") if last else None) if day else None
        names = frozenset(qualify(t) for t in tables) if tables else None
        return cls(days, names)

    def skips(self, cfg: TableExport) -> bool:
        return self.tables is not None and cfg.qualified_name not in self.tables

    def windows(self, context: Mapping[str, Any]) -> list[Window]:
        if self.days is None:
            return [Window.from_context(context)]
        return [Window.for_day(day) for day in self.days]


def run_info(context: Mapping[str, Any]) -> RunInfo:
    """The task instance's dag id, run id and try number."""
    from cratedb_airflow_export.export import RunInfo

    ti = context.get("ti")
    return RunInfo() if ti is None else RunInfo(dag_id=ti.dag_id, run_id=ti.run_id, try_number=ti.try_number)


class _TableTask(BaseOperator):
    """What the export operators share: the table entry, the run's request, waiting for late rows,
    and running the core with the table's connections, resolved once per task.

    ``execute`` skips a table the run did not ask for, and a run that exports its data interval
    waits (deferred: no worker slot held) until the day's end plus the table's ``lateness``; then
    :meth:`export` runs, directly or when the trigger fires (``execute_ready``).
    """

    template_fields: Sequence[str] = ()

    def __init__(self, *, export: TableExport | Mapping[str, Any], **kwargs: Any) -> None:
        self.export = export if isinstance(export, TableExport) else TableExport.model_validate(export)
        super().__init__(**kwargs)
        self._connections: Connections | None = None

    def execute(self, context: Any) -> Any:
        request, windows = self._request(context)
        if request.days is None and self.export.lateness:
            ready = windows[0].end + self.export.lateness
            if datetime.now(timezone.utc) < ready:
                from airflow.providers.standard.triggers.temporal import DateTimeTrigger

                self.log.info(
                    "%s: rows of %s may arrive until %s (lateness %s): waiting",
                    self.export.qualified_name,
                    windows[0].day,
                    ready.isoformat(),
                    self.export.lateness,
                )
                self.defer(trigger=DateTimeTrigger(moment=ready), method_name="execute_ready")
        return self.export_windows(context, request, windows)

    def execute_ready(self, context: Any, event: Any = None) -> Any:
        """Resumes after waiting for late rows."""
        request, windows = self._request(context)
        return self.export_windows(context, request, windows)

    def export_windows(self, context: Any, request: Request, windows: list[Window]) -> Any:
        raise NotImplementedError

    def _request(self, context: Mapping[str, Any]) -> tuple[Request, list[Window]]:
        """The run's request and the windows this task exports; skips the task when the run asked
        for other tables."""
        from airflow.sdk.exceptions import AirflowSkipException

        request = Request.from_context(context)
        if request.skips(self.export):
            asked = ", ".join(sorted(request.tables or ()))
            raise AirflowSkipException(f"{self.export.qualified_name} is not among this run's tables: {asked}")
        return request, request.windows(context)

    def _run(self, what: str, window: Window, call: Callable[[Connections], T]) -> T:
        """Resolve the connections and run ``call`` with them. An :class:`ExportError` that a retry
        cannot heal becomes :class:`AirflowFailException` (no retries), with the same message."""
        from cratedb_airflow_export.attempt import describe
        from cratedb_airflow_export.edge.resolve import resolve
        from cratedb_airflow_export.errors import failures_named

        with airflow_failures():
            with failures_named(describe(what, self.export, window)):
                self._connections = resolve(self.export)
            return call(self._connections)


class CrateDBExportOperator(_TableTask):
    """Export ``export.table``'s rows with ``data_interval_start <= timestamp_column < data_interval_end``
    (or of each day a manual run asks for).

    Nothing is templated: the window comes from the run's data interval, and credentials are
    resolved at run time from Airflow connections, so no secret can end up in rendered fields.
    At most one instance of each table's task runs at a time (``max_active_tis_per_dag=1``), so
    two runs of the same table and interval can never interleave their writes.
    With ``reconcile_days``, a run exporting its data interval also recounts that many days before
    it and exports again each whose source count changed (late rows).
    Emits an Asset event for the table's export location per partition published (extra:
    interval, rows, manifest URI), returns (to XCom) the table, interval, target, manifest, row
    counts and objects (with ``partitions`` listing every one when there are several, and
    ``reconciled`` the recount), and reports OpenLineage datasets (the source table in, the
    partitions out).
    """

    ui_color = "#19c0ea"

    def __init__(self, *, export: TableExport | Mapping[str, Any], **kwargs: Any) -> None:
        cfg = export if isinstance(export, TableExport) else TableExport.model_validate(export)
        self.asset = export_asset(cfg)
        self.alias = export_alias(cfg)
        kwargs.setdefault("outlets", [self.asset, self.alias])
        kwargs.setdefault("max_active_tis_per_dag", 1)
        super().__init__(export=cfg, **kwargs)
        self._results: list[ExportResult] = []

    def export_windows(self, context: Any, request: Request, windows: list[Window]) -> dict[str, Any]:
        from cratedb_airflow_export.export import run_export  # heavy (pyarrow, boto3): not at parse time

        run = run_info(context)

        def export(connections: Connections) -> tuple[list[ExportResult], list[Recount]]:
            count = len(windows)
            results = [
                run_export(self.export, window, run, connections, position=(number, count))
                for number, window in enumerate(windows, 1)
            ]
            return results, self._reconcile(request, windows, run, connections)

        return self._announce(context, *self._run("export", windows[0], export))

    def _reconcile(
        self, request: Request, windows: list[Window], run: RunInfo, connections: Connections
    ) -> list[Recount]:
        """With ``reconcile_days``, for a run of its data interval: the days before it, recounted."""
        from cratedb_airflow_export.reconcile import reconcile

        if request.days is not None or not self.export.reconcile_days:
            return []
        day = windows[0].day
        days = [day - timedelta(days=back) for back in range(self.export.reconcile_days, 0, -1)]
        return reconcile(self.export, days, run, connections)

    def _announce(
        self, context: Any, results: list[ExportResult], recounts: list[Recount] | None = None
    ) -> dict[str, Any]:
        """XCom and Asset events: the first partition through the table's Asset, every further one
        (more days, re-exported days) through its alias (an event of the same Asset each)."""
        from cratedb_airflow_export.reconcile import summary

        again = [r.result for r in recounts or () if r.result is not None]
        self._results = [*results, *again]
        summaries = [result.as_dict() for result in self._results]
        events = context["outlet_events"]
        extras = [event_extra(partition) for partition in summaries]
        accessor = events[self.asset]
        if per_event_partitions():  # each event carries its day as partition_key
            days = [result.job.window.day.isoformat() for result in self._results]
            accessor.extra = extras[0] if len(extras) == 1 else partitions_extra(days, extras)
            accessor.add_partitions(days)
        else:  # Airflow 3.2: one event per partition, the first through the Asset, the others through its alias
            accessor.extra = extras[0]
            for extra in extras[1:]:
                events[self.alias].add(self.asset, extra=extra)
        value = summaries[0] if len(results) == 1 else {**summaries[0], "partitions": summaries[: len(results)]}
        return {**value, "reconciled": summary(recounts)} if recounts else value

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Called by Airflow's OpenLineage provider after a successful export."""
        from cratedb_airflow_export.edge.lineage import export_lineage

        if not self._results or self._connections is None:
            return None
        connections = self._connections
        return export_lineage(self.export, connections.database, connections.store, self._results)


class CrateDBExportSliceOperator(_TableTask):
    """Export one slice of the run's day (or of each day a manual run asks for) into the run's
    staging folder (``slices`` > 1).

    Mapped over ``slice_index``; the table's :class:`CrateDBPublishSlicesOperator` publishes all
    slices of a day as one partition. Returns, per day, the slice's row count and staged objects.
    """

    ui_color = "#8fd3ea"

    def __init__(self, *, export: TableExport | Mapping[str, Any], slice_index: int, **kwargs: Any) -> None:
        super().__init__(export=export, **kwargs)
        self.slice_index = slice_index

    def export_windows(self, context: Any, request: Request, windows: list[Window]) -> list[dict[str, Any]]:
        from cratedb_airflow_export.export import export_slice

        run = run_info(context)
        return self._run(
            f"export of slice {self.slice_index}",
            windows[0],
            lambda c: [export_slice(self.export, window, self.slice_index, run, c) for window in windows],
        )


class CrateDBPublishSlicesOperator(CrateDBExportOperator):
    """Verify the slices of each day together (count(*) over the whole day) and publish them as one
    partition, with the manifest, ``_SUCCESS``, the Asset event and lineage; reconcile as the
    export operator does. Its slices have waited for late rows already."""

    template_fields: Sequence[str] = ("slice_results",)

    def __init__(self, *, slice_results: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.slice_results = slice_results

    def execute(self, context: Any) -> dict[str, Any]:
        request, windows = self._request(context)
        return self.export_windows(context, request, windows)

    def export_windows(self, context: Any, request: Request, windows: list[Window]) -> dict[str, Any]:
        from cratedb_airflow_export.export import publish_slices

        run = run_info(context)
        staged = [entry for per_slice in self.slice_results for entry in per_slice]

        def publish_days(connections: Connections) -> tuple[list[ExportResult], list[Recount]]:
            results = [
                publish_slices(
                    self.export, window, [s for s in staged if s["day"] == window.day.isoformat()], run, connections
                )
                for window in windows
            ]
            return results, self._reconcile(request, windows, run, connections)

        return self._announce(context, *self._run("publish", windows[0], publish_days))
