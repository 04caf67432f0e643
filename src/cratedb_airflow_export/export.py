"""One table's export of one window, end to end: plan it (no I/O) or run it.

``run_export`` resolves the S3 credentials, checks the bucket, connects to CrateDB, checks the
table and columns, then hands over to the engine. Any failure becomes an :class:`ExportError`
that names the table, the interval and the cause, with every secret scrubbed from its text.
"""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Any
from urllib.parse import quote

from cratedb_airflow_export import sql
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.credentials import Redactor, S3Credentials, mask, resolve_credentials
from cratedb_airflow_export.engines import ExportJob, ExportResult, get_engine
from cratedb_airflow_export.hooks import CrateDBHook
from cratedb_airflow_export.s3 import check_target, s3_client
from cratedb_airflow_export.verify import SourceInfo, check_source
from cratedb_airflow_export.windows import Window

log = logging.getLogger(__name__)

#: What ``plan`` assumes without asking the database: a CrateDB source, TIMESTAMP WITH TIME ZONE.
ASSUMED_SOURCE = SourceInfo(is_cratedb=True, columns={}, timestamp_type="timestamp with time zone")


class ExportError(RuntimeError):
    """An export failed. The message names the table and the cause and holds no secret."""


def statements(
    cfg: TableExport, window: Window, source: SourceInfo, creds: S3Credentials | None
) -> list[sql.Statement]:
    """Every statement an export sends, in order: source checks, then the engine's."""
    checks = [sql.detect_cratedb(), sql.describe_table(cfg), sql.describe_columns(cfg)]
    return checks + get_engine(cfg.engine).statements(ExportJob(cfg, window), source, creds)


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


def run_export(cfg: TableExport, window: Window) -> ExportResult:
    job = ExportJob(cfg, window)
    engine = get_engine(cfg.engine)
    redact = Redactor()
    log.info(
        "Exporting %s, interval [%s, %s), engine %s, to %s",
        cfg.qualified_name,
        window.start.isoformat(),
        window.end.isoformat(),
        engine.name,
        job.location.uri,
    )
    try:
        creds = resolve_credentials(cfg.aws_conn_id)
        redact.add(*creds.secrets())
        client = s3_client(creds)
        check_target(client, job.location)
        redact.add(*_source_password_forms(cfg.cratedb_conn_id))
        hook = CrateDBHook(cratedb_conn_id=cfg.cratedb_conn_id)
        with closing(hook.get_conn()) as conn, conn.cursor() as cursor:
            source = check_source(cursor, cfg)
            result = engine.run(job, cursor, client, source, creds)
    except Exception as exc:
        cause = redact(f"{type(exc).__name__}: {exc}".strip())
        raise ExportError(
            f"export of {cfg.qualified_name} for [{window.start.isoformat()}, {window.end.isoformat()}) failed: {cause}"
        ) from None
    log.info(
        "Exported %d rows of %s into %d object(s), %d bytes, under %s",
        result.rows,
        cfg.qualified_name,
        len(result.objects),
        sum(o.size for o in result.objects),
        job.location.uri,
    )
    return result
