"""``_manifest.json``: what a complete partition holds and how it was made.

Written just before ``_SUCCESS``. Lists every data object (key, size, ETag, row count where known),
the total row count and the source count it was checked against, the interval, the source table,
a fingerprint of the export statements, engine, format, compression, the Airflow dag/run id and
the time of the export. Readers can use it instead of listing the folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from cratedb_airflow_export.formats.spec import FormatName
from cratedb_airflow_export.sql import Statement

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

    from cratedb_airflow_export.storage import StoredObject

MANIFEST_VERSION = 1


class ManifestObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    size: int
    etag: str
    rows: int | None = None  # known for the stream engine; COPY TO reports only the total
    checksum_sha256: str | None = None  # as S3 stores it (multipart objects: of the parts' checksums)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
        return (json.dumps(self.model_dump(), indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return cls.model_validate_json(data)

    @property
    def object_rows(self) -> int | None:
        """Sum of the per-object counts, when every object has one."""
        counts = [o.rows for o in self.objects]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


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
    from cratedb_airflow_export.storage import read_object

    return Manifest.from_bytes(read_object(client, bucket, key))
