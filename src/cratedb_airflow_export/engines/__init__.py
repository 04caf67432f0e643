"""Export engines: how rows get from CrateDB into S3.

- ``copy``: CrateDB writes the files itself (``COPY ... TO DIRECTORY``), one per shard. Fast,
  nothing passes through the Airflow worker; CrateDB needs network access to the bucket.
- ``stream``: the worker reads the window through a server-side cursor and uploads JSON Lines by
  multipart upload; memory is bounded by batch and part size. Works with any PostgreSQL-wire
  source (CrateDB >= 5.2.6, PostgreSQL).
"""

from __future__ import annotations

from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult
from cratedb_airflow_export.engines.copy import CopyEngine
from cratedb_airflow_export.engines.stream import StreamEngine

ENGINES: dict[str, Engine] = {"copy": CopyEngine(), "stream": StreamEngine()}


def get_engine(name: str) -> Engine:
    return ENGINES[name]


__all__ = ["ENGINES", "Engine", "ExportJob", "ExportResult", "get_engine"]
