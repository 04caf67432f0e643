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
from cratedb_airflow_export.storage import Location, StoredObject

if TYPE_CHECKING:
    from cratedb_airflow_export.storage import Store, WriteOptions

log = logging.getLogger(__name__)


def refuse_purged(store: Store, partition: Location, stored: list[StoredObject] | None = None) -> None:
    """Raise :class:`PartitionPurged` when retention deleted the day's rows from the source after
    archiving them in ``partition``, unless the archive was restored into the table since (then the
    source holds the day again; ``stored``: the partition's listing, when the caller has it)."""
    keys = {o.key for o in (stored if stored is not None else store.list_objects(partition))}
    if partition.key(PURGED) not in keys:
        return
    if partition.key(RESTORED) in keys:
        purged = PurgeRecord.model_validate_json(store.read(partition.bucket, partition.key(PURGED)))
        restored = RestoreRecord.model_validate_json(store.read(partition.bucket, partition.key(RESTORED)))
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


def invalidate(store: Store, partition: Location) -> None:
    store.delete(partition.bucket, [partition.key(SUCCESS)])


def write_manifest(store: Store, partition: Location, manifest: Manifest, options: WriteOptions) -> None:
    store.put(partition.bucket, partition.key(MANIFEST), manifest.to_bytes(), "application/json", options)


def write_success(store: Store, partition: Location, options: WriteOptions) -> None:
    store.put(partition.bucket, partition.key(SUCCESS), b"", options=options)


def published_name(staging: Location, key: str) -> str:
    """A staged object's name in the partition: its path below the staging folder, '/' -> '-'
    (``part-00000.parquet``; from a slice: ``slice-003-part-00000.parquet``)."""
    return key[len(staging.prefix) + 1 :].replace("/", "-")


def publish(
    store: Store,
    staged: list[StoredObject],
    staging: Location,
    partition: Location,
    draft: Manifest,
    options: WriteOptions,
) -> tuple[list[StoredObject], Manifest]:
    """Replace ``partition`` with the ``staged`` objects and write ``draft`` completed with them as
    the manifest; returns the published objects and the manifest. ``options``: what every
    object written carries (the table's encryption)."""
    names = [published_name(staging, o.key) for o in staged]
    if len(set(names)) != len(names) or any(n in (MANIFEST, SUCCESS) for n in names):
        raise TargetError(f"staged object names collide: {sorted(names)}")
    refuse_purged(store, partition)
    invalidate(store, partition)
    old = [o.key for o in store.list_objects(partition)]
    store.delete(partition.bucket, old)
    if old:
        log.info("removed %d object(s) of the previous export of %s", len(old), partition.uri)
    for obj, name in zip(staged, names, strict=True):
        store.copy(partition.bucket, obj.key, partition.key(name), options)  # server-side, any size
    rows = {partition.key(name): o.rows for o, name in zip(staged, names, strict=True)}
    published = [
        StoredObject(o.key, o.size, o.etag, rows.get(o.key), store.checksum(partition.bucket, o.key))
        for o in store.list_objects(partition)
    ]
    expected = sorted((partition.key(name), o.size) for o, name in zip(staged, names, strict=True))
    if sorted((o.key, o.size) for o in published) != expected:
        raise TargetError(
            f"{partition.uri} does not hold exactly the staged objects after copying: "
            f"expected {expected}, found {sorted((o.key, o.size) for o in published)}"
        )
    manifest = completed(draft, published)
    write_manifest(store, partition, manifest, options)
    write_success(store, partition, options)
    log.info(
        "published %d object(s), %d rows, to %s (+ %s, %s)",
        len(published),
        manifest.rows,
        partition.uri,
        MANIFEST,
        SUCCESS,
    )
    return published, manifest
