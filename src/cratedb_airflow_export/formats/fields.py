"""What a column's Arrow field says about its source, beyond its Arrow type: the readers mark it
(field metadata), the encoders and the restore path read it.

- ``json=true``: a string holding JSON text (CrateDB OBJECT, nested arrays, PostgreSQL json/jsonb);
- ``source_type``: the source's own type name where the Arrow type loses it (numeric, bit);
- ``partition=true``: a partition column of a CrateDB table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
