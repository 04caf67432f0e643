"""One table's export of one window, end to end: plan it (no I/O), or run it.

:func:`run_export` opens an attempt (``attempt.py``: the bucket checked, the source table checked),
builds the engine's statements once and logs them, lets the engine write into this attempt's
staging folder, compares the rows written with ``count(*)`` over the window, and publishes the
staged objects as the partition (``publish.py``: ``_manifest.json`` and ``_SUCCESS`` last). A sliced
day is exported by :func:`export_slice` (one call per slice, each in its own task) and published by
:func:`publish_slices`. Any failure becomes an :class:`~.errors.ExportError` that names the table,
the interval and the cause, holds no secret and says whether a retry can help; a failed attempt
never leaves a ``_SUCCESS``.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export import sql
from cratedb_airflow_export.attempt import Attempt, describe, open_attempt
from cratedb_airflow_export.engines import ExportJob, ExportResult, get_engine
from cratedb_airflow_export.errors import ExportError
from cratedb_airflow_export.evolution import Evolution, check_schema
from cratedb_airflow_export.layout import staging_root
from cratedb_airflow_export.lease import Lease, held
from cratedb_airflow_export.manifest import Manifest, fingerprint, selection_fingerprint
from cratedb_airflow_export.progress import position_note
from cratedb_airflow_export.publish import publish, refuse_purged
from cratedb_airflow_export.readers import schema_from_types
from cratedb_airflow_export.schema import SchemaColumn, compare, schema_columns
from cratedb_airflow_export.source import CRATEDB, SourceCounts, SourceInfo, identity_statements
from cratedb_airflow_export.storage import StoredObject
from cratedb_airflow_export.verify import check_counts

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.connections import Connections
    from cratedb_airflow_export.credentials import StoreCredentials
    from cratedb_airflow_export.storage import Location
    from cratedb_airflow_export.windows import Window

__all__ = ["ExportError", "ExportResult", "RunInfo", "plan_export", "run_export"]

log = logging.getLogger(__name__)

#: What ``plan`` assumes without asking the database: a CrateDB source, TIMESTAMP WITH TIME ZONE.
ASSUMED_SOURCE = SourceInfo(dialect=CRATEDB, columns={}, timestamp_type="timestamp with time zone")


def plan_statements(
    cfg: TableExport, window: Window, source: SourceInfo, creds: StoreCredentials | None
) -> list[sql.Statement]:
    """Every statement an export sends, in order: source checks, the engine's (per slice, when the
    day is sliced: each slice task also runs the checks), the row count check."""
    crate = source.dialect is CRATEDB
    checks = [
        sql.server_version(),
        sql.describe_table(cfg),
        sql.describe_columns(cfg, source.dialect.column_policy),
        *([sql.describe_partitioning(cfg)] if crate else []),
        sql.describe_column_ids(cfg),
    ]
    jobs = (
        [ExportJob(cfg, window)]
        if cfg.slices == 1
        else [ExportJob(cfg, window, slice_index=i) for i in range(cfg.slices)]
    )
    engine = get_engine(cfg.engine)
    export = [s for job in jobs for s in engine.statements(job, source, creds)]
    version = source.dialect.row_version
    counted = sql.window_state(cfg, window, version, naive=source.naive_timestamps)
    return [*checks, *export, counted, *identity_statements(cfg, window, source)]


def plan_export(cfg: TableExport, window: Window, creds: StoreCredentials | None = None) -> dict[str, Any]:
    """The export of ``cfg`` for ``window`` as it would run, without touching the source or S3."""
    planned = plan_statements(cfg, window, ASSUMED_SOURCE, creds)
    return {
        "table": cfg.qualified_name,
        "engine": cfg.engine,
        "engine_needs": get_engine(cfg.engine).needs,
        "interval": window.as_dict(),
        "statements": [s.wire_sql for s in planned],
        "parameters": [s.shown_params() for s in planned],
        "target": f"iceberg:{cfg.iceberg_identifier}"
        if cfg.format == "iceberg"
        else ExportJob(cfg, window).location.uri,
    }


@dataclass(frozen=True)
class RunInfo:
    """Who runs the export: recorded in the manifest and used to name the staging folder."""

    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None

    def attempt_id(self) -> str:
        """A folder name unique to this attempt: run id, try number and a random suffix."""
        base = f"{self.run_id or 'manual'}-try{self.try_number or 0}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base) + "-" + uuid.uuid4().hex[:8]

    def run_folder(self) -> str:
        """A folder name shared by all tasks of this run (the slices and their publish task)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.run_id or "manual")


