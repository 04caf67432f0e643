"""Late rows: recount already exported days and re-export those whose source changed.

CrateDB mostly holds time series from devices that deliver late: rows of day D arriving after D's
export are otherwise never exported. For each day, the source's ``count(*)`` over the window
(with the table's filter) is compared with the ``source_count`` its manifest recorded; a day whose
count differs is exported again (the usual staging and publish protocol: the partition is
replaced). Unchanged days are not touched (their manifests keep their ``exported_at``); days
without a complete partition are reported, not exported (that is a backfill's job).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from cratedb_airflow_export import sql
from cratedb_airflow_export.attempt import open_attempt
from cratedb_airflow_export.export import RunInfo, run_export
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.manifest import read_partition
from cratedb_airflow_export.source import count_window, execute
from cratedb_airflow_export.windows import Window

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.engines import ExportResult

log = logging.getLogger(__name__)

State = Literal["unchanged", "re-exported", "not exported"]


@dataclass(frozen=True)
class Recount:
    day: date
    state: State
    recorded: int | None = None  # the manifest's source_count
    counted: int | None = None  # count(*) now
    result: ExportResult | None = None  # the new export, when re-exported

    def describe(self, table: str) -> str:
        if self.state == "not exported":
            return f"{table} {self.day}: no complete partition (not exported; a backfill exports it)"
        if self.state == "unchanged":
            return f"{table} {self.day}: unchanged ({self.counted} rows)"
        return f"{table} {self.day}: re-exported, {self.recorded} -> {self.counted} rows in the source"


def reconcile(
    cfg: TableExport, days: list[date], run_info: RunInfo | None = None, connections: Connections | None = None
) -> list[Recount]:
    """Recount ``days`` of ``cfg`` and re-export each whose source count changed."""
    if not days:
        return []
    windows = [Window.for_day(day) for day in sorted(days)]
    counts: list[tuple[Window, int | None, int | None]] = []
    with open_attempt(cfg, windows[-1], "reconcile", connections) as attempt:
        if attempt.database.dialect.needs_refresh:  # rows written since the last refresh are not counted
            execute(attempt.cursor, sql.refresh(cfg), cfg.attempt_seconds)
        for window in windows:
            found = read_partition(attempt.client, partition(cfg, window.day), cfg.qualified_name, window.as_dict())
            manifest = found.manifest
            if not found.complete or manifest is None:
                counts.append((window, None, None))
                continue
            known = manifest.source_count if manifest.source_count is not None else manifest.rows
            counts.append((window, known, count_window(attempt.cursor, cfg, window, attempt.database)))
    recounts = []
    for window, recorded, counted in counts:
        if recorded is None:
            recounts.append(Recount(window.day, "not exported"))
        elif recorded == counted:
            recounts.append(Recount(window.day, "unchanged", recorded, counted))
        else:
            log.info(
                "%s %s: the source holds %s rows, the partition was exported with %s: exporting it again",
                cfg.qualified_name,
                window.day,
                counted,
                recorded,
            )
            result = run_export(cfg, window, run_info, connections)
            recounts.append(Recount(window.day, "re-exported", recorded, counted, result))
    return recounts


def summary(recounts: list[Recount]) -> list[dict[str, Any]]:
    """For XCom and JSON output."""
    return [
        {"day": r.day.isoformat(), "state": r.state, "recorded": r.recorded, "counted": r.counted} for r in recounts
    ]
