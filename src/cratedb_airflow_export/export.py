"""One table's export of one window, end to end: plan it (no I/O) or run it.

``run_export`` resolves the S3 credentials, checks the bucket, connects to CrateDB, checks the
table and columns, lets the engine write into this attempt's staging folder, compares the rows
written with ``count(*)`` over the window, and publishes the staged objects as the partition
(``publish.py``: ``_manifest.json`` and ``_SUCCESS`` last). Any failure becomes an
:class:`ExportError` that names the table, the interval and the cause, with every secret
scrubbed from its text; a failed attempt never leaves a ``_SUCCESS``.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cratedb_airflow_export import sql
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.credentials import Redactor, S3Credentials, mask, resolve_credentials
from cratedb_airflow_export.engines import ExportJob, ExportResult, get_engine
from cratedb_airflow_export.hooks import CrateDBHook
from cratedb_airflow_export.layout import Location, partition, staging_root
from cratedb_airflow_export.manifest import Manifest, fingerprint, now_utc, object_entries
from cratedb_airflow_export.publish import publish
from cratedb_airflow_export.s3 import StoredObject, check_target, clear, list_objects, s3_client
from cratedb_airflow_export.verify import SourceInfo, check_counts, check_source, count_source
from cratedb_airflow_export.windows import Window

log = logging.getLogger(__name__)

#: What ``plan`` assumes without asking the database: a CrateDB source, TIMESTAMP WITH TIME ZONE.
ASSUMED_SOURCE = SourceInfo(is_cratedb=True, columns={}, timestamp_type="timestamp with time zone")


class ExportError(RuntimeError):
    """An export failed. The message names the table and the cause and holds no secret."""


def statements(
    cfg: TableExport, window: Window, source: SourceInfo, creds: S3Credentials | None
) -> list[sql.Statement]:
    """Every statement an export sends, in order: source checks, the engine's (per slice, when the
    day is sliced: each slice task also runs the checks), the row count check."""
    checks = [sql.detect_cratedb(), sql.describe_table(cfg), sql.describe_columns(cfg)]
    jobs = (
        [ExportJob(cfg, window)]
        if cfg.slices == 1
        else [ExportJob(cfg, window, slice_index=i) for i in range(cfg.slices)]
    )
    export = [s for job in jobs for s in get_engine(cfg.engine).statements(job, source, creds)]
    return [*checks, *export, sql.count_window(cfg, window, naive=source.naive_timestamps)]


def plan_export(cfg: TableExport, window: Window, creds: S3Credentials | None = None) -> dict[str, Any]:
    """The export of ``cfg`` for ``window`` as it would run, without touching CrateDB or S3."""
    planned = statements(cfg, window, ASSUMED_SOURCE, creds)
    return {
        "table": cfg.qualified_name,
        "engine": cfg.engine,
        "interval": window.as_dict(),
        "statements": [s.wire_sql for s in planned],
        "parameters": [s.shown_params() for s in planned],
        "target": ExportJob(cfg, window).location.uri,
    }


def _source_password_forms(conn_id: str) -> list[str]:
    from airflow.sdk import BaseHook

    password = BaseHook.get_connection(conn_id).password or ""
    forms = [f for f in {password, quote(password, safe=""), quote(password)} if f]
    mask(*forms)
    return forms


@dataclass(frozen=True)
class RunInfo:
    """Who runs the export: recorded in the manifest and used to name the staging folder."""

    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None

    @classmethod
    def from_context(cls, context: Any) -> RunInfo:
        ti = context.get("ti")
        if ti is None:
            return cls()
        return cls(dag_id=ti.dag_id, run_id=ti.run_id, try_number=ti.try_number)

    def attempt(self) -> str:
        """A folder name unique to this attempt: run id, try number and a random suffix."""
        base = f"{self.run_id or 'manual'}-try{self.try_number or 0}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base) + "-" + uuid.uuid4().hex[:8]

    def run_folder(self) -> str:
        """A folder name shared by all tasks of this run (the slices and their publish task)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.run_id or "manual")


@dataclass
class _Session:
    creds: S3Credentials
    client: Any
    cursor: Any
    source: SourceInfo


@contextmanager
def _session(cfg: TableExport, window: Window, what: str) -> Iterator[_Session]:
    """Credentials, a checked bucket, a CrateDB cursor and the checked source table; any failure
    inside becomes an :class:`ExportError` naming the table and the cause, secrets scrubbed."""
    redact = Redactor()
    try:
        creds = resolve_credentials(cfg.aws_conn_id)
        redact.add(*creds.secrets())
        client = s3_client(creds)
        check_target(client, partition(cfg, window.day))
        redact.add(*_source_password_forms(cfg.cratedb_conn_id))
        hook = CrateDBHook(cratedb_conn_id=cfg.cratedb_conn_id)
        with closing(hook.get_conn()) as conn, conn.cursor() as cursor:
            yield _Session(creds, client, cursor, check_source(cursor, cfg))
    except Exception as exc:
        cause = redact(f"{type(exc).__name__}: {exc}".strip())
        raise ExportError(
            f"{what} of {cfg.qualified_name} for [{window.start.isoformat()}, {window.end.isoformat()}) failed: {cause}"
        ) from None


