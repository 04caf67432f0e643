"""Configuration: which tables to export, where to, and how.

Entries come from the tutorial's ``TABLES`` list in ``include/table_exports.py`` or from a YAML file
named by ``CRATEDB_EXPORT_CONFIG``. Every entry is validated when the DAG is parsed; any problem
raises :class:`ConfigError` naming the entry and the field, so it shows up as a DAG import error.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cratedb_airflow_export.errors import ConfigError
from cratedb_airflow_export.formats import FORMATS, output_spec
from cratedb_airflow_export.layout import STAGING_ROOT, folders
from cratedb_airflow_export.storage import Location, parse_s3_uri, write_args

__all__ = ["CONFIG_ENV", "ConfigError", "DagSettings", "TableExport", "load_tables", "parse_tables"]

CONFIG_ENV = "CRATEDB_EXPORT_CONFIG"
DEFAULT_SCHEMA = "doc"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PARTS_PER_FILE = 9_000  # S3 allows 10,000 parts; a file may run past file_size_mb by one chunk or row group
# Airflow's limits (airflow.models.base.ID_LEN for task ids; the asset table's uri column): longer
# names would pass here and fail inside Airflow (tests/test_config.py checks them against Airflow's)
DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MAX_LATENESS = timedelta(days=7)
MAX_TASK_ID = 250
MAX_ASSET_URI = 1500


def _check_identifier(value: str, what: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits and '_', not starting with a digit)"
        )
    return value


class TableExport(BaseModel):
    """One table to export. Unknown keys are rejected."""

    # no whitespace stripping: a value with a stray newline is refused, not silently changed
    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str = Field(description="Table name, 'schema.table' or 'table' (schema 'doc').")
    timestamp_column: str = Field(description="Column whose value places a row in a day (UTC).")
    target_bucket: str | None = Field(
        default=None,
        description="Tutorial layout: 'bucket/path' exports to s3://bucket/path-YYYY-MM-DD/.",
    )
    target: str | None = Field(
        default=None,
        description="Hive layout: 's3://bucket/prefix' exports to <prefix>/<schema>.<table>/dt=YYYY-MM-DD/.",
    )
    engine: Literal["copy", "stream"] = Field(
        default="copy",
        description="'copy': CrateDB writes to S3 itself (COPY TO). 'stream': read by cursor, upload from the worker.",
    )
    format: Literal["jsonl", "csv", "parquet"] = Field(
        default="jsonl", description="Output format; 'copy' writes JSON Lines only (CrateDB's COPY TO)."
    )
    compression: Literal["gzip", "zstd", "snappy", "none"] = Field(
        default=None,  # type: ignore[arg-type]  # resolved per format before validation
        description="jsonl: gzip (default), zstd, none; csv: gzip (default), none; "
        "parquet: zstd (default), snappy, gzip, none; copy engine: gzip (default), none.",
    )
    compression_level: int | None = Field(
        default=None,
        strict=True,
        description="gzip 1-9 (default 4 for JSON Lines/CSV, 9 in Parquet), Parquet zstd 1-22 (default 1): "
        "lower is faster, higher makes smaller files (stream engine).",
    )
    json_style: Literal["iso", "cratedb"] | None = Field(
        default=None,  # resolved per engine and format before validation
        description="JSON Lines: 'iso' (the stream engine's default: ISO 8601 timestamps, NULL as null) or "
        "'cratedb' (the shape CrateDB's COPY TO writes, the copy engine's only one: epoch milliseconds, NULL "
        "columns left out), so that switching engines does not change what readers see.",
    )
    columns: tuple[str, ...] | None = Field(default=None, description="Columns to export; default: all.")
    filter: str | None = Field(default=None, description="Extra SQL condition ANDed to the time window.")
    row_count_check: Literal["strict", "warn"] = Field(
        default="strict",
        description="After writing, count(*) over the window must equal the rows exported: 'strict' fails "
        "the task on a mismatch, 'warn' logs it (for tables that still receive rows for past days).",
    )
    aws_conn_id: str = "aws_default"
    cratedb_conn_id: str = "cratedb_connection"
    reader: Literal["auto", "cursor"] = Field(
        default="auto",
        description="stream: 'auto' reads PostgreSQL sources through ADBC (COPY binary) and CrateDB through a "
        "server-side cursor; 'cursor' always uses the cursor.",
    )
    sse: Literal["AES256", "aws:kms"] | None = Field(
        default=None,
        description="Server-side encryption of every object written (data, manifest, _SUCCESS): 'AES256' "
        "(S3-managed keys) or 'aws:kms' (with sse_kms_key_id, or the account's default KMS key).",
    )
    sse_kms_key_id: str | None = Field(default=None, description="The KMS key (id, ARN or alias) for sse 'aws:kms'.")
    lateness: timedelta = Field(
        default=timedelta(0),
        description="How late rows of a day may still arrive ('2h', '90m', '1d12h'): a run waits until the "
        "day's end plus this before it exports (deferred, holding no worker).",
    )
    reconcile_days: int = Field(
        default=0,
        ge=0,
        le=92,
        strict=True,
        description="Each run also recounts this many days before its own and re-exports every partition "
        "whose source count(*) no longer matches its manifest's source_count (late rows).",
    )
    timeout_minutes: int = Field(
        default=120,
        ge=1,
        le=7 * 24 * 60,
        strict=True,
        description="An attempt that runs longer fails (the task's execution_timeout).",
    )
    stall_timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=3600,
        strict=True,
        description="How long the source may send nothing while rows are read, or answer nothing to a "
        "metadata query, before the attempt fails (a stalled database, a dead network path).",
    )
    slices: int = Field(
        strict=True,
        default=1,
        ge=1,
        le=64,
        description="Split the day into this many sub-windows, exported concurrently by mapped tasks and "
        "published together as one partition.",
    )
    batch_size: int = Field(strict=True, default=10_000, ge=1, le=1_000_000, description="Rows per FETCH (stream).")
    cursors: int = Field(
        strict=True,
        default=4,
        ge=1,
        le=16,
        description="Cursors that read the window at once (stream, cursor path: CrateDB), each a sub-window on "
        "a connection of its own: CrateDB runs a cursor's query on about one core.",
    )
    part_size_mb: int = Field(
        strict=True, default=8, ge=5, le=5_000, description="Multipart upload part size (stream)."
    )
    file_size_mb: int = Field(
        strict=True, default=512, ge=5, le=100_000, description="Start a new file once one reaches this size (stream)."
    )
    parquet_row_group_size: int = Field(
        strict=True, default=131_072, ge=1_000, le=10_000_000, description="Rows per row group."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_compression(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("compression") is None:
            spec = FORMATS.get(data.get("format", "jsonl"))
            data = {**data, "compression": spec.default_compression if spec else "gzip"}
        if isinstance(data, dict) and data.get("json_style") is None:
            engine, fmt = data.get("engine", "copy"), data.get("format", "jsonl")
            written = output_spec(engine, fmt) if engine in ("copy", "stream") and isinstance(fmt, str) else None
            if written is not None and written.json_styles:
                data = {**data, "json_style": written.json_styles[0]}
        return data

    @field_validator("lateness", mode="before")
    @classmethod
    def _lateness(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value == 0:
            return timedelta(0)
        if not isinstance(value, str):
            if isinstance(value, timedelta):
                return value
            raise ValueError(f"lateness {value!r} is not a duration such as '2h', '90m' or '1d12h'")
        match = DURATION.fullmatch(value)
        if not value or value == "0":
            return timedelta(0)
        if match is None or not any(match.groups()):
            raise ValueError(f"lateness {value!r} is not a duration such as '2h', '90m' or '1d12h'")
        days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
        delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if delta > MAX_LATENESS:
            raise ValueError(f"lateness {value!r} is more than {MAX_LATENESS.days} days")
        return delta

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2:
            raise ValueError(f"table {value!r} must be 'schema.table' or 'table'")
        for part in parts:
            _check_identifier(part, "table name part")
        return value

    @field_validator("timestamp_column")
    @classmethod
    def _timestamp_column(cls, value: str) -> str:
        return _check_identifier(value, "timestamp_column")

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("columns must not be empty; leave it out to export all columns")
        for column in value:
            _check_identifier(column, "column")
        if len(set(value)) != len(value):
            raise ValueError("columns lists a column twice")
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from cratedb_airflow_export.filters import check_filter

        value = value.strip()  # YAML block scalars end with a newline: insignificant in SQL
        check_filter(value)
        return value

    @field_validator("target_bucket")
    @classmethod
    def _target_bucket(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("s3://"):
            raise ValueError("target_bucket is 'bucket/path' without 's3://'; use 'target' for an s3:// URI")
        location = parse_s3_uri("s3://" + value)
        if not location.prefix:
            raise ValueError("target_bucket needs a path after the bucket, as in 'bucket/metrics'")
        _outside_staging(location)
        return value.strip("/")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _outside_staging(parse_s3_uri(value))
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_target(self) -> TableExport:
        if (self.target is None) == (self.target_bucket is None):
            raise ValueError("target: set exactly one of 'target_bucket' (tutorial layout) or 'target' (Hive layout)")
        spec = output_spec(self.engine, self.format)
        if spec is None:
            raise ValueError(f"format: {self.format!r} needs engine 'stream'; CrateDB's COPY TO writes JSON Lines only")
        if self.compression not in spec.compressions:
            raise ValueError(
                f"compression: {self.compression!r} is not available for {self.format} with engine "
                f"{self.engine!r}; choose one of {', '.join(spec.compressions)}"
            )
        if self.engine == "copy" and self.columns and self.compression == "none":
            # CrateDB's COPY TO with a column list closes each S3 upload twice (its JSON generator
            # closes the stream, then the writer does): uncompressed, the second close fails the
            # statement (seen on 5.10.16 and 6.4.3); gzip's stream ignores a second close.
            raise ValueError(
                "compression: CrateDB's COPY TO with a column list fails writing uncompressed files to S3 "
                "(CrateDB 5.10 to 6.4); use compression 'gzip', or engine 'stream'"
            )
        if self.json_style is not None and self.json_style not in spec.json_styles:
            raise ValueError(
                f"json_style: {self.json_style!r} is not available for {self.format} with engine {self.engine!r}"
                + (f"; choose {' or '.join(spec.json_styles)}" if spec.json_styles else ": it applies to JSON Lines")
            )
        if self.compression_level is not None:
            levels = spec.levels.get(self.compression)
            if levels is None:
                raise ValueError(
                    f"compression_level: {self.format} with {self.compression} compression and engine "
                    f"{self.engine!r} has no levels to choose from; leave it out"
                )
            if self.compression_level not in levels:
                raise ValueError(
                    f"compression_level: {self.compression_level} is not a {self.compression} level "
                    f"(from {levels.low} to {levels.high})"
                )
        for task_id in (self.task_id, f"{self.task_id}.slices"):
            if len(task_id) > MAX_TASK_ID:
                raise ValueError(
                    f"table: the task id {task_id[:40]!r}... would have {len(task_id)} characters; "
                    f"Airflow allows {MAX_TASK_ID}: use a shorter table name"
                )
        from cratedb_airflow_export.layout import dataset_uri

        if len(dataset_uri(self)) > MAX_ASSET_URI:
            field = "target" if self.target else "target_bucket"
            raise ValueError(
                f"{field}: the export location's Asset URI would have {len(dataset_uri(self))} characters; "
                f"Airflow allows {MAX_ASSET_URI}"
            )
        if self.sse_kms_key_id is not None:
            if self.sse != "aws:kms":
                raise ValueError("sse_kms_key_id: a KMS key needs sse: 'aws:kms'")
            if not self.sse_kms_key_id or not self.sse_kms_key_id.isprintable() or " " in self.sse_kms_key_id:
                raise ValueError(f"sse_kms_key_id: {self.sse_kms_key_id!r} is not a KMS key id, ARN or alias")
        if self.file_size_mb > self.part_size_mb * PARTS_PER_FILE:
            need = -(-self.file_size_mb // PARTS_PER_FILE)
            raise ValueError(
                f"file_size_mb: files of {self.file_size_mb} MB in parts of {self.part_size_mb} MB would need more "
                f"than S3's 10,000 parts per object; set part_size_mb to at least {need} or lower file_size_mb"
            )
        return self

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else DEFAULT_SCHEMA

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]

    @property
    def qualified_name(self) -> str:
        """``schema.table``, always with the schema."""
        return f"{self.schema_name}.{self.table_name}"

    @property
    def write_args(self) -> dict[str, str]:
        """What every object this table writes carries: checksum and encryption (``storage.write_args``)."""
        return write_args(self.sse, self.sse_kms_key_id)

    @property
    def attempt_seconds(self) -> int:
        """The bound of one attempt, and of each long statement in it (``timeout_minutes``)."""
        return self.timeout_minutes * 60

    @property
    def task_id(self) -> str:
        return f"export_{self.qualified_name}"


def _outside_staging(location: Location) -> None:
    if location.prefix.split("/")[0] == STAGING_ROOT:
        raise ValueError(f"{location.uri} is inside {STAGING_ROOT}/, which every export uses for staging")
    if any(ord(char) < 32 or char == "\x7f" for char in location.prefix):
        raise ValueError(f"the path {location.prefix!r} holds a control character")


def _describe(index: int, raw: Any) -> str:
    name = raw.get("table") if isinstance(raw, dict) else None
    return f"entry {index}" + (f" (table {name!r})" if name else "")


def _format_error(source: str, index: int, raw: Any, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not field:  # checks across fields name theirs as "field: message"
            named = re.match(r"^(\w+): (.*)$", message, re.S)
            field, message = (named.group(1), named.group(2)) if named else ("(entry)", message)
        if item["type"] == "extra_forbidden":
            message = f"unknown key; allowed keys: {', '.join(TableExport.model_fields)}"
        lines.append(f"{source}: {_describe(index, raw)}: field '{field}': {message}")
    return "\n".join(lines)


def parse_tables(entries: Any, source: str = "TABLES") -> list[TableExport]:
    """Validate raw entries (the tutorial's list of dicts). Raises :class:`ConfigError`."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ConfigError(f"{source}: expected a non-empty list of table entries, got {type(entries).__name__}")
    tables: list[TableExport] = []
    errors: list[str] = []
    for index, raw in enumerate(entries):
        if not isinstance(raw, dict):
            errors.append(f"{source}: entry {index}: expected a mapping, got {type(raw).__name__}")
            continue
        try:
            tables.append(TableExport.model_validate(raw))
        except ValidationError as exc:
            errors.append(_format_error(source, index, raw, exc))
    if errors:
        raise ConfigError("\n".join(errors))
    _check_unique(tables, source)
    return tables


def _check_unique(tables: list[TableExport], source: str) -> None:
    """No table twice, and no two tables writing into the same (or a nested) folder on any day:
    their folder families are compared as patterns, not on a sample day."""
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        where = f"{source}: entry {index} (table {table.table!r})"
        if table.qualified_name in seen:
            raise ConfigError(f"{where}: field 'table': duplicate of entry {seen[table.qualified_name]}")
        seen[table.qualified_name] = index
        mine = folders(table)
        for other_index, other in enumerate(tables[:index]):
            theirs = folders(other)
            if mine.overlaps(theirs):
                field = "target" if table.target else "target_bucket"
                raise ConfigError(
                    f"{where}: field '{field}': its folders ({mine}) overlap those of entry {other_index} "
                    f"({theirs}); two tables must never share a folder (publishing a partition replaces "
                    "everything in it, and CrateDB's file names omit the schema)"
                )


def _read_text(path: Path, origin: str) -> str:
    """The file's text; every way it can fail names how the path was given and the path."""
    where = f"{origin}{path}"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory, not a configuration file") from None
    except PermissionError:
        raise ConfigError(f"{where}: not readable (permission denied)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or exc})") from None


def load_python_tables(path: Path, origin: str = "") -> list[TableExport]:
    """Load ``TABLES`` from a Python file such as ``include/table_exports.py``."""
    code = _read_text(path, origin)
    namespace: dict[str, Any] = {"__file__": str(path), "__name__": "cratedb_export_table_config"}
    try:
        exec(compile(code, str(path), "exec"), namespace)
    except Exception as exc:
        raise ConfigError(f"{origin}{path}: failed to run: {type(exc).__name__}: {exc}") from None
    if "TABLES" not in namespace:
        raise ConfigError(f"{origin}{path}: defines no TABLES list")
    return parse_tables(namespace["TABLES"], source=f"{path.name} TABLES")


def load_yaml_tables(path: Path, origin: str = "") -> list[TableExport]:
    """Load entries from YAML: a list of entries, or a mapping with a ``tables`` list. ``origin``
    says how the path was given (``CRATEDB_EXPORT_CONFIG=``, ``--config``), for messages."""
    text = _read_text(path, origin)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}{path}: not valid YAML: {exc}") from None
    if isinstance(data, dict):
        unknown = set(data) - {"tables"}
        if unknown:
            raise ConfigError(f"{origin}{path}: unknown top-level key(s) {sorted(unknown)}; expected 'tables'")
        data = data.get("tables")
    return parse_tables(data, source=path.name)


