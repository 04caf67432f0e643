"""Loading the configuration: entries from the tutorial's ``TABLES`` list in
``include/table_exports.py`` or from a YAML file named by ``CRATEDB_EXPORT_CONFIG``, the checks across
entries (no table twice, no two tables sharing a folder), the limits of the Airflow that runs them, and
the DAG settings from ``CRATEDB_EXPORT_*`` variables.

Every entry is validated when the DAG is parsed; any problem raises :class:`ConfigError` naming the
entry and the field, so it shows up as a DAG import error.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.errors import ConfigError
from cratedb_airflow_export.layout import dataset_uri, folders

__all__ = ["CONFIG_ENV", "DagSettings", "load_python_tables", "load_tables", "load_yaml_tables", "parse_tables"]

CONFIG_ENV = "CRATEDB_EXPORT_CONFIG"
# libyaml's safe loader where PyYAML was built with it (the wheels are): the same documents, read
# about 10 times faster than the pure-Python loader (500 tables: 0.03 s instead of 0.25 s)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Airflow's limits (airflow.models.base.ID_LEN for task ids; the asset table's uri column): longer
# names would pass the schema and fail inside Airflow (tests check them against Airflow's own)
MAX_TASK_ID = 250
MAX_ASSET_URI = 1500


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
            table = TableExport.model_validate(raw)
        except ValidationError as exc:
            errors.append(_format_error(source, index, raw, exc))
            continue
        problem = _airflow_limits(table)
        if problem:
            errors.append(f"{source}: {_describe(index, raw)}: field '{problem[0]}': {problem[1]}")
        else:
            tables.append(table)
    if errors:
        raise ConfigError("\n".join(errors))
    _check_unique(tables, source)
    return tables


def _airflow_limits(cfg: TableExport) -> tuple[str, str] | None:
    """The field and the reason when Airflow could not hold ``cfg``'s task ids or Asset URI."""
    for task_id in (cfg.task_id, f"{cfg.task_id}.slices"):
        if len(task_id) > MAX_TASK_ID:
            return "table", (
                f"the task id {task_id[:40]!r}... would have {len(task_id)} characters; "
                f"Airflow allows {MAX_TASK_ID}: use a shorter table name"
            )
    uri = dataset_uri(cfg)
    if len(uri) > MAX_ASSET_URI:
        field = "target" if cfg.target else "target_bucket"
        return (
            field,
            f"the export location's Asset URI would have {len(uri)} characters; Airflow allows {MAX_ASSET_URI}",
        )
    return None


def _check_unique(tables: list[TableExport], source: str) -> None:
    """No table twice, and no two tables writing into the same (or a nested) folder on any day:
    their folder families are compared as patterns, not on a sample day.

    Near-linear in the number of tables: two families can only overlap when one's path is a prefix
    (as text) of the other's, so after sorting by bucket and path only the run of paths that start
    with a family's own path is compared with it."""
    seen: dict[str, int] = {}
    for index, table in enumerate(tables):
        if table.qualified_name in seen:
            where = f"{source}: entry {index} (table {table.table!r})"
            raise ConfigError(f"{where}: field 'table': duplicate of entry {seen[table.qualified_name]}")
        seen[table.qualified_name] = index
    families = [folders(table) for table in tables]
    order = sorted(range(len(tables)), key=lambda i: (families[i].bucket, families[i].prefix))
    clashes = []  # (later entry, earlier entry)
    for position, first in enumerate(order):
        mine = families[first]
        for second in order[position + 1 :]:
            theirs = families[second]
            if theirs.bucket != mine.bucket or not theirs.prefix.startswith(mine.prefix):
                break
            if mine.overlaps(theirs):
                clashes.append((max(first, second), min(first, second)))
    if clashes:
        index, other_index = min(clashes)  # the first entry that overlaps an earlier one, as read in order
        table, field = tables[index], "target" if tables[index].target else "target_bucket"
        raise ConfigError(
            f"{source}: entry {index} (table {table.table!r}): field '{field}': its folders ({families[index]}) "
            f"overlap those of entry {other_index} ({families[other_index]}); two tables must never share a "
            "folder (publishing a partition replaces everything in it, and CrateDB's file names omit the schema)"
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
        data = yaml.load(text, Loader=SAFE_LOADER)
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

    @property
    def start(self) -> datetime:
        """``start_date`` as the DAGs take it: midnight UTC."""
        return datetime.fromisoformat(self.start_date).replace(tzinfo=timezone.utc)

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str) -> str:
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
