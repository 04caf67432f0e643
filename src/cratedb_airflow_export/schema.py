"""The schema of a partition: what every manifest records of the columns written, and how two
partitions' schemas differ.

A :class:`SchemaColumn` is one column as written: its name, its type in the source (``bigint``,
``object``, ``text_array``), its type in the file (the Arrow type for Parquet, the JSON value for
JSON Lines, ``text`` for CSV), whether the source allows NULL in it, and for OBJECT columns the
object's keys (sub-columns, with their source types) as the source knew them when the day was
exported, and its column policy (CrateDB: ``strict``, ``dynamic``, ``ignored``).

:func:`compare` lists what changed from one schema to the next (a column or an object key added or
removed, a type changed) and marks the changes that break readers of the whole folder: a column whose
type cannot be widened into the other (``bigint`` -> ``text``). Nothing here reads files or the
source: the engines and the export hand in the facts (pyarrow is imported when a task runs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from cratedb_airflow_export.formats.fields import is_json, is_partition

if TYPE_CHECKING:
    import pyarrow as pa

SchemaPolicy = Literal["evolve", "fail"]


class SchemaColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source_type: str  # as the source's information_schema names it
    file_type: str  # Parquet: the Arrow type; JSON Lines: the JSON value; CSV: text
    nullable: bool = True
    # OBJECT columns: key (CrateDB's sub-column path below the column, ``host`` or ``a['b']``) -> source
    # type, as the source knew them when the day was exported; None: not an object, or keys unknown
    keys: dict[str, str] | None = None
    policy: str | None = None  # OBJECT: the column policy (CrateDB: strict, dynamic, ignored)


class SchemaChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str  # a column, or an object key as ``tags['host']``
    change: Literal["added", "removed", "type changed"]
    before: str | None = None  # the type before (removed, type changed)
    after: str | None = None  # the type after (added, type changed)
    breaking: bool = False  # readers of the whole folder cannot read both types as one column

    def __str__(self) -> str:
        if self.change == "added":
            return f"{self.column} added ({self.after})"
        if self.change == "removed":
            return f"{self.column} removed (was {self.before})"
        return f"{self.column} changed from {self.before} to {self.after}" + (" (breaking)" if self.breaking else "")


# --- what a column is in the file -----------------------------------------------------------


def file_type(field: pa.Field, fmt: str, json_style: str | None) -> str:
    """How ``field`` is written in ``fmt``: Parquet keeps the Arrow type; JSON Lines writes a JSON
    value (timestamps as ISO 8601 strings, or epoch milliseconds in the ``cratedb`` style); CSV text."""
    if fmt == "parquet":
        return str(field.type) + (" (JSON text)" if is_json(field) else "")
    if fmt == "csv":
        return "text"
    if json_style == "cratedb" and is_partition(field):
        return "string"  # COPY TO writes a partition column's value as a JSON string
    return _json_type(field.type, is_json(field), json_style)


LIST_ITEM_NAME = re.compile(r"(list<)[A-Za-z_][A-Za-z0-9_]*: ")


def as_read(file_type: str) -> str:
    """A file type as readers see it: a list's type without the name of its item field, which
    writers choose (Arrow says ``item``, Parquet files written by pyarrow say ``element``) and no
    reader exposes: ``list<item: string>`` and ``list<element: string>`` are both ``list<string>``."""
    return LIST_ITEM_NAME.sub(r"\1", file_type)


def _json_type(kind: pa.DataType, json_text: bool, json_style: str | None) -> str:
    import pyarrow as pa  # when a task runs: not when DAG files are parsed

    if json_text:
        return "json"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "number"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "integer (epoch milliseconds)" if json_style == "cratedb" else "string (ISO 8601)"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"array<{_json_type(kind.value_type, False, json_style)}>"
    if pa.types.is_struct(kind):
        return "object"
    return "string"


# --- the columns of a partition ---------------------------------------------------------------


OBJECT_TYPES = frozenset({"object", "object_array"})  # CrateDB's: their sub-columns are listed
SUBSCRIPT = re.compile(r"^(?P<top>[^\[]+)\['(?P<rest>.*)$", re.S)


def object_keys(column: str, source_types: Mapping[str, str]) -> dict[str, str]:
    """The sub-columns of ``column`` in ``source_types`` (CrateDB lists ``tags['host']`` and
    ``tags['a']['b']``), as paths below it (``host``, ``a['b']``) -> source type, sorted by path."""
    keys = {}
    for name, kind in source_types.items():
        match = SUBSCRIPT.match(name)
        if match is None or match["top"] != column:
            continue
        first, _, deeper = match["rest"].partition("']")
        keys[first + deeper] = kind
    return dict(sorted(keys.items()))  # in name order: the same struct whatever order the source lists them in


def schema_columns(
    written: pa.Schema,
    source_types: Mapping[str, str],
    fmt: str,
    json_style: str | None,
    not_null: frozenset[str] = frozenset(),
    policies: Mapping[str, str] | None = None,
) -> list[SchemaColumn]:
    """The manifest's schema of a partition written with ``written`` (the Arrow schema of its files)
    from a table with ``source_types`` (name -> information_schema data_type, sub-columns included)."""
    columns = []
    for field in written:
        source_type = source_types.get(field.name, "unknown")
        is_object = source_type.lower() in OBJECT_TYPES
        columns.append(
            SchemaColumn(
                name=field.name,
                source_type=source_type,
                file_type=file_type(field, fmt, json_style),
                nullable=field.name not in not_null,
                keys=object_keys(field.name, source_types) if is_object else None,
                policy=(policies or {}).get(field.name) if is_object else None,
            )
        )
    return columns


# --- how two schemas differ ----------------------------------------------------------------


# Types a column may move between without breaking readers of the whole folder: each widens into
# the next (DuckDB's union_by_name, pyarrow's permissive unification and Iceberg's schema evolution
# all promote int -> bigint and real -> double precision).
WIDENING = (
    ("smallint", "integer", "bigint"),
    ("real", "double precision"),
    ("byte", "smallint", "integer", "bigint"),
)


def breaking(before: str, after: str) -> bool:
    """Whether a column whose source type moved from ``before`` to ``after`` breaks readers of both."""
    if before == after:
        return False
    for chain in WIDENING:
        if before in chain and after in chain and chain.index(before) < chain.index(after):
            return False
    return True


def compare(before: Sequence[SchemaColumn], after: Sequence[SchemaColumn]) -> list[SchemaChange]:
    """What changed from ``before`` to ``after``: columns and object keys added or removed, types
    changed (source or file type), in ``after``'s column order, removed ones last."""
    old = {c.name: c for c in before}
    new = {c.name: c for c in after}
    changes = []
    for column in after:
        was = old.get(column.name)
        if was is None:
            changes.append(SchemaChange(column=column.name, change="added", after=column.source_type))
            continue
        retyped = _type_change(was, column)
        if retyped is not None:
            changes.append(retyped)
        changes += _key_changes(column.name, was.keys or {}, column.keys or {})
    changes += [
        SchemaChange(column=c.name, change="removed", before=c.source_type) for c in before if c.name not in new
    ]
    return changes


