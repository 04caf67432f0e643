"""What every engine shares: the job (table x window x attempt), its result, the engine interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export.layout import MANIFEST, partition, staging
from cratedb_airflow_export.storage import Location, StoredObject, WriteOptions

if TYPE_CHECKING:
    import pyarrow as pa

    from cratedb_airflow_export.attempt import Attempt
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import StoreCredentials
    from cratedb_airflow_export.evolution import Evolution
    from cratedb_airflow_export.iceberg import Committed
    from cratedb_airflow_export.source import SourceInfo
    from cratedb_airflow_export.sql import Statement
    from cratedb_airflow_export.windows import TimeRange, Window

PLAN_ATTEMPT = "<attempt>"


@dataclass(frozen=True)
class ExportJob:
    """One attempt at one table's export of one window (or of one slice of it, with ``slice_index``).
    Engines read the rows of :attr:`range` and write into :attr:`staging` only."""

    cfg: TableExport
    window: Window
    attempt_id: str = PLAN_ATTEMPT
    slice_index: int | None = None

    @property
    def range(self) -> TimeRange:
        """The rows this job reads: the whole window, or its slice."""
        if self.slice_index is None:
            return self.window
        return self.window.slices(self.cfg.slices)[self.slice_index]

    @property
    def location(self) -> Location:
        """The partition the export is published to."""
        return partition(self.cfg, self.window.day)

    @property
    def write_options(self) -> WriteOptions:
        """What every object this job writes carries besides its bytes: the table's encryption."""
        return WriteOptions(self.cfg.sse, self.cfg.sse_kms_key_id)

    @property
    def staging(self) -> Location:
        folder = staging(self.cfg, self.window.day, self.attempt_id)
        return folder if self.slice_index is None else folder.child(f"slice-{self.slice_index:03d}")


@dataclass(frozen=True)
class ExportResult:
    job: ExportJob
    engine: str
    rows: int
    objects: tuple[StoredObject, ...] = ()
    source_count: int | None = None
    source: SourceInfo | None = None  # what the rows came from (dialect, columns): lineage
    written: pa.Schema | None = None  # the Arrow schema of the files (None: written without Arrow, COPY TO)
    evolution: Evolution | None = None  # how the schema differs from the nearest complete partition's
    committed: Committed | None = None  # format iceberg: the day's commit

    def as_dict(self) -> dict[str, Any]:
        """Safe for XCom: no credentials, only JSON types."""
        if self.committed is not None:  # format iceberg: the table's commit is the record
            return {
                "table": self.job.cfg.qualified_name,
                "engine": self.engine,
                "interval": self.job.window.as_dict(),
                "target": f"iceberg:{self.committed.table}",
                "manifest": self.committed.metadata_location,
                "rows": self.rows,
                "source_count": self.source_count,
                "objects": [o.as_dict() for o in self.objects],
                "bytes": sum(o.size for o in self.objects),
                "schema_changes": list(self.committed.schema_changes),
                **self.committed.as_dict(),
            }
        return {
            "table": self.job.cfg.qualified_name,
            "engine": self.engine,
            "interval": self.job.window.as_dict(),
            "target": self.job.location.uri,
            "manifest": self.job.location.object_uri(self.job.location.key(MANIFEST)),
            "rows": self.rows,
            "source_count": self.source_count,
            "objects": [o.as_dict() for o in self.objects],
            "bytes": sum(o.size for o in self.objects),
            "schema_changes": [str(c) for c in self.evolution.changes] if self.evolution else [],
        }


class Engine(ABC):
    name: str
    needs: str | None = None  # what the engine needs beyond the source's rows, as ``plan`` says it

    def check(self, job: ExportJob, attempt: Attempt) -> None:  # noqa: B027 - optional hook
        """Raise (a permanent error) when the source or the target cannot do this engine's work."""

    @abstractmethod
    def statements(self, job: ExportJob, source: SourceInfo, creds: StoreCredentials | None) -> list[Statement]:
        """The export statements, in order, as they will be sent (``creds=None``: placeholders)."""

    @abstractmethod
    def run(self, job: ExportJob, attempt: Attempt, statements: list[Statement]) -> ExportResult:
        """Export ``job`` into ``job.staging`` with ``statements`` (built by :meth:`statements` for this
        attempt); raise on any failure."""