def load_tables(default_file: Path | None = None) -> list[TableExport]:
    """The configured tables: ``$CRATEDB_EXPORT_CONFIG`` (YAML) if set, else ``default_file``."""
    env = os.environ.get(CONFIG_ENV)
    if env:
        return load_yaml_tables(Path(env), origin=f"{CONFIG_ENV}=")
    if default_file is None:
        raise ConfigError(f"no configuration: set {CONFIG_ENV} or pass include/table_exports.py")
    return load_python_tables(default_file)


class DagSettings(BaseModel):
    """DAG-level settings, from ``CRATEDB_EXPORT_*`` environment variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    catchup: bool = False
    start_date: str = "2024-01-01"
    pool: str = "cratedb_export"
    retries: int = Field(default=2, ge=0)
    retry_delay_minutes: float = Field(default=5, ge=0)
    max_active_runs: int = Field(default=4, ge=1)

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str) -> str:
        from datetime import date

        date.fromisoformat(value)
        return value

    @classmethod
    def from_env(cls, environ: Any = None) -> DagSettings:
        environ = os.environ if environ is None else environ
        raw = {
            name: environ[f"CRATEDB_EXPORT_{name.upper()}"]
            for name in cls.model_fields
            if f"CRATEDB_EXPORT_{name.upper()}" in environ
        }
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"CRATEDB_EXPORT_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"DAG settings: {problems}") from None
