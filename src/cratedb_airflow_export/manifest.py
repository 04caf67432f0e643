"""``_manifest.json``: what a complete partition holds and how it was made.

Written just before ``_SUCCESS``. Lists every data object (key, size, ETag, row count where known),
the total row count and the source count it was checked against, the interval, the source table,
a fingerprint of the export statements, engine, format, compression, the Airflow dag/run id and
the time of the export. Readers can use it instead of listing the folder. ``_PURGED.json``
(:class:`PurgeRecord`) says that retention deleted the day's rows from the source afterwards.

:func:`read_partition` is the one reading of "is this a complete partition", for everything that
relies on one (verify, restore, reconcile).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cratedb_airflow_export import sql
from cratedb_airflow_export.formats.spec import FormatName
from cratedb_airflow_export.layout import MANIFEST, PURGED, RESTORED, SUCCESS
from cratedb_airflow_export.schema import SchemaChange, SchemaColumn
from cratedb_airflow_export.sql import Statement
from cratedb_airflow_export.storage import Checksum, Location, StoredObject
from cratedb_airflow_export.windows import Window

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.source import SourceInfo
    from cratedb_airflow_export.storage import Store

MANIFEST_VERSION = 1


class ManifestObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    size: int
    etag: str
    rows: int | None = None  # known for the stream engine; COPY TO reports only the total
    checksum_sha256: str | None = None  # as S3 stores it (multipart objects: of the parts' checksums)
    # as Azure stores it (Content-MD5 of the whole object); left out of S3's manifests
    checksum_md5: str | None = Field(default=None, exclude_if=lambda value: value is None)
    # as GCS stores it (CRC32C of the whole object); left out of the others' manifests
    checksum_crc32c: str | None = Field(default=None, exclude_if=lambda value: value is None)

    @property
    def checksum(self) -> Checksum | None:
        if self.checksum_sha256 is not None:
            return Checksum("sha256", self.checksum_sha256)
        if self.checksum_md5 is not None:
            return Checksum("md5", self.checksum_md5)
        return Checksum("crc32c", self.checksum_crc32c) if self.checksum_crc32c is not None else None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    version: int = MANIFEST_VERSION
    table: str
    interval: dict[str, str]
    partition: str
    engine: str
    format: FormatName
    compression: str
    compression_level: int | None = None  # None: the codec's default
    json_style: str | None = None  # JSON Lines: "iso" or "cratedb" (COPY TO's shape)
    rows: int
    source_count: int | None
    # the source window's change marker when it was exported (source.WindowState.marker): reconcile
    # exports the day again when it moved (rows updated), retention refuses to purge it then
    source_marker: str | None = None
    # what the partition holds of each row: the columns exported (None: not recorded, as in manifests
    # written before) and the filter that chose the rows (None: every row of the window)
    columns: list[str] | None = None
    filter: str | None = None
    # everything else that chose the day's rows, so that retention can tell whether this archive is
    # still the copy of what the source holds of the day (None: written before they were recorded):
    # the table (source.table_identity: PostgreSQL's OID, CrateDB's index UUIDs), the timestamp
    # column and its type, each exported column's number in the catalog (a column dropped and added
    # again gets a new one), and the fingerprint of the statement that counts the window's rows
    table_id: str | None = None
    timestamp_column: str | None = None
    timestamp_type: str | None = None
    column_ids: dict[str, int] | None = None
    selection_fingerprint: str | None = None
    # the columns as written (schema.SchemaColumn: source and file types, nullability, object keys;
    # None in manifests written before), what changed since the partition it was compared with (the
    # nearest complete day, ``schema_compared_with``), under the table's schema_change policy
    schema_: list[SchemaColumn] | None = Field(default=None, alias="schema")
    schema_changes: list[SchemaChange] | None = None
    schema_compared_with: str | None = None
    row_count_check: str
    sse: str | None = None  # server-side encryption of every object of the partition
    sse_kms_key_id: str | None = None
    objects: list[ManifestObject]
    statements_fingerprint: str
    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    exported_at: str = ""  # set when published

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(by_alias=True), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return cls.model_validate_json(data)

    @property
    def object_rows(self) -> int | None:
        """Sum of the per-object counts, when every object has one."""
        counts = [o.rows for o in self.objects]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


class PurgeRecord(BaseModel):
    """``_PURGED.json``: retention deleted the day's rows from the source after checking this
    partition. Written with ``state: started`` before the DELETE and ``done`` after it, so that a
    purge that died in between still protects the archive (a record in either state means the source
    may no longer hold the day: nothing exports the day over the partition, reconcile leaves it)."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    table: str
    interval: dict[str, str]
    state: Literal["started", "done"]
    what: str  # the deleted unit: "day 2024-01-03" or "partition (day = 2024-01-03T00:00:00+00:00)"
    statement: str  # the DELETE as sent (wire SQL and parameters; no secret is ever one)
    rows: int  # the day's rows in the source right before the delete, equal to the manifest's source_count
    deleted: int | None = None  # the DELETE's row count over the whole unit (None: not reported)
    manifest_exported_at: str  # the export the check relied on
    started_at: str
    finished_at: str | None = None
    dag_id: str | None = None
    run_id: str | None = None

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), indent=2) + "\n").encode("utf-8")