def _type_change(was: SchemaColumn, column: SchemaColumn) -> SchemaChange | None:
    """The column's type change, if any: of its source type, or of its file type alone (objects as
    JSON text one day, as structs the next: breaking). Two structs that differ in their keys are
    not a type change: the key changes say how, and readers merge the fields."""
    if was.source_type != column.source_type:
        before, after = was.source_type, column.source_type
        breaks = breaking(before, after)
    elif as_read(was.file_type) != as_read(column.file_type) and not (_is_struct(was) and _is_struct(column)):
        before, after, breaks = was.file_type, column.file_type, True
    else:
        return None
    return SchemaChange(column=column.name, change="type changed", before=before, after=after, breaking=breaks)


def _is_struct(column: SchemaColumn) -> bool:
    """An object written as a struct (or a list of structs) of its keys."""
    return as_read(column.file_type).startswith(("struct<", "list<struct<"))


def _key_changes(column: str, before: Mapping[str, str], after: Mapping[str, str]) -> list[SchemaChange]:
    def named(key: str) -> str:
        first, bracket, deeper = key.partition("[")
        return f"{column}['{first}']" + (bracket + deeper if bracket else "")

    changes = [SchemaChange(column=named(k), change="added", after=t) for k, t in after.items() if k not in before]
    changes += [
        SchemaChange(column=named(k), change="type changed", before=before[k], after=t, breaking=breaking(before[k], t))
        for k, t in after.items()
        if k in before and before[k] != t
    ]
    changes += [SchemaChange(column=named(k), change="removed", before=t) for k, t in before.items() if k not in after]
    return changes
