"""Verification of what was written: the row-count check after an export, and the check of a
published partition against its manifest and the source (``cratedb-export verify``).

The checks before an export (table, columns, timestamp type) are the source's: ``source.check_table``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export.errors import VerificationError
from cratedb_airflow_export.layout import is_data_object, partition, staging_root
from cratedb_airflow_export.manifest import Manifest, Partition, read_partition
from cratedb_airflow_export.schema import as_read, file_type

if TYPE_CHECKING:
    import pyarrow as pa

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import CatalogParams
    from cratedb_airflow_export.source import SourceCounts
    from cratedb_airflow_export.storage import Store
    from cratedb_airflow_export.windows import Window

log = logging.getLogger(__name__)


def check_counts(cfg: TableExport, exported: int, counts: SourceCounts) -> None:
    """Rows exported vs ``count(*)`` over the same window, per the table's ``row_count_check``: they
    must equal the count taken after the last row was read, and the count taken while the rows were
    read when there was one (so that rows written into the window during the export are noticed)."""
    if exported == counts.after and counts.settled:
        log.info("%s: row count verified: %d exported = %d in the source", cfg.qualified_name, exported, counts.after)
        return
    message = (
        f"row count mismatch for {cfg.qualified_name}: {exported} rows exported, "
        f"but count(*) over the same window is {counts.after}"
    )
    if not counts.settled:
        message += (
            f" after the export and was {counts.while_reading} while it read (rows were written into or "
            "removed from the window during the export)"
        )
    if cfg.row_count_check == "strict":
        raise VerificationError(message + " (row_count_check: strict)")
    log.warning("%s (row_count_check: warn, publishing anyway; the manifest records %d)", message, counts.after)


@dataclass
class PartitionReport:
    """The result of checking a published partition against its manifest and the source."""

    partition: str
    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    empty: bool = False  # the folder holds nothing: never exported (or deleted)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def state(self) -> str:
        """``complete``, ``missing`` (nothing there) or ``failed`` (something there, not as it should be)."""
        return "complete" if self.ok else "missing" if self.empty else "failed"

    def line(self, table: str, day: str) -> str:
        """One line for a listing of partitions: table, day, state and why."""
        why = "; ".join(self.problems) if self.problems else (self.facts[0] if self.facts else "")
        return f"{table} {day} {self.state}" + (f": {why}" if why and self.state != "missing" else "")

    def as_dict(self, table: str, day: str) -> dict[str, Any]:
        """For ``--json``: one object per partition."""
        return {
            "table": table,
            "day": day,
            "partition": self.partition,
            "state": self.state,
            "facts": self.facts,
            "problems": self.problems,
        }

    def render(self) -> str:
        lines = [f"{'OK' if self.ok else 'FAILED'}: {self.partition}"]
        lines += [f"  - {fact}" for fact in self.facts]
        lines += [f"  ! {problem}" for problem in self.problems]
        return "\n".join(lines)


def verify_partition(store: Store, cursor: Any | None, cfg: TableExport, window: Window) -> PartitionReport:
    """Check a published partition: nothing left in its staging area (objects or open multipart
    uploads of failed attempts), the archive itself (:func:`check_archive`), and (with a source
    cursor) the source count of the window, unless retention purged the day from the source."""
    from cratedb_airflow_export.source import check_table, count_window

    staging = staging_root(cfg, window.day)
    problems = []
    uploads = store.open_uploads(staging)
    if uploads:
        problems.append(
            f"{len(uploads)} open multipart upload(s) under {staging.uri} left by failed attempts "
            f"(the next export of this day aborts them): {sorted({u.key for u in uploads})}"
        )
    leftovers = store.list_objects(staging)
    if leftovers:
        problems.append(f"{len(leftovers)} staged object(s) left under {staging.uri} by failed attempts")
    report, found = check_archive(store, cfg, window)
    report.problems[:0] = problems
    manifest = found.manifest
    if manifest is None or cursor is None:
        return report
    if found.purged and not found.restored:
        report.facts.append("the source's rows of the day were purged after archiving: not compared with the source")
        return report
    count = count_window(cursor, cfg, window, check_table(cursor, cfg))
    if count == manifest.rows:
        report.facts.append(f"source count(*) over the window: {count} = manifest rows")
    else:
        report.problems.append(f"source count(*) over the window is {count}, the manifest says {manifest.rows}")
    return report


def check_archive(store: Store, cfg: TableExport, window: Window) -> tuple[PartitionReport, Partition]:
    """The partition of ``window`` as an archive: ``_SUCCESS``, manifest, every listed object with
    its size, ETag and SHA-256 checksum, no unlisted data object, the objects' rows adding up to the
    manifest's total; and retention's record, if the day was purged from the source."""
    location = partition(cfg, window.day)
    report = PartitionReport(location.uri)
    found = read_partition(store, location, cfg.qualified_name, window.as_dict())
    report.problems.extend(found.problems)
    report.empty = not found.stored
    manifest, stored = found.manifest, found.stored
    if manifest is None:
        return report, found
    report.facts.append(
        f"manifest: {manifest.rows} rows in {len(manifest.objects)} object(s), engine {manifest.engine}, "
        f"exported {manifest.exported_at} by {manifest.dag_id or '-'} / {manifest.run_id or '-'}"
    )
    if found.purge is not None:
        report.facts.append(
            f"purged from the source ({found.purge.state}) at {found.purge.finished_at or found.purge.started_at}: "
            f"{found.purge.rows} rows of the day, by {found.purge.statement}"
        )
    if found.restore is not None:
        record = found.restore
        report.facts.append(
            f"restored into the table at {record.restored_at} ({record.rows} rows, {record.method})"
            + ("" if found.restored else ": before the purge, or of another export")
        )
    for entry in manifest.objects:
        stored_object = stored.get(entry.key)
        if stored_object is None:
            continue  # listed but missing: a problem of read_partition's
        # The content is what is compared: size and the checksum the store keeps. The ETag stands in
        # only where the manifest has no checksum: Azure and GCS give identical bytes written again
        # a new ETag, S3 gives a multipart object another than a single-part one with the same bytes.
        checksum = store.checksum(location.bucket, entry.key) if entry.checksum is not None else None
        if stored_object.size != entry.size or (entry.checksum is None and stored_object.etag != entry.etag):
            report.problems.append(
                f"{entry.key}: size/ETag {stored_object.size}/{stored_object.etag} differ from the manifest's "
                f"{entry.size}/{entry.etag}"
            )
        elif checksum != entry.checksum:
            report.problems.append(
                f"{entry.key}: the stored checksum ({checksum}) differs from the manifest's ({entry.checksum})"
            )
        elif manifest.schema_ is not None:
            report.problems += file_schema_problems(store, location.bucket, entry.key, manifest)
    unlisted = sorted(k for k in stored if is_data_object(k) and k not in {o.key for o in manifest.objects})
    if unlisted:
        report.problems.append(f"data objects not in the manifest: {unlisted}")
    if manifest.object_rows is not None and manifest.object_rows != manifest.rows:
        report.problems.append(f"manifest objects hold {manifest.object_rows} rows, its total says {manifest.rows}")
    return report, found


# --- the files against the manifest's schema ----------------------------------------------------

PARQUET_TAIL = 64 * 1024  # one request reads the footer of most files; a larger footer takes a second
FIRST_LINE_LIMIT = 16 * 1024 * 1024  # a text file's header or first row longer than this is not checked


def file_schema_problems(store: Store, bucket: str, key: str, manifest: Manifest) -> list[str]:
    """Whether the object holds the columns the manifest's schema lists: a Parquet file's own schema
    (names and Arrow types, from its footer), a CSV file's header, a JSON Lines file's first row (its
    keys; the ``cratedb`` style leaves NULL columns out). Reads the footer or the first line only."""
    try:
        return _schema_problems(store, bucket, key, manifest)
    except (OSError, EOFError, ValueError) as exc:  # not gzip, not Parquet, not JSON: not what was written
        return [f"{key}: cannot be read as {manifest.format} ({type(exc).__name__}: {exc})"]


def _schema_problems(store: Store, bucket: str, key: str, manifest: Manifest) -> list[str]:
    assert manifest.schema_ is not None
    names = [c.name for c in manifest.schema_]
    if manifest.format == "parquet":
        written = [(f.name, file_type(f, "parquet", None)) for f in _parquet_schema(store, bucket, key)]
        expected = [(c.name, c.file_type) for c in manifest.schema_]
        if [(n, as_read(t)) for n, t in written] != [(n, as_read(t)) for n, t in expected]:
            return [f"{key}: its Parquet schema {_pairs(written)} is not the manifest's {_pairs(expected)}"]
        return []
    line = _first_line(store, bucket, key, manifest.compression)
    if line is None:
        return []  # empty, or a first line too long to check
    if manifest.format == "csv":
        import csv

        header = next(csv.reader([line.decode("utf-8")]), [])
        return [] if header == names else [f"{key}: its header {header} is not the manifest's columns {names}"]
    keys = list(json.loads(line))
    extra = [k for k in keys if k not in names]
    if extra or (manifest.json_style == "iso" and keys != names):
        return [f"{key}: its first row holds {keys}, the manifest's columns are {names}"]
    return []


def _pairs(columns: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{name}: {kind}" for name, kind in columns) + "]"


def _parquet_schema(store: Store, bucket: str, key: str) -> pa.Schema:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tail = store.read_tail(bucket, key, PARQUET_TAIL)
    footer = int.from_bytes(tail[-8:-4], "little") + 8
    if footer > len(tail):
        tail = store.read_tail(bucket, key, footer)
    return pq.read_schema(pa.BufferReader(tail))


def _first_line(store: Store, bucket: str, key: str, compression: str) -> bytes | None:
    """The first line of a text object, its compression undone, streaming only as much as it takes."""
    import gzip

    import pyarrow as pa

    body = store.open(bucket, key)
    try:
        stream: Any = body
        if compression == "gzip":
            stream = gzip.GzipFile(fileobj=body)
        elif compression == "zstd":
            stream = pa.CompressedInputStream(pa.PythonFile(body, mode="r"), "zstd")
        read = b""
        while b"\n" not in read and len(read) < FIRST_LINE_LIMIT:
            chunk = stream.read(64 * 1024)
            if not chunk:
                break
            read += chunk
        if b"\n" not in read and len(read) >= FIRST_LINE_LIMIT:
            return None
        return read.split(b"\n", 1)[0] or None
    finally:
        body.close()


def verify_iceberg_day(
    store: Store, params: CatalogParams, cursor: Any | None, cfg: TableExport, window: Window
) -> PartitionReport:
    """Check a day of an Iceberg table: the commit of this export that names the day (its snapshot
    summary), every data file of the day in the table's current snapshot stored with its size, the
    rows the snapshot holds in the window against the commit, and (with a source cursor) against the
    source's count(*)."""
    from cratedb_airflow_export.iceberg import read_day
    from cratedb_airflow_export.iceberg_io import split_location
    from cratedb_airflow_export.source import check_table, count_window

    report = PartitionReport(f"iceberg:{cfg.iceberg_identifier} {window.day}")
    source = check_table(cursor, cfg) if cursor is not None else None
    day = read_day(store, params, cfg, window, naive=bool(source and source.naive_timestamps))
    rows, summary = day.rows, day.summary
    if not summary:
        report.empty = rows == 0
        report.problems.append(
            "no commit of this export names the day" + (f" ({rows} rows in the table)" if rows else "")
        )
        return report
    report.facts.append(
        f"committed: {summary.get('rows')} rows by {summary.get('dag_id') or '-'} / {summary.get('run_id') or '-'}; "
        f"the table holds {rows} rows in the window in {len(day.files)} file(s)"
    )
    for path, size in day.files:  # the rows above come from metadata: a file gone fails every reader
        bucket, key = split_location(store, path)
        stored = store.size(bucket, key)
        if stored is None:
            report.problems.append(f"{path}: a data file of the day is missing")
        elif stored != size:
            report.problems.append(f"{path}: {stored} bytes stored, the table's metadata says {size}")
    if str(rows) != summary.get("rows"):
        report.problems.append(f"the table holds {rows} rows in the window, its commit says {summary.get('rows')}")
    if cursor is not None and source is not None:
        count = count_window(cursor, cfg, window, source)
        if count == rows:
            report.facts.append(f"source count(*) over the window: {count} = rows in the table")
        else:
            report.problems.append(f"source count(*) over the window is {count}, the table holds {rows}")
    return report