def run_export(
    cfg: TableExport,
    window: Window,
    run: RunInfo | None = None,
    connections: Connections | None = None,
    *,
    position: tuple[int, int] | None = None,
) -> ExportResult:
    """Export, verify and publish ``cfg``'s rows of ``window``. ``connections``: resolved by the
    caller (the Airflow edge), else from the environment; ``position``: (N, M) for the N-th of M
    days, for the log. Raises :class:`ExportError`."""
    run = run or RunInfo()
    job = ExportJob(cfg, window, attempt_id=run.attempt_id())
    log.info(
        "Exporting %s%s, interval [%s, %s), engine %s, to %s",
        cfg.qualified_name,
        position_note(position),
        window.start.isoformat(),
        window.end.isoformat(),
        cfg.engine,
        job.location.uri,
    )
    with (
        open_attempt(cfg, window, "export", connections) as attempt,
        held(attempt.store, job.location, job.attempt_id, describe("export", cfg, window)) as lease,
    ):
        refuse_purged(attempt.store, job.location)  # before any work: publish would refuse it too
        # holding the day's lease, no other writer is at work on it: whatever is staged for the day
        # was left by attempts that died before cleaning up
        _sweep(attempt, staging_root(cfg, window.day))
        try:
            result, statements = _stage(job, attempt)
            if cfg.format == "iceberg":
                return _verify_and_commit(attempt, result, run, statements, lease)
            schema = written_schema(result, attempt.database)
            return _verify_and_publish(attempt, result, run, statements, lease, schema)
        finally:
            _discard_staging(attempt, job.staging)


def export_slice(
    cfg: TableExport, window: Window, index: int, run: RunInfo, connections: Connections | None = None
) -> dict[str, Any]:
    """Export slice ``index`` of ``cfg.slices`` into the run's staging folder (``publish_slices``
    publishes them all). A retry first removes what an earlier try of this slice staged."""
    job = ExportJob(cfg, window, attempt_id=run.run_folder(), slice_index=index)
    log.info(
        "Exporting slice %d/%d of %s: [%s, %s)",
        index + 1,
        cfg.slices,
        cfg.qualified_name,
        job.range.start.isoformat(),
        job.range.end.isoformat(),
    )
    what = f"export of slice {index}"
    with (
        open_attempt(cfg, window, what, connections) as attempt,
        # the run's slices share the lease (its holder is the run) and leave it to their publish task
        held(attempt.store, job.location, run.run_folder(), describe(what, cfg, window), release=False),
    ):
        refuse_purged(attempt.store, job.location)
        _sweep(attempt, job.staging)  # what an earlier try of this slice left
        result, _ = _stage(job, attempt)
        schema = written_schema(result, attempt.database)
    return {
        "slice": index,
        "day": window.day.isoformat(),
        "range": job.range.as_dict(),
        "rows": result.rows,
        "objects": [o.as_dict() for o in result.objects],
        "schema": [c.model_dump() for c in schema],
    }


def publish_slices(
    cfg: TableExport,
    window: Window,
    slices: list[Mapping[str, Any]],
    run: RunInfo,
    connections: Connections | None = None,
) -> ExportResult:
    """Check that the run's staging folder holds exactly what every slice reported, then verify the
    total against count(*) over the whole window and publish it as one partition."""
    job = ExportJob(cfg, window, attempt_id=run.run_folder())
    with (
        open_attempt(cfg, window, "publish", connections) as attempt,
        held(attempt.store, job.location, run.run_folder(), describe("publish", cfg, window)) as lease,
    ):
        try:
            if sorted(s["slice"] for s in slices) != list(range(cfg.slices)):
                raise RuntimeError(
                    f"expected results of slices 0..{cfg.slices - 1}, got {[s['slice'] for s in slices]}"
                )
            reported = sorted((o["key"], o["size"]) for s in slices for o in s["objects"])
            staged = attempt.store.list_objects(job.staging)
            if sorted((o.key, o.size) for o in staged) != reported:
                raise RuntimeError(f"{job.staging.uri} does not hold exactly the objects the slices reported")
            rows = {o["key"]: o["rows"] for s in slices for o in s["objects"]}
            objects = tuple(StoredObject(o.key, o.size, o.etag, rows.get(o.key)) for o in staged)
            result = ExportResult(job, cfg.engine, sum(s["rows"] for s in slices), objects)
            statements = get_engine(cfg.engine).statements(job, attempt.database, None)
            schema = _slices_schema(cfg, slices)
            published = _verify_and_publish(attempt, result, run, statements, lease, schema)
        except BaseException:
            _discard_staging(attempt, job.staging)
            raise
        # published: whatever other runs of this day left staged (a run killed before its publish) is
        # dead weight. Publish tasks of a table never overlap, and a run still staging fails its
        # own publish check (staging != what its slices reported) instead of publishing twice.
        _discard_staging(attempt, staging_root(cfg, window.day))
        return published


