"""Export engines: how rows get from the source into the attempt's staging folder.

- ``copy``: CrateDB writes the files itself (``COPY ... TO DIRECTORY``), one per shard. Fast,
  nothing passes through the worker; CrateDB needs network access to the bucket.
- ``stream``: the worker reads the window (a server-side cursor on CrateDB, ADBC's binary COPY on
  PostgreSQL) and writes JSON Lines, CSV or Parquet by multipart upload; memory is bounded by
  batch and part size.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType

from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult

#: engine name -> the class that implements it, as ``module:Class`` (imported on first use: ``stream``
#: brings pyarrow). The names are those of ``formats.spec.ENGINE_FORMATS``, which says what each writes.
ENGINES = MappingProxyType(
    {
        "copy": "cratedb_airflow_export.engines.copy:CopyEngine",
        "stream": "cratedb_airflow_export.engines.stream:StreamEngine",
    }
)


def get_engine(name: str) -> Engine:
    """The engine called ``name``."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine


__all__ = ["ENGINES", "Engine", "ExportJob", "ExportResult", "get_engine"]
