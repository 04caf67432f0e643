"""Storage layout: where a table's export of one day lands in the bucket.

- Seed layout (``target_bucket: "bucket/path"``): ``s3://bucket/path-YYYY-MM-DD/``, as the tutorial.
- Hive layout (``target: "s3://bucket/prefix"``): ``s3://bucket/prefix/<schema>.<table>/dt=YYYY-MM-DD/``,
  one folder per table and one ``dt=`` folder per day, readable as a partitioned dataset by
  DuckDB, Spark and Athena.

Each table gets its own folder (config validation rejects overlaps), because CrateDB's COPY TO
file names (``<table>_<shard>_<partition>.json``) do not contain the schema.

A complete partition holds its data objects, ``_manifest.json`` and an empty ``_SUCCESS``, written
last. Every attempt first writes into its own staging folder under ``_cratedb_export_staging/`` at
the bucket root (outside every table folder, and '_'-prefixed, so Hive readers never list it);
see ``publish.py`` for how a staged export replaces a partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport


@dataclass(frozen=True)
class Location:
    """A folder in a bucket: ``prefix`` has no leading or trailing slash."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def contains(self, other: Location) -> bool:
        """True when ``other`` is this folder or inside it."""
        return self.bucket == other.bucket and (other.prefix + "/").startswith(self.prefix + "/")


def table_folder(cfg: TableExport) -> Location:
    """Hive layout: the folder of all of ``cfg``'s partitions (the dataset root readers point at)."""
    if cfg.target is None:
        raise ValueError(f"{cfg.qualified_name} uses the seed layout (target_bucket), which has no table folder")
    bucket, _, prefix = cfg.target[len("s3://") :].partition("/")
    return Location(bucket, f"{prefix}/{cfg.qualified_name}" if prefix else cfg.qualified_name)


def partition(cfg: TableExport, day: date) -> Location:
    """The folder holding ``cfg``'s export of ``day``."""
    if cfg.target_bucket is not None:
        bucket, _, path = cfg.target_bucket.partition("/")
        return Location(bucket, f"{path}-{day.isoformat()}")
    root = table_folder(cfg)
    return Location(root.bucket, f"{root.prefix}/dt={day.isoformat()}")


def exclusive_folder(cfg: TableExport) -> Location:
    """What no other table may share: the table folder (Hive) or a day's folder (seed layout)."""
    return table_folder(cfg) if cfg.target is not None else partition(cfg, date(2000, 1, 1))


STAGING_ROOT = "_cratedb_export_staging"
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"


def staging_root(cfg: TableExport, day: date) -> Location:
    """Where every attempt at ``cfg``'s export of ``day`` stages its files."""
    final = partition(cfg, day)
    return Location(final.bucket, f"{STAGING_ROOT}/{final.prefix}")


def staging(cfg: TableExport, day: date, attempt: str) -> Location:
    """The staging folder of one attempt (one task try)."""
    root = staging_root(cfg, day)
    return Location(root.bucket, f"{root.prefix}/{attempt}")


def dataset_uri(cfg: TableExport) -> str:
    """The table's export location as an Airflow Asset URI: the folder that holds its day folders
    (Hive: ``s3://bucket/prefix/<schema>.<table>``; seed layout: ``s3://bucket/path``)."""
    if cfg.target is not None:
        folder = table_folder(cfg)
        return f"s3://{folder.bucket}/{folder.prefix}"
    assert cfg.target_bucket is not None
    return f"s3://{cfg.target_bucket}"


def is_data_object(key: str) -> bool:
    """Data files, as opposed to markers (``_SUCCESS``, ``_manifest.json``) and hidden files."""
    return not key.rsplit("/", 1)[-1].startswith(("_", "."))