def _slices_schema(cfg: TableExport, slices: list[Mapping[str, Any]]) -> list[SchemaColumn]:
    """The one schema every slice wrote; slices that wrote different shapes (the table changed while
    they ran) make one day's files unreadable as one: refused."""
    schemas = [[SchemaColumn.model_validate(c) for c in s["schema"]] for s in sorted(slices, key=lambda s: s["slice"])]
    for index, other in enumerate(schemas[1:], 1):
        changes = compare(schemas[0], other)
        if changes:
            raise RuntimeError(
                f"slice {index} of {cfg.qualified_name} wrote another schema than slice 0 "
                f"({'; '.join(str(c) for c in changes)}): the table changed while the day was exported; "
                "a retry exports it again"
            )
    return schemas[0]


def _stage(job: ExportJob, attempt: Attempt) -> tuple[ExportResult, list[sql.Statement]]:
    """Build the engine's statements once, log them, and let the engine write ``job.staging``."""
    engine = get_engine(job.cfg.engine)
    statements = engine.statements(job, attempt.database, attempt.creds)
    log.info(
        "%s (%s source): statements to send:\n%s",
        job.cfg.qualified_name,
        attempt.database.dialect,
        "\n".join(f"  {n}. {s.describe()}" for n, s in enumerate(statements, 1)),
    )
    engine.check(job, attempt)
    return engine.run(job, attempt, statements), statements


def written_schema(result: ExportResult, source: SourceInfo) -> list[SchemaColumn]:
    """The manifest's schema of what ``result`` wrote: from the files' Arrow schema (stream), or
    from the source's types of the columns exported (CrateDB's COPY TO)."""
    cfg = result.job.cfg
    written = result.written
    if written is None:
        held = list(cfg.columns) if cfg.columns else source.top_level
        written = schema_from_types({name: source.columns[name] for name in held}, source.partition_columns)
    return schema_columns(written, source.columns, cfg.format, cfg.json_style, source.not_null, source.policies)


def _verify_and_publish(
    attempt: Attempt,
    result: ExportResult,
    run: RunInfo,
    statements: list[sql.Statement],
    lease: Lease,
    schema: list[SchemaColumn],
) -> ExportResult:
    """count(*) check, the schema policy, then staging -> partition with the manifest and _SUCCESS
    last, if this attempt still holds the day's lease."""
    job = result.job
    counts = attempt.counts(job.window)
    check_counts(job.cfg, result.rows, counts)
    evolution = check_schema(attempt.store, job.cfg, job.window.day, schema)
    source_count = counts.after  # what reconcile compares with later
    checked = replace(result, source_count=source_count, source=attempt.database, evolution=evolution)
    draft = _draft_manifest(checked, run, fingerprint(statements), counts, schema)
    lease.check()
    published, _ = publish(attempt.store, list(result.objects), job.staging, job.location, draft, job.write_options)
    final = replace(checked, objects=tuple(published))
    log.info(
        "Exported %d rows of %s into %d object(s), %d bytes, under %s",
        final.rows,
        job.cfg.qualified_name,
        len(final.objects),
        sum(o.size for o in final.objects),
        job.location.uri,
    )
    return final