def _verify_and_publish(session: _Session, result: ExportResult, run: RunInfo) -> None:
    """count(*) check, then staging -> partition with the manifest and _SUCCESS last."""
    job, engine = result.job, get_engine(result.job.cfg.engine)
    result.source_count = count_source(session.cursor, job.cfg, job.window, session.source)
    check_counts(job.cfg, result.rows, result.source_count)
    fingerprint_of = fingerprint(engine.statements(job, session.source, None))
    result.objects, _ = publish(
        session.client,
        result.objects,
        job.staging,
        job.location,
        lambda objects: _manifest(result, objects, fingerprint_of, run),
    )
    log.info(
        "Exported %d rows of %s into %d object(s), %d bytes, under %s",
        result.rows,
        job.cfg.qualified_name,
        len(result.objects),
        sum(o.size for o in result.objects),
        job.location.uri,
    )


def run_export(cfg: TableExport, window: Window, run: RunInfo | None = None) -> ExportResult:
    """Export, verify and publish ``cfg``'s rows of ``window``. Raises :class:`ExportError`."""
    run = run or RunInfo()
    job = ExportJob(cfg, window, attempt=run.attempt())
    engine = get_engine(cfg.engine)
    log.info(
        "Exporting %s, interval [%s, %s), engine %s, to %s",
        cfg.qualified_name,
        window.start.isoformat(),
        window.end.isoformat(),
        engine.name,
        job.location.uri,
    )
    with _session(cfg, window, "export") as session:
        # earlier attempts that died before cleaning up; no other attempt is running
        # (the task has max_active_tis_per_dag=1), so the whole staging root is ours
        stale = clear(session.client, staging_root(cfg, window.day))
        if stale:
            log.info("removed %d staged object(s) left by an earlier attempt", stale)
        try:
            result = engine.run(job, session.cursor, session.client, session.source, session.creds)
            _verify_and_publish(session, result, run)
        finally:
            _discard_staging(session.client, job.staging)
    return result


def export_slice(cfg: TableExport, window: Window, index: int, run: RunInfo) -> dict[str, Any]:
    """Export slice ``index`` of ``cfg.slices`` into the run's staging folder (``publish_slices``
    publishes them all). A retry first removes what an earlier try of this slice staged."""
    job = ExportJob(cfg, window, attempt=run.run_folder(), slice_index=index)
    log.info(
        "Exporting slice %d/%d of %s: [%s, %s)",
        index + 1,
        cfg.slices,
        cfg.qualified_name,
        job.range.start.isoformat(),
        job.range.end.isoformat(),
    )
    with _session(cfg, window, f"export of slice {index}") as session:
        clear(session.client, job.staging)
        result = get_engine(cfg.engine).run(job, session.cursor, session.client, session.source, session.creds)
    return {
        "slice": index,
        "range": job.range.as_dict(),
        "rows": result.rows,
        "objects": [o.as_dict() for o in result.objects],
    }


def publish_slices(cfg: TableExport, window: Window, slices: list[dict[str, Any]], run: RunInfo) -> ExportResult:
    """Check that the run's staging folder holds exactly what every slice reported, then verify the
    total against count(*) over the whole window and publish it as one partition."""
    job = ExportJob(cfg, window, attempt=run.run_folder())
    with _session(cfg, window, "publish") as session:
        try:
            reported = sorted((o["key"], o["size"]) for s in slices for o in s["objects"])
            staged = list_objects(session.client, job.staging)
            if sorted(s["slice"] for s in slices) != list(range(cfg.slices)):
                raise RuntimeError(
                    f"expected results of slices 0..{cfg.slices - 1}, got {[s['slice'] for s in slices]}"
                )
            if sorted((o.key, o.size) for o in staged) != reported:
                raise RuntimeError(f"{job.staging.uri} does not hold exactly the objects the slices reported")
            rows = {o["key"]: o["rows"] for s in slices for o in s["objects"]}
            objects = [StoredObject(o.key, o.size, o.etag, rows.get(o.key)) for o in staged]
            result = ExportResult(job, cfg.engine, sum(s["rows"] for s in slices), objects)
            _verify_and_publish(session, result, run)
        finally:
            _discard_staging(session.client, job.staging)
    return result


def _manifest(result: ExportResult, objects: list[StoredObject], fingerprint_of: str, run: RunInfo) -> Manifest:
    cfg, window = result.job.cfg, result.job.window
    return Manifest(
        table=cfg.qualified_name,
        interval=window.as_dict(),
        partition=result.job.location.uri,
        engine=result.engine,
        format=cfg.format,
        compression=cfg.compression,
        compression_level=cfg.compression_level,
        rows=result.rows,
        source_count=result.source_count,
        row_count_check=cfg.row_count_check,
        objects=object_entries(objects),
        statements_fingerprint=fingerprint_of,
        dag_id=run.dag_id,
        run_id=run.run_id,
        try_number=run.try_number,
        exported_at=now_utc(),
    )


def _discard_staging(client: Any, folder: Location) -> None:
    try:
        clear(client, folder)
    except Exception as exc:  # best effort: the next attempt clears the staging root anyway
        log.warning("could not remove the staging folder %s: %s", folder.uri, exc)
