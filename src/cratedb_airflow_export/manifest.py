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
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cratedb_airflow_export.formats.spec import FormatName
from cratedb_airflow_export.layout import MANIFEST, PURGED, SUCCESS
from cratedb_airflow_export.schema import SchemaChange, SchemaColumn
from cratedb_airflow_export.sql import Statement
from cratedb_airflow_export.storage import Location, StoredObject, list_objects, read_object

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MANIFEST_VERSION = 1


class ManifestObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    size: int
    etag: str
    rows: int | None = None  # known for the stream engine; COPY TO reports only the total
    checksum_sha256: str | None = None  # as S3 stores it (multipart objects: of the parts' checksums)


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


def fingerprint(statements: list[Statement]) -> str:
    """sha256 of the export statements' text (not their parameters): changes when the SQL does."""
    digest = hashlib.sha256("\n".join(s.wire_sql for s in statements).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat()


def completed(draft: Manifest, objects: Iterable[StoredObject]) -> Manifest:
    """``draft`` with the published objects and the time of publishing."""
    entries = [
        ManifestObject(key=o.key, size=o.size, etag=o.etag, rows=o.rows, checksum_sha256=o.checksum_sha256)
        for o in objects
    ]
    return draft.model_copy(update={"objects": entries, "exported_at": now_utc()})


def read_manifest(client: S3Client, bucket: str, key: str) -> Manifest:
    """Read and validate a manifest from S3."""
    return Manifest.from_bytes(read_object(client, bucket, key))


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

    @property
    def complete(self) -> bool:
        return not self.problems

    @property
    def purged(self) -> bool:
        """Whether retention deleted (or began to delete) the day's rows from the source: a record
        is stored, readable or not."""
        return self.location.key(PURGED) in self.stored


def read_partition(client: S3Client, location: Location, table: str, interval: Mapping[str, Any]) -> Partition:
    """List ``location`` and read its manifest: the partition of ``table`` for ``interval``."""
    stored = {o.key: o for o in list_objects(client, location)}
    missing = tuple(name for name in (SUCCESS, MANIFEST) if location.key(name) not in stored)
    problems = []
    if SUCCESS in missing:
        problems.append(f"{SUCCESS} is missing: the partition is incomplete or being replaced")
    manifest = None
    if MANIFEST in missing:
        problems.append(f"{MANIFEST} is missing")
    else:
        try:
            manifest = read_manifest(client, location.bucket, location.key(MANIFEST))
        except ValueError as exc:
            problems.append(f"{MANIFEST} is not a valid manifest: {exc}")
    if manifest is not None:
        if manifest.table != table or manifest.interval != dict(interval):
            problems.append(f"manifest is for {manifest.table} {manifest.interval}, not {table} {dict(interval)}")
        problems += [f"{o.key} is listed in the manifest but missing" for o in manifest.objects if o.key not in stored]
    purge = None
    if location.key(PURGED) in stored:
        try:
            purge = PurgeRecord.model_validate_json(read_object(client, location.bucket, location.key(PURGED)))
        except ValueError as exc:
            problems.append(f"{PURGED} is not a valid purge record: {exc}")
    return Partition(location, stored, manifest, missing, tuple(problems), purge)
