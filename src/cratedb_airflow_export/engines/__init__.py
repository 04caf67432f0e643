"""Export engines: how rows get from the source into the attempt's staging folder.

- ``copy``: CrateDB writes the files itself (``COPY ... TO DIRECTORY``), one per shard. Fast,
  nothing passes through the worker; CrateDB needs network access to the bucket.
- ``stream``: the worker reads the window (a server-side cursor on CrateDB, ADBC's binary COPY on
  PostgreSQL) and writes JSON Lines, CSV or Parquet by multipart upload; memory is bounded by
  batch and part size.
"""

from __future__ import annotations

from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (imported on first use: ``stream`` brings pyarrow)."""
    if name == "copy":
        from cratedb_airflow_export.engines.copy import CopyEngine

        return CopyEngine()
    if name == "stream":
        from cratedb_airflow_export.engines.stream import StreamEngine

        return StreamEngine()
    raise ValueError(f"unknown engine {name!r}")


__all__ = ["Engine", "ExportJob", "ExportResult", "get_engine"]
