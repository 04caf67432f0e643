"""Engine ``stream``: read the window through a server-side cursor, write JSON Lines, CSV or
Parquet to S3 by multipart upload.

CrateDB has no ``COPY ... TO STDOUT`` and no ROLLBACK, so the rows come through a
``DECLARE ... NO SCROLL CURSOR WITH HOLD`` in autocommit mode, ``FETCH FORWARD <batch_size>`` at a
time, and the cursor is closed explicitly. Each batch becomes an Arrow record batch (typed from
the column OIDs, ``reader.py``) and is encoded column by column (``formats.py``). Files roll over
at ``file_size_mb`` (``part-00000``, ``part-00001``, ...); parts upload while the next batch is
read. Memory is bounded by one batch, one Parquet row group and two upload parts, whatever the
table size. Objects appear only when their upload completes.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pyarrow as pa

from cratedb_airflow_export import sql
from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult
from cratedb_airflow_export.formats import Encoder, file_name, make_encoder
from cratedb_airflow_export.hooks import run_statement
from cratedb_airflow_export.reader import Prefetcher, register_loaders
from cratedb_airflow_export.s3 import MultipartWriter, StoredObject
from cratedb_airflow_export.verify import SourceInfo

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 10.0


class RollingFiles:
    """Encoded batches into ``part-NNNNN`` objects of about ``file_size`` bytes each."""

    def __init__(self, job: ExportJob, client: Any, schema: pa.Schema) -> None:
        self.job, self.client, self.schema = job, client, schema
        self.stored: list[StoredObject] = []
        self._writer: MultipartWriter | None = None
        self._encoder: Encoder | None = None
        self._rows = 0

    def _open(self) -> None:
        cfg = self.job.cfg
        key = self.job.staging.key(file_name(cfg.format, cfg.compression, len(self.stored)))
        self._writer = MultipartWriter(self.client, self.job.staging.bucket, key, cfg.part_size_mb * 1024 * 1024)
        self._encoder = make_encoder(cfg.format, self.schema, self._writer, cfg.compression, cfg.parquet_row_group_size)
        self._rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._encoder is None:
            self._open()
        assert self._encoder is not None and self._writer is not None
        self._encoder.write(batch)
        self._rows += batch.num_rows
        if self._writer.bytes_written >= self.job.cfg.file_size_mb * 1024 * 1024:
            self._finish()

    def _finish(self) -> None:
        assert self._encoder is not None and self._writer is not None
        self._encoder.close()
        self.stored.append(self._writer.close(rows=self._rows))
        self._encoder = self._writer = None

    def close(self) -> list[StoredObject]:
        if self._encoder is None and not self.stored:
            self._open()  # an empty window still gets one (empty) file: the day was exported
        if self._encoder is not None:
            self._finish()
        return self.stored

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()

    @property
    def bytes_written(self) -> int:
        return sum(o.size for o in self.stored) + (self._writer.bytes_written if self._writer else 0)


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
        register_loaders(cursor)  # JSON stays text: no parse and re-serialise per value
        run_statement(cursor, declare)
        rows = 0
        files: RollingFiles | None = None
        started = last_report = time.monotonic()
        try:
            log.info("Fetching with: %s", fetch.describe())
            with Prefetcher(cursor, fetch.sql, fetch.bind()) as batches:
                for batch in batches:
                    if files is None:
                        files = RollingFiles(job, client, batch.schema)
                    files.write(batch)
                    rows += batch.num_rows
                    if time.monotonic() - last_report >= PROGRESS_SECONDS:
                        last_report = time.monotonic()
                        log.info(
                            "%s: %d rows, %.1f MB written, %.0f rows/s",
                            job.cfg.qualified_name,
                            rows,
                            files.bytes_written / 1e6,
                            rows / (last_report - started),
                        )
                if files is None:  # an empty window
                    assert batches.schema is not None
                    files = RollingFiles(job, client, batches.schema)
            stored = files.close()
        except BaseException:
            if files is not None:
                files.abort()
            raise
        finally:
            _close_quietly(cursor, close)
        elapsed = max(time.monotonic() - started, 1e-9)
        log.info(
            "streamed %d rows of %s into %d %s file(s), %d bytes, %.0f rows/s",
            rows,
            job.cfg.qualified_name,
            len(stored),
            job.cfg.format,
            sum(o.size for o in stored),
            rows / elapsed,
        )
        return ExportResult(job, self.name, rows, stored)


def _close_quietly(cursor: Any, close: sql.Statement) -> None:
    try:
        run_statement(cursor, close)
    except Exception as exc:  # the connection may be gone; the export error matters more
        log.warning("could not close cursor: %s", exc)
