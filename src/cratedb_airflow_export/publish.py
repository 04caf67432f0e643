"""Publishing: a staged export becomes the partition, so readers never see a mix of two runs.

S3 cannot rename a folder atomically, and Hive-style readers (DuckDB, Spark, Athena) list the
folder, so completeness is signalled by ``_SUCCESS``, written last. Publishing a verified staging
folder into the partition goes:

0. refuse a partition whose day retention purged from the source (``_PURGED.json``): it is the
   only copy of those rows;
1. delete the partition's ``_SUCCESS``: from here on the old partition is *clearly invalidated*;
2. delete every object in the partition (the previous run's data and manifest, stale shard files);
3. server-side copy each staged object into the partition;
4. list the partition and check it holds exactly the staged objects, with their sizes;
5. write ``_manifest.json``, then an empty ``_SUCCESS``.

A run that fails at any step leaves no ``_SUCCESS``; a reader that waits for it never sees a mix
of two runs, and the next successful run (a retry or a rerun) replaces whatever is there. We
chose "invalidate, then replace" over "keep the old partition until the new one is complete"
because readers glob the folder: keeping old files next to new ones would let globbing readers
double-count, and a manifest-only swap would not help them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cratedb_airflow_export.errors import PartitionPurged, TargetError
from cratedb_airflow_export.layout import MANIFEST, PURGED, RESTORED, SUCCESS
from cratedb_airflow_export.manifest import Manifest, PurgeRecord, RestoreRecord, completed
from cratedb_airflow_export.storage import (
    Location,
    StoredObject,
    delete_keys,
    list_objects,
    put_object,
    read_object,
    stored_checksum,
)

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

log = logging.getLogger(__name__)


def refuse_purged(client: S3Client, partition: Location, stored: list[StoredObject] | None = None) -> None:
    """Raise :class:`PartitionPurged` when retention deleted the day's rows from the source after
    archiving them in ``partition``, unless the archive was restored into the table since (then the
    source holds the day again; ``stored``: the partition's listing, when the caller has it)."""
    keys = {o.key for o in (stored if stored is not None else list_objects(client, partition))}
    if partition.key(PURGED) not in keys:
        return
    if partition.key(RESTORED) in keys:
        purged = PurgeRecord.model_validate_json(read_object(client, partition.bucket, partition.key(PURGED)))
        restored = RestoreRecord.model_validate_json(read_object(client, partition.bucket, partition.key(RESTORED)))
        if restored.restored_at >= purged.started_at:
            log.info(
                "%s: purged at %s, restored at %s: the source holds the day again",
                partition.uri,
                purged.started_at,
                restored.restored_at,
            )
            return
    raise PartitionPurged(
        f"{partition.uri} is the archive of rows that were purged from the source ({PURGED}): exporting the "
        f"day again would replace it with what the source still holds; restore the day into the table first "
        f"(cratedb-export restore: the restore records it, and the day can be exported again)"
    )


def invalidate(client: S3Client, partition: Location) -> None:
    client.delete_object(Bucket=partition.bucket, Key=partition.key(SUCCESS))


def write_manifest(client: S3Client, partition: Location, manifest: Manifest, args: dict[str, str]) -> None:
    put_object(client, partition.bucket, partition.key(MANIFEST), manifest.to_bytes(), "application/json", **args)


def write_success(client: S3Client, partition: Location, args: dict[str, str]) -> None:
    put_object(client, partition.bucket, partition.key(SUCCESS), b"", **args)


def published_name(staging: Location, key: str) -> str:
    """A staged object's name in the partition: its path below the staging folder, '/' -> '-'
    (``part-00000.parquet``; from a slice: ``slice-003-part-00000.parquet``)."""
    return key[len(staging.prefix) + 1 :].replace("/", "-")


def publish(
    client: S3Client,
    staged: list[StoredObject],
    staging: Location,
    partition: Location,
    draft: Manifest,
    args: dict[str, str],
) -> tuple[list[StoredObject], Manifest]:
    """Replace ``partition`` with the ``staged`` objects and write ``draft`` completed with them as
    the manifest; returns the published objects and the manifest. ``args``: checksum and
    encryption of every object written (``storage.write_args``)."""
    names = [published_name(staging, o.key) for o in staged]
    if len(set(names)) != len(names) or any(n in (MANIFEST, SUCCESS) for n in names):
        raise TargetError(f"staged object names collide: {sorted(names)}")
    refuse_purged(client, partition)
    invalidate(client, partition)
    old = [o.key for o in list_objects(client, partition)]
    delete_keys(client, partition.bucket, old)
    if old:
        log.info("removed %d object(s) of the previous export of %s", len(old), partition.uri)
    for obj, name in zip(staged, names, strict=True):
        # managed copy: server-side, multipart above 8 MiB, so objects larger than 5 GiB work too
        client.copy({"Bucket": partition.bucket, "Key": obj.key}, partition.bucket, partition.key(name), ExtraArgs=args)
    rows = {partition.key(name): o.rows for o, name in zip(staged, names, strict=True)}
    published = [
        StoredObject(o.key, o.size, o.etag, rows.get(o.key), stored_checksum(client, partition.bucket, o.key))
        for o in list_objects(client, partition)
    ]
    expected = sorted((partition.key(name), o.size) for o, name in zip(staged, names, strict=True))
    if sorted((o.key, o.size) for o in published) != expected:
        raise TargetError(
            f"{partition.uri} does not hold exactly the staged objects after copying: "
            f"expected {expected}, found {sorted((o.key, o.size) for o in published)}"
        )
    manifest = completed(draft, published)
    write_manifest(client, partition, manifest, args)
    write_success(client, partition, args)
    log.info(
        "published %d object(s), %d rows, to %s (+ %s, %s)",
        len(published),
        manifest.rows,
        partition.uri,
        MANIFEST,
        SUCCESS,
    )
    return published, manifest