class RestoreRecord(BaseModel):
    """``_RESTORED.json``: the archive was restored into its own table, which then held exactly the
    archive's rows of the day. The rows are new copies (new row versions, maybe a new partition):
    from here on they, not the export, are what the archive is the copy of (:attr:`Partition.baseline`).
    A later export replaces the partition and this record with it."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    table: str
    interval: dict[str, str]
    manifest_exported_at: str  # the export whose files were restored
    method: str
    rows: int  # count(*) of the day in the table right after the restore (= the manifest's rows)
    source_marker: str
    table_id: str | None
    column_ids: dict[str, int]
    restored_at: str
    dag_id: str | None = None
    run_id: str | None = None

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(), indent=2) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Baseline:
    """What the source held of a day when the archive was last known to be its exact copy: right
    after the export, or right after a restore of the archive into the table since. The source
    still holds exactly the archive's rows while its count, change marker, table identity and column
    numbers are these."""

    count: int | None
    marker: str | None
    table_id: str | None
    column_ids: Mapping[str, int] | None
    since: str  # "the export of <time>" / "the restore of <time>"


def fingerprint(statements: list[Statement]) -> str:
    """sha256 of the export statements' text (not their parameters): changes when the SQL does."""
    digest = hashlib.sha256("\n".join(s.wire_sql for s in statements).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def selection_fingerprint(cfg: TableExport, source: SourceInfo) -> str:
    """The fingerprint of the statement that counts a day's rows as ``source`` is asked (the table, the
    timestamp column, the filter, the row version): anything that changes which rows make a day
    changes it. The window's bounds are parameters, not part of it."""
    any_day = Window.for_day(date(2000, 1, 1))
    return fingerprint([sql.window_state(cfg, any_day, source.dialect.row_version, naive=source.naive_timestamps)])


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat()


def completed(draft: Manifest, objects: Iterable[StoredObject]) -> Manifest:
    """``draft`` with the published objects and the time of publishing."""
    entries = [
        ManifestObject(
            key=o.key,
            size=o.size,
            etag=o.etag,
            rows=o.rows,
            **({f"checksum_{o.checksum.algorithm}": o.checksum.value} if o.checksum is not None else {}),
        )
        for o in objects
    ]
    return draft.model_copy(update={"objects": entries, "exported_at": now_utc()})


def read_manifest(store: Store, bucket: str, key: str) -> Manifest:
    """Read and validate a manifest from the store."""
    return Manifest.from_bytes(store.read(bucket, key))


@dataclass(frozen=True)
class Partition:
    """What a partition folder holds, and whether it is complete: ``_SUCCESS`` and ``_manifest.json``
    stored, the manifest valid and this table's for this interval, every object it lists stored.
    ``problems`` says what is not so (empty: complete); ``missing`` names the absent markers."""

    location: Location
    stored: Mapping[str, StoredObject]
    manifest: Manifest | None
    missing: tuple[str, ...]
    problems: tuple[str, ...]
    purge: PurgeRecord | None = None  # retention's record, when the day was purged from the source
    restore: RestoreRecord | None = None  # restore's record, when the archive was put back into the table

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def restored(self) -> bool:
        """Whether this partition's archive was restored into the table (after any purge of the day):
        the source holds the day again."""
        record, manifest = self.restore, self.manifest
        if record is None or manifest is None or record.manifest_exported_at != manifest.exported_at:
            return False
        return self.purge is None or record.restored_at >= self.purge.started_at

    @property
    def baseline(self) -> Baseline | None:
        """The source's state of the day that this archive is the exact copy of (None: no manifest):
        after a restore of it, the restore's; otherwise the export's."""
        manifest, record = self.manifest, self.restore
        if manifest is None:
            return None
        if record is not None and self.restored:
            return Baseline(
                record.rows,
                record.source_marker,
                record.table_id,
                record.column_ids,
                f"the restore of {record.restored_at}",
            )
        return Baseline(
            manifest.source_count,
            manifest.source_marker,
            manifest.table_id,
            manifest.column_ids,
            f"the export of {manifest.exported_at}",
        )

    @property
    def purged(self) -> bool:
        """Whether retention deleted (or began to delete) the day's rows from the source: a record
        is stored, readable or not."""
        return self.location.key(PURGED) in self.stored


def read_partition(store: Store, location: Location, table: str, interval: Mapping[str, Any]) -> Partition:
    """List ``location`` and read its manifest: the partition of ``table`` for ``interval``."""
    stored = {o.key: o for o in store.list_objects(location)}
    missing = tuple(name for name in (SUCCESS, MANIFEST) if location.key(name) not in stored)
    problems = []
    if SUCCESS in missing:
        problems.append(f"{SUCCESS} is missing: the partition is incomplete or being replaced")
    manifest = None
    if MANIFEST in missing:
        problems.append(f"{MANIFEST} is missing")
    else:
        try:
            manifest = read_manifest(store, location.bucket, location.key(MANIFEST))
        except ValueError as exc:
            problems.append(f"{MANIFEST} is not a valid manifest: {exc}")
    if manifest is not None:
        if manifest.table != table or manifest.interval != dict(interval):
            problems.append(f"manifest is for {manifest.table} {manifest.interval}, not {table} {dict(interval)}")
        problems += [f"{o.key} is listed in the manifest but missing" for o in manifest.objects if o.key not in stored]
    purge = _record(store, location, stored, PURGED, PurgeRecord, problems)
    restore = _record(store, location, stored, RESTORED, RestoreRecord, problems)
    return Partition(location, stored, manifest, missing, tuple(problems), purge, restore)


Record = TypeVar("Record", PurgeRecord, RestoreRecord)


def _record(
    store: Store,
    location: Location,
    stored: Mapping[str, StoredObject],
    name: str,
    kind: type[Record],
    problems: list[str],
) -> Record | None:
    """The record ``name`` of the partition, if stored (a record that does not parse is a problem)."""
    if location.key(name) not in stored:
        return None
    try:
        return kind.model_validate_json(store.read(location.bucket, location.key(name)))
    except ValueError as exc:
        problems.append(f"{name} is not a valid record: {exc}")
        return None