def _verify_and_commit(
    attempt: Attempt, result: ExportResult, run: RunInfo, statements: list[sql.Statement], lease: Lease
) -> ExportResult:
    """count(*) check, then one Iceberg commit replacing the day (``iceberg.py``), if this attempt
    still holds the day's lease."""
    from cratedb_airflow_export.iceberg import commit_day
    from cratedb_airflow_export.iceberg_io import split_location

    job, cfg = result.job, result.job.cfg
    assert attempt.connections.catalog is not None and result.written is not None
    counts = attempt.counts(job.window)
    check_counts(cfg, result.rows, counts)
    summary = {
        "table": cfg.qualified_name,
        "interval_start": job.window.start.isoformat(),
        "interval_end": job.window.end.isoformat(),
        "rows": str(result.rows),
        "source_count": str(counts.after),
        "source_marker": counts.marker or "",
        "statements_fingerprint": fingerprint(statements),
        "dag_id": run.dag_id or "",
        "run_id": run.run_id or "",
        "try_number": str(run.try_number or ""),
    }
    lease.check()
    committed = commit_day(
        attempt.store,
        attempt.connections.catalog,
        cfg,
        job.window,
        list(result.objects),
        result.written,
        summary,
        naive=attempt.database.naive_timestamps,
        attempt_id=job.attempt_id,
        options=job.write_options,
    )
    # the files as the table holds them (the staged copies are gone)
    files = tuple(
        replace(staged, key=split_location(attempt.store, path)[1], etag="")
        for staged, path in zip(result.objects, committed.files, strict=True)
    )
    final = replace(result, objects=files, source_count=counts.after, source=attempt.database, committed=committed)
    log.info(
        "Exported %d rows of %s into Iceberg table %s (snapshot %d, %d file(s))",
        final.rows,
        cfg.qualified_name,
        committed.table,
        committed.snapshot_id,
        len(committed.files),
    )
    return final


def _draft_manifest(
    result: ExportResult,
    run: RunInfo,
    statements_fingerprint: str,
    counts: SourceCounts,
    schema: list[SchemaColumn],
) -> Manifest:
    """The manifest without its objects (``publish`` completes it with what it published)."""
    cfg, window, source = result.job.cfg, result.job.window, result.source
    assert source is not None
    held = list(cfg.columns) if cfg.columns else source.top_level
    evolution = result.evolution or Evolution()
    compared_with = evolution.compared_with
    return Manifest(
        table=cfg.qualified_name,
        interval=window.as_dict(),
        partition=result.job.location.uri,
        engine=result.engine,
        format=cfg.format,
        compression=cfg.compression,
        compression_level=cfg.compression_level,
        json_style=cfg.json_style,
        rows=result.rows,
        source_count=result.source_count,
        source_marker=counts.marker,
        columns=held,
        filter=cfg.filter,
        table_id=counts.table_id,
        timestamp_column=cfg.timestamp_column,
        timestamp_type=source.timestamp_type,
        column_ids={name: source.column_ids[name] for name in held if name in source.column_ids},
        selection_fingerprint=selection_fingerprint(cfg, source),
        schema_=schema,
        schema_changes=evolution.changes if compared_with else None,
        schema_compared_with=compared_with.isoformat() if compared_with else None,
        row_count_check=cfg.row_count_check,
        sse=cfg.sse,
        sse_kms_key_id=cfg.sse_kms_key_id,
        objects=[],
        statements_fingerprint=statements_fingerprint,
        dag_id=run.dag_id,
        run_id=run.run_id,
        try_number=run.try_number,
    )


def _sweep(attempt: Attempt, folder: Location) -> None:
    """Remove what earlier attempts left below ``folder``: staged objects and open multipart uploads."""
    removed = attempt.store.clear(folder)
    aborted = attempt.store.abort_uploads(folder)
    if removed or aborted:
        log.info(
            "removed %d staged object(s) and aborted %d multipart upload(s) left by earlier attempts under %s",
            removed,
            aborted,
            folder.uri,
        )


def _discard_staging(attempt: Attempt, folder: Location) -> None:
    """This attempt's staging folder, at its end; best effort (the next attempt sweeps anyway)."""
    try:
        attempt.store.clear(folder)
        attempt.store.abort_uploads(folder)
    except Exception as exc:
        log.warning("could not remove the staging folder %s: %s", folder.uri, attempt.connections.redactor()(str(exc)))
