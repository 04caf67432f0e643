"""The one table of facts about the output formats: extension, compressions (the default first),
compression levels, content type, JSON styles, which engine writes which format, and which module
under ``formats/`` implements each.

Configuration validates against it when the DAG file is parsed, so it imports nothing but the
standard library. The ``copy`` engine's output is CrateDB's own (``COPY ... TO DIRECTORY``): JSON Lines
named by CrateDB, ``<table>_<shard>_<partition>.json[.gz]``, gzip or none, no levels (docs/cratedb.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

FormatName = Literal["jsonl", "csv", "parquet", "iceberg"]


@dataclass(frozen=True)
class Levels:
    """The compression levels a codec accepts (when none is configured: :data:`GZIP_LEVEL` for the
    text formats' gzip, the library's own default for Parquet's codecs)."""

    low: int
    high: int

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
    implementation: str  # the module under formats/ that writes and reads it (imported when a task runs)
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
GZIP_TEXT = Levels(1, 9)

JSONL = FormatSpec(
    "jsonl",
    "jsonl",
    ".jsonl",
    "application/x-ndjson",
    ("gzip", "zstd", "none"),
    MappingProxyType({"gzip": GZIP_TEXT}),  # zstd goes through Arrow's stream at its level: none to choose
    json_styles=("iso", "cratedb"),
)
CSV = FormatSpec(
    "csv", "csvfile", ".csv", "text/csv", ("gzip", "none"), MappingProxyType({"gzip": GZIP_TEXT}), empty_file=True
)
PARQUET = FormatSpec(
    "parquet",
    "parquet",
    ".parquet",
    "application/vnd.apache.parquet",
    ("zstd", "snappy", "gzip", "none"),
    MappingProxyType({"gzip": Levels(1, 9), "zstd": Levels(1, 22)}),  # Arrow's defaults: 9, 1
    compressed_inside=True,
    empty_file=True,
)
# Apache Iceberg: Parquet data files, committed to a table of a catalog (``iceberg.py``); an empty
# day is a commit without files
ICEBERG = FormatSpec(
    "iceberg",
    "parquet",
    ".parquet",
    "application/vnd.apache.parquet",
    PARQUET.compressions,
    PARQUET.levels,
    compressed_inside=True,
)
# CrateDB's COPY TO: JSON Lines named by CrateDB (the spec's extension is CrateDB's ``.json``)
COPY_JSONL = FormatSpec("jsonl", "jsonl", ".json", "application/x-ndjson", ("gzip", "none"), json_styles=("cratedb",))

FORMATS = MappingProxyType({"jsonl": JSONL, "csv": CSV, "parquet": PARQUET, "iceberg": ICEBERG})
#: engine -> the formats it writes
ENGINE_FORMATS = MappingProxyType(
    {"copy": MappingProxyType({"jsonl": COPY_JSONL}), "stream": FORMATS},
)


def output_spec(engine: str, fmt: str) -> FormatSpec | None:
    """What ``engine`` writes for ``fmt``; None when it cannot write that format."""
    return ENGINE_FORMATS[engine].get(fmt)


def check_choice(engine: str, fmt: str, compression: str, level: int | None, json_style: str | None) -> None:
    """Whether ``engine`` writes ``fmt`` with ``compression`` (at ``level``, in ``json_style``).
    Raises ValueError as ``"<field>: <why>"``, naming the field to change."""
    spec = output_spec(engine, fmt)
    if spec is None:
        raise ValueError(f"format: {fmt!r} needs engine 'stream'; CrateDB's COPY TO writes JSON Lines only")
    if compression not in spec.compressions:
        raise ValueError(
            f"compression: {compression!r} is not available for {fmt} with engine "
            f"{engine!r}; choose one of {', '.join(spec.compressions)}"
        )
    if json_style is not None and json_style not in spec.json_styles:
        raise ValueError(
            f"json_style: {json_style!r} is not available for {fmt} with engine {engine!r}"
            + (f"; choose {' or '.join(spec.json_styles)}" if spec.json_styles else ": it applies to JSON Lines")
        )
    if level is not None:
        levels = spec.levels.get(compression)
        if levels is None:
            raise ValueError(
                f"compression_level: {fmt} with {compression} compression and engine "
                f"{engine!r} has no levels to choose from; leave it out"
            )
        if level not in levels:
            raise ValueError(
                f"compression_level: {level} is not a {compression} level (from {levels.low} to {levels.high})"
            )
