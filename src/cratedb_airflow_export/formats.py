"""Output formats of the ``stream`` engine: faithful JSON Lines, optionally gzip-compressed.

- timestamps with time zone: ISO 8601 in UTC with offset (``2024-01-04T12:00:00.123456+00:00``);
  timestamps without time zone: ISO 8601 without offset;
- objects: nested JSON; arrays: JSON arrays; NULL: ``null`` (the key is kept);
- unicode as is (UTF-8), not ``\\u`` escapes; numeric: a JSON number; bytes: base64.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Sequence
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.isoformat()
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class JsonLinesEncoder:
    """Rows (tuples) -> bytes of JSON Lines; ``finish()`` flushes the compressor."""

    def __init__(self, columns: Sequence[str], *, gzip: bool) -> None:
        self.columns = list(columns)
        self._encoder = json.JSONEncoder(default=json_default, ensure_ascii=False, separators=(",", ":"))
        # wbits=31: a gzip container, readable by gzip, DuckDB, Spark, pandas
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None

    def encode(self, rows: Sequence[Sequence[Any]]) -> bytes:
        names = self.columns
        text = "".join(self._encoder.encode(dict(zip(names, row, strict=True))) + "\n" for row in rows).encode("utf-8")
        return self._compressor.compress(text) if self._compressor else text

    def finish(self) -> bytes:
        return self._compressor.flush() if self._compressor else b""
