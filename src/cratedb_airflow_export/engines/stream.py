"""Engine ``stream``: read the window through a server-side cursor, upload JSON Lines to S3.

CrateDB has no ``COPY ... TO STDOUT`` and no ROLLBACK, so the rows come through a
``DECLARE ... NO SCROLL CURSOR WITH HOLD`` in autocommit mode, ``FETCH FORWARD <batch_size>`` at a
time, and the cursor is closed explicitly. Memory is bounded by one batch plus one upload part,
whatever the table size. The object appears only when the upload completes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from cratedb_airflow_export import sql
from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult
from cratedb_airflow_export.formats import JsonLinesEncoder
from cratedb_airflow_export.hooks import run_statement
from cratedb_airflow_export.layout import data_file_name
from cratedb_airflow_export.s3 import MultipartWriter
from cratedb_airflow_export.verify import SourceInfo

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 10.0


class StreamEngine(Engine):
    name = "stream"

    def statements(self, job: ExportJob, source: SourceInfo, creds: S3Credentials | None) -> list[sql.Statement]:
        cursor_statements = [
            sql.declare_cursor(job.cfg, job.window, naive=source.naive_timestamps),
            sql.fetch(job.cfg.batch_size),
            sql.close_cursor(),
        ]
        return [sql.refresh(job.cfg), *cursor_statements] if source.is_cratedb else cursor_statements

    def run(self, job: ExportJob, cursor: Any, client: Any, source: SourceInfo, creds: S3Credentials) -> ExportResult:
        *prepare, declare, fetch, close = self.statements(job, source, creds)
        for statement in prepare:
            run_statement(cursor, statement)
        key = job.staging.key(data_file_name(job.cfg))
        writer = MultipartWriter(client, job.staging.bucket, key, job.cfg.part_size_mb * 1024 * 1024)
        run_statement(cursor, declare)
        rows = 0
        started = last_report = time.monotonic()
        try:
            encoder: JsonLinesEncoder | None = None
            log.info("Fetching with: %s", fetch.describe())
            while True:
                cursor.execute(fetch.sql, fetch.bind())
                if encoder is None:
                    encoder = JsonLinesEncoder([c.name for c in cursor.description], gzip=job.cfg.compression == "gzip")
                batch = cursor.fetchall()
                if not batch:
                    break
                writer.write(encoder.encode(batch))
                rows += len(batch)
                if time.monotonic() - last_report >= PROGRESS_SECONDS:
                    last_report = time.monotonic()
                    log.info(
                        "%s: %d rows, %.1f MB written, %.0f rows/s",
                        job.cfg.qualified_name,
                        rows,
                        writer.bytes_written / 1e6,
                        rows / (last_report - started),
                    )
            assert encoder is not None
            writer.write(encoder.finish())
            stored = writer.close(rows=rows)
        except BaseException:
            writer.abort()
            raise
        finally:
            _close_quietly(cursor, close)
        elapsed = max(time.monotonic() - started, 1e-9)
        log.info(
            "streamed %d rows of %s to s3://%s/%s (%d bytes, %.0f rows/s)",
            rows,
            job.cfg.qualified_name,
            job.staging.bucket,
            key,
            stored.size,
            rows / elapsed,
        )
        return ExportResult(job, self.name, rows, [stored])


def _close_quietly(cursor: Any, close: sql.Statement) -> None:
    try:
        run_statement(cursor, close)
    except Exception as exc:  # the connection may be gone; the export error matters more
        log.warning("could not close cursor: %s", exc)
