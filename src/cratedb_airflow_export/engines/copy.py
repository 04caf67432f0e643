"""Engine ``copy``: CrateDB's server-side ``COPY ... TO DIRECTORY 's3://...'`` (the seed's).

The target URI, with the keys percent-encoded, is a bind parameter: it never appears in the
statement text that CrateDB records in ``sys.jobs_log`` or that the task log shows. The exact
row count comes from the command tag (``COPY <n>``).
"""

from __future__ import annotations

import logging
from typing import Any

from cratedb_airflow_export import sql
from cratedb_airflow_export.credentials import S3Credentials, cratedb_s3_uri
from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult
from cratedb_airflow_export.hooks import run_statement
from cratedb_airflow_export.s3 import list_objects
from cratedb_airflow_export.verify import SourceInfo

log = logging.getLogger(__name__)


class CopyEngine(Engine):
    name = "copy"

    def statements(self, job: ExportJob, source: SourceInfo, creds: S3Credentials | None) -> list[sql.Statement]:
        uri, protocol = cratedb_s3_uri(creds, job.staging)
        copy = sql.copy_to(job.cfg, job.range, uri, protocol=protocol, naive=source.naive_timestamps)
        return [sql.refresh(job.cfg), copy] if source.is_cratedb else [copy]

    def run(self, job: ExportJob, cursor: Any, client: Any, source: SourceInfo, creds: S3Credentials) -> ExportResult:
        for statement in self.statements(job, source, creds):
            run_statement(cursor, statement)
        rows = cursor.rowcount
        if rows is None or rows < 0:
            raise RuntimeError(f"COPY returned no row count (command tag {cursor.statusmessage!r})")
        objects = list_objects(client, job.staging)
        log.info(
            "COPY wrote %d rows of %s into %d object(s) under %s",
            rows,
            job.cfg.qualified_name,
            len(objects),
            job.staging.uri,
        )
        return ExportResult(job, self.name, rows, objects)
