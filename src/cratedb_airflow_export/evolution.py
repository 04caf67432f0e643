"""The ``schema_change`` policy: before a partition is published, its schema is compared with the
nearest complete partition of the table (the closest earlier day; the closest later one when no
earlier day is complete, as in a backfill), and

- ``evolve`` (the default) publishes the new shape and records what changed in the manifest
  (``schema_changes``, ``schema_compared_with``), the log and the Asset event;
- ``fail`` refuses any change, before anything is published, naming the columns.

Under both, a change that breaks readers of the whole folder (a column whose type cannot widen into
the other, ``bigint`` -> ``text``; an object written as JSON text one day and a struct the next) is
refused unless the table's ``allow_type_change`` names the column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from cratedb_airflow_export.errors import SchemaChanged
from cratedb_airflow_export.layout import exported_days, partition
from cratedb_airflow_export.manifest import read_partition
from cratedb_airflow_export.schema import SchemaChange, SchemaColumn, compare
from cratedb_airflow_export.windows import Window

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.storage import Store

log = logging.getLogger(__name__)

# day folders looked at (nearest first) for a complete partition that records its schema: bounds the
# requests when many days are incomplete or were written before manifests had schemas
MAX_DAYS_LOOKED_AT = 31


@dataclass(frozen=True)
class Evolution:
    """How a partition's schema differs from the one it was compared with (``None``: no complete
    partition with a schema to compare with)."""

    compared_with: date | None = None
    changes: list[SchemaChange] = field(default_factory=list)

    def describe(self) -> str:
        if self.compared_with is None:
            return "no earlier partition with a schema to compare with"
        if not self.changes:
            return f"schema as on {self.compared_with}"
        return f"schema changed since {self.compared_with}: " + "; ".join(str(c) for c in self.changes)


def nearest_schema(store: Store, cfg: TableExport, day: date) -> tuple[date, list[SchemaColumn]] | None:
    """The schema recorded by the complete partition of the same format nearest to ``day`` (earlier
    days first). Days written in another format are not compared: a reader reads one format's files
    (``*.parquet``, ``*.jsonl.gz``), so a table that moved from JSON Lines to Parquet starts anew."""
    days = [d for d in exported_days(store, cfg) if d != day]
    earlier = sorted((d for d in days if d < day), reverse=True)
    later = sorted(d for d in days if d > day)
    for candidate in (earlier + later)[:MAX_DAYS_LOOKED_AT]:
        window = Window.for_day(candidate)
        found = read_partition(store, partition(cfg, candidate), cfg.qualified_name, window.as_dict())
        manifest = found.manifest
        if found.complete and manifest is not None and manifest.schema_ is not None and manifest.format == cfg.format:
            return candidate, manifest.schema_
    return None


def check_schema(store: Store, cfg: TableExport, day: date, schema: Sequence[SchemaColumn]) -> Evolution:
    """Compare ``schema`` (the partition about to be published) with the nearest complete one and
    apply the table's policy: raises :class:`SchemaChanged` (permanent) naming the columns when the
    change is refused; else returns what changed, logged."""
    nearest = nearest_schema(store, cfg, day)
    if nearest is None:
        log.info("%s %s: %s", cfg.qualified_name, day, Evolution().describe())
        return Evolution()
    compared_with, before = nearest
    evolution = Evolution(compared_with, compare(before, schema))
    if not evolution.changes:
        return evolution
    refused = [c for c in evolution.changes if c.breaking and c.column not in cfg.allow_type_change]
    if refused:
        raise SchemaChanged(
            f"{cfg.qualified_name}: the schema of {day} breaks readers of the partitions before it (compared with "
            f"{compared_with}): {'; '.join(str(c) for c in refused)}; nothing was published. Readers of the whole "
            "folder cannot read both types as one column: export under another table name or target, or, when "
            "readers can cope, name the column in allow_type_change"
        )
    if cfg.schema_change == "fail":
        raise SchemaChanged(
            f"{cfg.qualified_name}: the schema of {day} differs from {compared_with}'s "
            f"({'; '.join(str(c) for c in evolution.changes)}) and schema_change is 'fail'; nothing was published. "
            "Set schema_change: evolve to publish the new shape"
        )
    log.warning("%s %s: %s (schema_change: evolve)", cfg.qualified_name, day, evolution.describe())
    return evolution
