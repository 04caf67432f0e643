"""Output formats: the facts about them (:mod:`.spec`), and the registry that finds the module
writing and reading each.

Each format is implemented by one module under ``formats/`` (``jsonl``, ``csvfile``, ``parquet``),
named by its spec and imported when a task writes or reads (it imports pyarrow); each provides
``encoder_for(json_style)`` and ``read_file(path, compression)``. Below them: ``base`` (the encoder
interface), ``fields`` (what a column's Arrow field says about its source), ``text`` (value to text)
and ``parallel_gzip``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from cratedb_airflow_export.formats.spec import (
    CODECS,
    COPY_JSONL,
    CSV,
    ENGINE_FORMATS,
    FORMATS,
    GZIP_LEVEL,
    JSONL,
    PARQUET,
    Codec,
    FormatName,
    FormatSpec,
    Levels,
    output_spec,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from cratedb_airflow_export.formats.base import Encoder

__all__ = [
    "CODECS",
    "COPY_JSONL",
    "CSV",
    "ENGINE_FORMATS",
    "FORMATS",
    "GZIP_LEVEL",
    "JSONL",
    "PARQUET",
    "Codec",
    "FormatName",
    "FormatSpec",
    "Levels",
    "encoder_class",
    "make_encoder",
    "output_spec",
    "read_rows",
]


def _implementation(spec: FormatSpec) -> Any:
    return importlib.import_module(f"{__name__}.{spec.implementation}")


def encoder_class(spec: FormatSpec, json_style: str | None = None) -> type[Encoder]:
    """The encoder class that writes ``spec`` (in ``json_style``, for JSON Lines; imports pyarrow)."""
    return _implementation(spec).encoder_for(json_style)  # type: ignore[no-any-return]


def make_encoder(
    spec: FormatSpec,
    schema: pa.Schema,
    sink: BinaryIO,
    compression: str,
    *,
    json_style: str | None = None,
    **options: Any,
) -> Encoder:
    """An encoder writing one file of ``spec`` (JSON Lines: in ``json_style``) to ``sink``; ``options``
    are :class:`~.base.Encoder`'s: ``level`` (None: the codec's default), ``row_group_size`` and
    ``sample`` (the file's first batch, from which Parquet's dictionary-encoded columns are chosen)."""
    return encoder_class(spec, json_style)(schema, sink, compression, **options)


def read_rows(spec: FormatSpec, path: str, compression: str) -> Iterator[dict[str, Any]]:
    """The rows of a file of ``spec`` written with ``compression`` (this project's files, or
    CrateDB's COPY TO lines): a dict per row, read a batch at a time (imports pyarrow)."""
    rows: Iterator[dict[str, Any]] = _implementation(spec).read_file(path, compression)
    return rows
