"""Late rows: recount already exported days and re-export those whose source changed.

CrateDB mostly holds time series from devices that deliver late: rows of day D arriving after D's
export are otherwise never exported. For each day, the source's ``count(*)`` over the window (with
the table's filter) is compared with the ``source_count`` its manifest recorded, and the window's
change marker (``source.WindowState``: the sum of the rows' versions, which an UPDATE moves) with
its ``source_marker``; a day where either differs is exported again (the usual staging and publish
protocol: the partition is replaced). Unchanged days are not touched (their manifests keep their
``exported_at``); days without a complete partition are reported, not exported (that is a backfill's
job), and days whose rows were purged from the source after they were archived (``retention.py``)
are left alone: an export of what is left would replace the archive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from cratedb_airflow_export import sql
from cratedb_airflow_export.attempt import open_attempt
from cratedb_airflow_export.export import RunInfo, run_export
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.manifest import read_partition
from cratedb_airflow_export.source import execute, window_state
from cratedb_airflow_export.windows import Window

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.engines import ExportResult

log = logging.getLogger(__name__)

State = Literal["unchanged", "re-exported", "not exported", "purged"]


@dataclass(frozen=True)
class Recount:
    day: date
    state: State
    recorded: int | None = None  # the manifest's source_count
    counted: int | None = None  # count(*) now
    result: ExportResult | None = None  # the new export, when re-exported
    updated: bool = False  # re-exported because rows were updated (the change marker moved)

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "state": self.state, "recorded": self.recorded, "counted": self.counted}

    def describe(self, table: str) -> str:
        if self.state == "not exported":
            return f"{table} {self.day}: no complete partition (not exported; a backfill exports it)"
        if self.state == "purged":
            return f"{table} {self.day}: purged from the source after it was archived (the partition is kept)"
        if self.state == "unchanged":
            return f"{table} {self.day}: unchanged ({self.counted} rows)"
        if self.recorded == self.counted:
            return f"{table} {self.day}: re-exported, rows updated in the source ({self.counted} rows)"
        return f"{table} {self.day}: re-exported, {self.recorded} -> {self.counted} rows in the source"


def reconcile(
    cfg: TableExport, days: list[date], run_info: RunInfo | None = None, connections: Connections | None = None
) -> list[Recount]:
    """Recount ``days`` of ``cfg`` and re-export each whose source count or change marker moved."""
    if not days:
        return []
    windows = [Window.for_day(day) for day in sorted(days)]
    recounts: list[Recount] = []
    with open_attempt(cfg, windows[-1], "reconcile", connections) as attempt:
        if attempt.database.dialect.needs_refresh:  # rows written since the last refresh are not counted
            execute(attempt.cursor, sql.refresh(cfg), cfg.attempt_seconds)
        for window in windows:
            found = read_partition(attempt.store, partition(cfg, window.day), cfg.qualified_name, window.as_dict())
            manifest, baseline = found.manifest, found.baseline
            if found.purged and not found.restored:  # the source no longer holds the day: the archive stays
                recounts.append(Recount(window.day, "purged"))
                continue
            if not found.complete or manifest is None or baseline is None:
                recounts.append(Recount(window.day, "not exported"))
                continue
            known = baseline.count if baseline.count is not None else manifest.rows
            now = window_state(attempt.cursor, cfg, window, attempt.database, identify=True)
            updated = baseline.marker is not None and baseline.marker != now.marker
            # the table dropped and created again (where both identities are known): rows of another table
            updated |= None not in (baseline.table_id, now.table_id) and baseline.table_id != now.table_id
            if known == now.count and not updated:
                recounts.append(Recount(window.day, "unchanged", known, now.count))
            else:
                recounts.append(Recount(window.day, "re-exported", known, now.count, updated=updated))
    for at, stale in enumerate(recounts):
        if stale.state != "re-exported":
            continue
        log.info(
            "%s %s: the source holds %s rows%s, the partition was exported with %s: exporting it again",
            cfg.qualified_name,
            stale.day,
            stale.counted,
            " (rows updated since)" if stale.updated else "",
            stale.recorded,
        )
        recounts[at] = replace(stale, result=run_export(cfg, Window.for_day(stale.day), run_info, connections))
    return recounts


def summary(recounts: list[Recount]) -> list[dict[str, Any]]:
    """For XCom and JSON output."""
    return [r.as_dict() for r in recounts]
