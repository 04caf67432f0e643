"""Output formats: the one table of facts about them, and the encoders that write them.

Each format has one spec here (extension, compressions with the default first, compression levels,
content type, which engines write it); configuration validates against it, the encoders name
their files from it, and the manifest records its names. This module imports nothing heavy: the
DAG file validates configuration against it at parse time. The encoders live in one module per
format (``jsonl``, ``csv``, ``parquet``) and are imported when a task writes.

The ``copy`` engine's output is CrateDB's own (``COPY ... TO DIRECTORY``): JSON Lines named by
CrateDB, ``<table>_<shard>_<partition>.json[.gz]``, gzip or none, no levels (docs/cratedb.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

if TYPE_CHECKING:
    import pyarrow as pa

    from cratedb_airflow_export.formats.base import Encoder

FormatName = Literal["jsonl", "csv", "parquet"]
Compression = Literal["gzip", "zstd", "snappy", "none"]


@dataclass(frozen=True)
class Levels:
    """The compression levels a codec accepts, and the one used when none is configured."""

    low: int
    high: int
    default: int | None  # None: the library's own default

    def __contains__(self, level: object) -> bool:
        return isinstance(level, int) and self.low <= level <= self.high


@dataclass(frozen=True)
class Codec:
    """A compression codec around a whole file (text formats) or inside it (Parquet)."""

    name: str
    suffix: str  # appended to the file name when the codec wraps the whole file
    content_type: str | None  # of a file the codec wraps whole; None: the format's own


CODECS = MappingProxyType(
    {
        "gzip": Codec("gzip", ".gz", "application/gzip"),
        "zstd": Codec("zstd", ".zst", "application/zstd"),
        "snappy": Codec("snappy", "", None),
        "none": Codec("none", "", None),
    }
)


@dataclass(frozen=True)
class FormatSpec:
    name: FormatName
    extension: str
    content_type: str
    compressions: tuple[str, ...]  # the first is the default
    levels: MappingProxyType[str, Levels] = field(default_factory=lambda: MappingProxyType({}))
    compressed_inside: bool = False  # Parquet compresses its pages: no suffix, its own content type
    # An export without rows writes one file only where an empty file reads as zero rows everywhere:
    # Parquet (the schema, no row groups) and CSV (the header). An empty JSON Lines file is not
    # readable by every reader (pyarrow: "Empty JSON stream"), so an empty day has no JSON Lines
    # object; its manifest says rows 0.
    empty_file: bool = False
    # JSON Lines: the shapes it can be written in (the first is the default; docs/cratedb.md has
    # CrateDB's): "iso" (ISO 8601 timestamps, NULL as null) or "cratedb" (COPY TO's: epoch
    # milliseconds, NULL columns left out)
    json_styles: tuple[str, ...] = ()

    @property
    def default_compression(self) -> str:
        return self.compressions[0]

    def file_name(self, compression: str, index: int, stem: str = "part") -> str:
        """``part-00000.jsonl.gz``, ``part-00001.csv``, ``part-00000.parquet``."""
        suffix = "" if self.compressed_inside else CODECS[compression].suffix
        return f"{stem}-{index:05d}{self.extension}{suffix}"

    def content_type_for(self, compression: str) -> str:
        if self.compressed_inside:
            return self.content_type
        return CODECS[compression].content_type or self.content_type


# zlib-ng's level 4 (its "medium" strategy), measured on 2,000,000 rows of the tutorial's metrics
# (CPU seconds, compressed size): JSON Lines (438 MB) level 6 2.06 s 10.2%, level 5 1.38 s 10.6%,
# level 4 1.27 s 10.6%, level 3 1.14 s 11.6%, level 1 0.56 s 16.4%; CSV (382 MB) level 6 2.04 s
# 11.7%, level 4 1.24 s 12.2%. Arrow's gzip stream uses 9: slower still.
GZIP_LEVEL = 4
GZIP_TEXT = Levels(1, 9, GZIP_LEVEL)

JSONL = FormatSpec(
    "jsonl",
    ".jsonl",
    "application/x-ndjson",
    ("gzip", "zstd", "none"),
    MappingProxyType({"gzip": GZIP_TEXT}),  # zstd goes through Arrow's stream at its level: none to choose
    json_styles=("iso", "cratedb"),
)
CSV = FormatSpec("csv", ".csv", "text/csv", ("gzip", "none"), MappingProxyType({"gzip": GZIP_TEXT}), empty_file=True)
PARQUET = FormatSpec(
    "parquet",
    ".parquet",
    "application/vnd.apache.parquet",
    ("zstd", "snappy", "gzip", "none"),
    MappingProxyType({"gzip": Levels(1, 9, None), "zstd": Levels(1, 22, None)}),  # Arrow's defaults: 9, 1
    compressed_inside=True,
    empty_file=True,
)
# CrateDB's COPY TO: JSON Lines named by CrateDB (the spec's extension is CrateDB's ``.json``)
COPY_JSONL = FormatSpec("jsonl", ".json", "application/x-ndjson", ("gzip", "none"), json_styles=("cratedb",))

FORMATS = MappingProxyType({"jsonl": JSONL, "csv": CSV, "parquet": PARQUET})
#: engine -> the formats it writes
ENGINE_FORMATS = MappingProxyType(
    {"copy": MappingProxyType({"jsonl": COPY_JSONL}), "stream": FORMATS},
)


def output_spec(engine: str, fmt: str) -> FormatSpec | None:
    """What ``engine`` writes for ``fmt``; None when it cannot write that format."""
    return ENGINE_FORMATS[engine].get(fmt)


def encoder_class(spec: FormatSpec, json_style: str | None = None) -> type[Encoder]:
    """The encoder class that writes ``spec`` (in ``json_style``, for JSON Lines; imports pyarrow)."""
    if spec.name == "jsonl":
        from cratedb_airflow_export.formats.jsonl import CrateDBJsonLinesEncoder, JsonLinesEncoder

        return CrateDBJsonLinesEncoder if json_style == "cratedb" else JsonLinesEncoder
    if spec.name == "csv":
        from cratedb_airflow_export.formats.csv import CsvEncoder

        return CsvEncoder
    from cratedb_airflow_export.formats.parquet import ParquetEncoder

    return ParquetEncoder


def make_encoder(
    spec: FormatSpec,
    schema: pa.Schema,
    sink: BinaryIO,
    compression: str,
    *,
    level: int | None = None,
    row_group_size: int = 131_072,
    sample: pa.RecordBatch | None = None,
    json_style: str | None = None,
) -> Encoder:
    """An encoder writing one file of ``spec`` to ``sink``. ``level``: the codec's level (None: the
    spec's default); ``row_group_size`` and ``sample`` (the file's first batch, from which the
    dictionary-encoded columns are chosen) apply to Parquet, ``json_style`` to JSON Lines."""
    if spec.name == "parquet":
        from cratedb_airflow_export.formats.parquet import ParquetEncoder

        return ParquetEncoder(schema, sink, compression, level, row_group_size=row_group_size, sample=sample)
    return encoder_class(spec, json_style)(schema, sink, compression, level)


def read_rows(spec: FormatSpec, path: str, compression: str) -> Iterator[dict[str, Any]]:
    """The rows of a file of ``spec`` written with ``compression`` (this project's files, or
    CrateDB's COPY TO lines): a dict per row, read a batch at a time (imports pyarrow)."""
    if spec.name == "parquet":
        from cratedb_airflow_export.formats.parquet import read_rows as parquet_rows

        yield from parquet_rows(path)
        return
    from cratedb_airflow_export.formats.csv import read_rows as csv_rows
    from cratedb_airflow_export.formats.jsonl import read_rows as jsonl_rows

    with open_decompressed(path, compression) as stream:
        yield from (csv_rows if spec.name == "csv" else jsonl_rows)(stream)


def open_decompressed(path: str, compression: str) -> BinaryIO:
    """``path`` opened for reading, its whole-file ``compression`` undone."""
    import gzip

    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        import pyarrow as pa

        return pa.CompressedInputStream(pa.OSFile(path), "zstd")  # type: ignore[no-any-return]
    return open(path, "rb")
