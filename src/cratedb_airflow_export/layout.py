"""Storage layout: where a table's export of one day lands in the bucket.

- Tutorial layout (``target_bucket: "bucket/path"``): ``s3://bucket/path-YYYY-MM-DD/``, as the
  tutorial writes it.
- Hive layout (``target: "s3://bucket/prefix"``): ``s3://bucket/prefix/<schema>.<table>/dt=YYYY-MM-DD/``,
  one folder per table and one ``dt=`` folder per day, readable as a partitioned dataset by
  DuckDB, Spark and Athena.

Each table gets its own folder (configuration rejects overlaps), because CrateDB's COPY TO file
names (``<table>_<shard>_<partition>.json``) do not contain the schema.

A complete partition holds its data objects, ``_manifest.json`` and an empty ``_SUCCESS``, written
last; once retention has deleted the day's rows from the source, also ``_PURGED.json`` (what was
deleted, when, by which statement; ``retention.py``), and after a restore into the table
``_RESTORED.json`` (what the table held of the day right after it; ``restore.py``). Every attempt
first writes into its own staging folder under ``_cratedb_export_staging/`` at the bucket root
(outside every table folder, and '_'-prefixed, so Hive readers never list it); see ``publish.py``
for how a staged export replaces a partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from cratedb_airflow_export.storage import STAGING_ROOT, Location, parse_target

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.storage import Store

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
PURGED = "_PURGED.json"  # the day's rows were deleted from the source after they were archived
RESTORED = "_RESTORED.json"  # the archive's rows were put back into the table: the source's new baseline


def table_folder(cfg: TableExport) -> Location:
    """Hive layout: the folder of all of ``cfg``'s partitions (the dataset root readers point at)."""
    if cfg.target is None:
        raise ValueError(f"{cfg.qualified_name} uses the tutorial layout (target_bucket), which has no table folder")
    return parse_target(cfg.target).child(cfg.qualified_name)


def partition(cfg: TableExport, day: date) -> Location:
    """The folder holding ``cfg``'s export of ``day``."""
    if cfg.target_bucket is not None:
        base = parse_target(f"s3://{cfg.target_bucket}")
        return base.at(f"{base.prefix}-{day.isoformat()}")
    return table_folder(cfg).child(f"dt={day.isoformat()}")


DAY = r"\d{4}-\d{2}-\d{2}"


@dataclass(frozen=True)
class Folders:
    """The folders a table writes into, as a pattern: one fixed folder (Hive layout: the table folder,
    the day folders inside it) or one folder per day (tutorial layout: ``<prefix>-YYYY-MM-DD``)."""

    bucket: str
    prefix: str
    per_day: bool

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}{'-YYYY-MM-DD' if self.per_day else ''}/"

    def holds(self, path: str) -> bool:
        """Whether ``path`` (no trailing '/') is one of these folders or lies inside one."""
        if self.per_day:
            return re.fullmatch(re.escape(self.prefix) + "-" + DAY + "(/.*)?", path, re.S) is not None
        return path == self.prefix or path.startswith(self.prefix + "/")

    def _some_inside(self, other: Folders) -> bool:
        """Whether one of these folders is one of ``other``'s or lies inside one, for some days."""
        if not self.per_day:
            return other.holds(self.prefix)
        # "<prefix>-<day>" ends in the day, which holds no '/': it lies inside a folder F exactly when
        # it is F, or when the prefix itself lies below F
        if other.per_day:
            below = re.match(re.escape(other.prefix) + "-" + DAY + "/", self.prefix) is not None
            return self.prefix == other.prefix or below
        return other.holds(self.prefix) or re.fullmatch(re.escape(self.prefix) + "-" + DAY, other.prefix) is not None

    def overlaps(self, other: Folders) -> bool:
        return self.bucket == other.bucket and (self._some_inside(other) or other._some_inside(self))


def folders(cfg: TableExport) -> Folders:
    """What no other table may share: the table folder (Hive) or the day folders (tutorial layout)."""
    if cfg.target is not None:
        folder = table_folder(cfg)
        return Folders(folder.bucket, folder.prefix, per_day=False)
    base = parse_target(f"s3://{cfg.target_bucket}")
    return Folders(base.bucket, base.prefix, per_day=True)


def exported_days(store: Store, cfg: TableExport) -> list[date]:
    """The days that have a folder of ``cfg``'s in the bucket (complete or not), in order."""
    base = partition(cfg, date(2000, 1, 1))
    stem = base.prefix[: -len("2000-01-01")]  # "<path>-" (tutorial layout) or "<table folder>/dt="
    days = []
    for folder in store.list_folders(base.bucket, stem):
        match = re.fullmatch(DAY, folder[len(stem) :])
        if match is not None:
            try:
                days.append(date.fromisoformat(match[0]))
            except ValueError:  # 2024-02-30: not a day's folder
                continue
    return sorted(days)


def staging_root(cfg: TableExport, day: date) -> Location:
    """Where every attempt at ``cfg``'s export of ``day`` stages its files."""
    final = partition(cfg, day)
    return final.at(f"{STAGING_ROOT}/{final.prefix}")


def staging(cfg: TableExport, day: date, attempt_id: str) -> Location:
    """The staging folder of one attempt (one task try), or of one run (sliced exports)."""
    return staging_root(cfg, day).child(attempt_id)


def dataset_uri(cfg: TableExport) -> str:
    """The table's export location as an Airflow Asset URI: the folder that holds its day folders
    (Hive: ``s3://bucket/prefix/<schema>.<table>``; tutorial layout: ``s3://bucket/path``)."""
    folder = table_folder(cfg) if cfg.target is not None else parse_target(f"s3://{cfg.target_bucket}")
    return folder.uri.rstrip("/")


def is_data_object(key: str) -> bool:
    """Data files, as opposed to markers (``_SUCCESS``, ``_manifest.json``) and hidden files."""
    return not key.rsplit("/", 1)[-1].startswith(("_", "."))
