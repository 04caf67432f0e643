"""What a column's Arrow field says about its source, beyond its Arrow type: the readers mark it
(field metadata), the encoders and the restore path read it.

- ``json=true``: a string holding JSON text (CrateDB OBJECT, nested arrays, PostgreSQL json/jsonb);
- ``source_type``: the source's own type name where the Arrow type loses it (numeric, bit);
- ``partition=true``: a partition column of a CrateDB table.

And how a JSON ``null`` value is told from SQL NULL when such a column is read back (:data:`JSON_NULL`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import pyarrow as pa

JSON_META = {b"json": b"true"}
SOURCE_TYPE = b"source_type"
PARTITION_META = {b"partition": b"true"}


def is_json(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(b"json") == b"true")


def source_type(field: pa.Field) -> str | None:
    value = (field.metadata or {}).get(SOURCE_TYPE)
    return value.decode() if value else None


def is_partition(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(b"partition") == b"true")


class JsonNull:
    """A JSON ``null`` held as a column's value (PostgreSQL's ``'null'::json``), which is not SQL
    NULL: a file that keeps JSON as text tells them apart (``"null"`` vs no value), and so must
    whatever reads it back. One instance: :data:`JSON_NULL`."""

    def __repr__(self) -> str:
        return "JSON_NULL"


JSON_NULL: Final = JsonNull()


def json_value(text: str) -> Any:
    """A JSON text column's value parsed: :data:`JSON_NULL` for the text ``null`` (None is SQL NULL)."""
    parsed = json.loads(text)
    return JSON_NULL if parsed is None else parsed
