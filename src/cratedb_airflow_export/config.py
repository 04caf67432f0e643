"""The configuration schema: one :class:`TableExport` per table to export, where to, and how.

Each entry is validated on its own here, against the format facts (:mod:`.formats.spec`) and S3's
rules (:mod:`.storage`). Reading entries from files and the environment, the checks across entries
(no two tables in one folder) and the messages that name an entry's field are :mod:`.loading`'s.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cratedb_airflow_export.filters import check_filter
from cratedb_airflow_export.formats.spec import ENGINE_FORMATS, FORMATS, check_choice, output_spec
from cratedb_airflow_export.storage import LEASE_ROOT, PARTS_PER_FILE, STAGING_ROOT, Location, parse_target

__all__ = ["DEFAULT_SCHEMA", "TableExport", "qualify"]

DEFAULT_SCHEMA = "doc"
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
MAX_LATENESS = timedelta(days=7)
ALLOWED_CHANGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\['[^'\[\]]+'\])*")


def qualify(name: str) -> str:
    """``schema.table`` for a table name as a person writes it (``metrics`` is ``doc.metrics``)."""
    return name if "." in name else f"{DEFAULT_SCHEMA}.{name}"


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
        description="Hive layout: 's3://bucket/prefix' (or 'az://container/prefix', 'gs://bucket/prefix') exports to "
        "<prefix>/<schema>.<table>/dt=YYYY-MM-DD/.",
    )
    engine: Literal["copy", "stream"] = Field(
        default="copy",
        description="'copy': CrateDB writes to S3 itself (COPY TO). 'stream': read by cursor, upload from the worker.",
    )
    format: Literal["jsonl", "csv", "parquet", "iceberg"] = Field(
        default="jsonl",
        description="Output format; 'copy' writes JSON Lines only (CrateDB's COPY TO). 'iceberg': Parquet files "
        "committed to an Apache Iceberg table, one atomic commit per day (stream engine).",
    )
    iceberg_conn_id: str = Field(
        default="iceberg_default",
        description="format iceberg: the connection whose extra holds the catalog's properties (type sql, rest, glue).",
    )
    iceberg_table: str | None = Field(
        default=None,
        description="format iceberg: 'namespace.table' in the catalog (default: the source's schema.table); created "
        "at the first export, partitioned by day of timestamp_column, in the table folder of 'target'.",
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
    objects: Literal["json", "struct"] = Field(
        default="json",
        description="Parquet: OBJECT columns as JSON text ('json') or as structs of their keys ('struct'; the "
        "keys and their types from the source's columns, arrays of objects as lists of structs).",
    )
    columns: tuple[str, ...] | None = Field(default=None, description="Columns to export; default: all.")
    filter: str | None = Field(default=None, description="Extra SQL condition ANDed to the time window.")
    row_count_check: Literal["strict", "warn"] = Field(
        default="strict",
        description="count(*) over the window, taken after the last row was read (and the one taken while "
        "the rows were read), must equal the rows exported: 'strict' fails the task on a mismatch, 'warn' "
        "logs it and records the later count (for tables that still receive rows for past days).",
    )
    aws_conn_id: str = Field(default="aws_default", description="The Airflow connection of an s3:// target.")
    wasb_conn_id: str = Field(
        default="wasb_default",
        description="The Airflow connection (type wasb) of an az:// target: the storage account and its key, "
        "SAS token or connection string.",
    )
    gcp_conn_id: str = Field(
        default="google_cloud_default",
        description="The Airflow connection (type google_cloud_platform) of a gs:// target: a service account's "
        "key (keyfile_dict or key_path) and the project, or Application Default Credentials.",
    )
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
    retain_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        strict=True,
        description="Keep this many days in the source; the retention DAG (cratedb_table_retention) deletes "
        "older ones, each partition or day only when its archive verifies and matches the source right before "
        "the DELETE. Off by default.",
    )
    unpartitioned_retention: Literal["refuse", "accept_window"] = Field(
        default="refuse",
        description="retain_days on a CrateDB table that is not partitioned: CrateDB has no transaction to keep "
        "writers out between a day's checks and its DELETE, so a row written into the day in that moment would be "
        "deleted unarchived. 'refuse' deletes nothing of such a table; 'accept_window' deletes, and counts and "
        "reports such rows (the retention run fails). PostgreSQL tables are checked and deleted in one "
        "transaction that locks writers out, whatever this says.",
    )
    schema_change: Literal["evolve", "fail"] = Field(
        default="evolve",
        description="When a day's columns differ from the nearest complete day's: 'evolve' publishes the new "
        "shape and records the change in the manifest; 'fail' fails the export before publishing, naming the "
        "columns. A type change that breaks readers of the whole folder (bigint -> text) fails under both.",
    )
    allow_type_change: tuple[str, ...] = Field(
        default=(),
        description="Columns (or object keys, as tags['host']) whose breaking type change is published anyway.",
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
    batch_size: int = Field(
        strict=True,
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Rows per FETCH at most (stream, cursor path); fewer when wide rows would exceed the "
        "read's memory budget.",
    )
    cursors: int | None = Field(
        strict=True,
        default=None,
        ge=1,
        le=16,
        description="Connections that read the window at once (stream, cursor path: CrateDB), each taking "
        "sub-windows one by one. Default: one per processor of the CrateDB cluster (sys.nodes), 2 to 16; "
        "CrateDB runs a cursor's query on about one core.",
    )
    fetch_phase: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="CrateDB, stream: read the window in sub-windows of a bounded number of rows (cut by a "
        "histogram of the window) through CrateDB's fetch phase (a LIMIT no sub-window reaches), which reads "
        "stored rows in order where the table holds them so: about 45% less CPU for CrateDB where rows were "
        "written in about timestamp order, about 20% more where not. 'auto' reads one sub-window both ways "
        "first and takes the fetch phase when it was faster; 'always' and 'never' decide without that.",
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
            written = output_spec(engine, fmt) if engine in ENGINE_FORMATS and isinstance(fmt, str) else None
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

    @field_validator("allow_type_change")
    @classmethod
    def _allow_type_change(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not ALLOWED_CHANGE.fullmatch(name):
                raise ValueError(f"allow_type_change: {name!r} is not a column or an object key as tags['host']")
        return value

    @field_validator("iceberg_table")
    @classmethod
    def _iceberg_table(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split(".")
        if len(parts) < 2:
            raise ValueError(f"iceberg_table {value!r} must be 'namespace.table'")
        for part in parts:
            _check_identifier(part, "iceberg_table part")
        return value

    @field_validator("filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is None:
            return None
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
        location = parse_target("s3://" + value)
        if not location.prefix:
            raise ValueError("target_bucket needs a path after the bucket, as in 'bucket/metrics'")
        _outside_staging(location)
        return value.strip("/")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is None:
            return None
        _outside_staging(parse_target(value))
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_target(self) -> TableExport:
        if (self.target is None) == (self.target_bucket is None):
            raise ValueError("target: set exactly one of 'target_bucket' (tutorial layout) or 'target' (Hive layout)")
        check_choice(self.engine, self.format, self.compression, self.compression_level, self.json_style)
        if self.engine == "copy" and self.columns and self.compression == "none":
            # CrateDB's COPY TO with a column list closes each S3 upload twice (its JSON generator
            # closes the stream, then the writer does): uncompressed, the second close fails the
            # statement (seen on 5.10.16 and 6.4.3); gzip's stream ignores a second close.
            raise ValueError(
                "compression: CrateDB's COPY TO with a column list fails writing uncompressed files to S3 "
                "(CrateDB 5.10 to 6.4); use compression 'gzip', or engine 'stream'"
            )
        if self.format == "iceberg":
            self._check_iceberg()
        if self.store != "s3":
            self._check_other_store()
        if self.objects == "struct" and self.format not in ("parquet", "iceberg"):
            raise ValueError(f"objects: 'struct' is for Parquet; {self.format} writes objects as JSON")
        if self.retain_days is not None:
            self._check_retention(self.retain_days)
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

    def _check_iceberg(self) -> None:
        """What an Iceberg table of days supports so far."""
        if self.target is None:
            raise ValueError(
                "format: 'iceberg' needs 'target' (s3://, az:// or gs://<bucket>/<prefix>: the table's folder)"
            )
        if importlib.util.find_spec("pyiceberg") is None:
            raise ValueError(
                "format: 'iceberg' needs the package's iceberg extra, which is not installed: "
                "pip install 'cratedb-airflow-export[iceberg]'"
            )
        for key, value, off in (
            ("slices", self.slices, 1),
            ("reconcile_days", self.reconcile_days, 0),
            ("retain_days", self.retain_days, None),
            ("columns", self.columns, None),
        ):
            if value != off:
                raise ValueError(f"{key}: not available with format 'iceberg' yet")

    def _check_other_store(self) -> None:
        """What a target outside S3 supports so far."""
        module, extra, name = {
            "az": ("azure.storage.blob", "azure", "Azure Blob Storage"),
            "gs": ("google.cloud.storage", "gcs", "Google Cloud Storage"),
        }[self.store]
        try:
            sdk = importlib.util.find_spec(module)
        except ModuleNotFoundError:  # not even the namespace package
            sdk = None
        if sdk is None:
            raise ValueError(
                f"target: {self.store}:// needs the package's {extra} extra, which is not installed: "
                f"pip install 'cratedb-airflow-export[{extra}]'"
            )
        if self.sse is not None:
            raise ValueError(
                f"sse: S3's server-side encryption; {name} encrypts every object at rest itself "
                "(with its own keys or yours, set on the account or bucket)"
            )
        if self.engine == "copy" and self.store == "gs":
            raise ValueError(
                "engine: 'copy' has CrateDB write the files, and CrateDB's COPY TO writes s3:// and az:// only "
                "(no gs:// scheme); use engine 'stream'"
            )

    def _check_retention(self, retain_days: int) -> None:
        """Retention deletes whole rows of whole days: only what an export holds whole, after the days
        in which rows may still arrive or be recounted."""
        if self.columns is not None:
            raise ValueError("retain_days: the export holds only some columns; deleting the rows would lose the others")
        if self.filter is not None:
            raise ValueError("retain_days: the export holds only the filter's rows; deleting the day would lose others")
        if retain_days <= self.reconcile_days:
            raise ValueError(
                f"retain_days ({retain_days}) must be more than reconcile_days ({self.reconcile_days}): "
                "days still recounted for late rows are kept"
            )
        if timedelta(days=retain_days) <= self.lateness:
            raise ValueError(f"retain_days ({retain_days}) must be more than the lateness ({self.lateness})")

    @property
    def schema_name(self) -> str:
        return self.table.split(".")[0] if "." in self.table else DEFAULT_SCHEMA

    @property
    def table_name(self) -> str:
        return self.table.split(".")[-1]

    @property
    def qualified_name(self) -> str:
        """``schema.table``, always with the schema."""
        return qualify(self.table)

    @property
    def attempt_seconds(self) -> int:
        """The bound of one attempt, and of each long statement in it (``timeout_minutes``)."""
        return self.timeout_minutes * 60

    @property
    def iceberg_identifier(self) -> str:
        """The Iceberg table, ``namespace.table`` (``iceberg_table``, or the source's schema.table)."""
        return self.iceberg_table or self.qualified_name

    @property
    def store(self) -> str:
        """The scheme of the store the table exports to: ``s3``, ``az`` or ``gs``."""
        return parse_target(self.target).scheme if self.target is not None else "s3"

    @property
    def store_conn_id(self) -> str:
        """The connection of the target's store: ``aws_conn_id``, ``wasb_conn_id`` or ``gcp_conn_id``."""
        return {"s3": self.aws_conn_id, "az": self.wasb_conn_id, "gs": self.gcp_conn_id}[self.store]

    @property
    def task_id(self) -> str:
        return f"export_{self.qualified_name}"


def _outside_staging(location: Location) -> None:
    for reserved, use in ((STAGING_ROOT, "for staging"), (LEASE_ROOT, "for its leases")):
        if location.prefix.split("/")[0] == reserved:
            raise ValueError(f"{location.uri} is inside {reserved}/, which every export uses {use}")
    if any(ord(char) < 32 or char == "\x7f" for char in location.prefix):
        raise ValueError(f"the path {location.prefix!r} holds a control character")
