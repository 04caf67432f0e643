"""Arrow columns as text, with compute kernels instead of per-row Python: what JSON Lines and CSV share
(constants that keep pandas out, string joins, JSON string escaping, ISO 8601 timestamps)."""

from __future__ import annotations

import base64
import functools
import json
import math
import struct
import threading
from datetime import timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
ESCAPE = r'["\\\x00-\x1f]'  # what a JSON string must escape


@functools.lru_cache(maxsize=1024)
def const(value: str | int) -> pa.Scalar:
    """An Arrow scalar built from raw buffers. Handing Python values to pyarrow (``pa.scalar``,
    ``pa.array``, or a ``str`` argument to a compute function) converts them, and converting makes
    pyarrow import pandas when it is installed: 40 MB of resident memory the columnar path never
    needs."""
    if isinstance(value, str):
        data = value.encode("utf-8")
        offsets = struct.pack("<ii", 0, len(data))
        return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])[0]
    return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])[0]


def join(*parts: Any) -> pa.Array:
    """Row-wise concatenation of string arrays and constant ``str`` pieces (NULL if any is NULL)."""
    return pc.binary_join_element_wise(*(const(p) if isinstance(p, str) else p for p in parts), const(""))


def contiguous(lines: pa.Array) -> Any:
    """The values of a freshly built string array, back to back: its data buffer between the first
    and the last offset (no per-row copy)."""
    _, offsets_buffer, data = lines.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset)
    return data[offsets[0].as_py() : offsets[len(lines)].as_py()]


def json_strings(strings: pa.Array) -> pa.Array:
    """JSON string literals (NULL stays NULL); escaping runs only when some value needs it."""
    if not pc.any(pc.match_substring_regex(strings, ESCAPE)).as_py():
        return join('"', strings, '"')
    text = pc.replace_substring(strings, "\\", "\\\\")
    for char, code in (('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, char, code)
    text = join('"', text, '"')
    special = pc.match_substring_regex(strings, CONTROL)  # other control characters: \u00XX, per value
    if pc.any(special).as_py():
        slow = [python_json(v, strings.type, False) for v in strings.filter(special).to_pylist()]
        text = pc.replace_with_mask(text, special, pa.array(slow, pa.string()))
    return text


# JSON has no NaN or infinities: they are written as these strings, as CrateDB's COPY TO writes them
# (seen on 5.10.16) and as the protobuf JSON mapping does; the restore turns them back into floats.
NON_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


def float_json(array: pa.Array) -> pa.Array:
    """A float column's JSON text (NULL stays NULL): shortest round-trip decimal; ``-0.0`` keeps its
    sign (JSON's ``-0`` reads back as the integer 0); NaN and the infinities as :data:`NON_FINITE`."""
    text = pc.cast(array, pa.string())
    text = pc.if_else(pc.equal(text, const("-0")), const("-0.0"), text)
    if pc.all(pc.is_finite(array)).as_py() is not False:  # nothing non-finite (or only NULLs)
        return text
    text = pc.if_else(pc.is_nan(array), const(NON_FINITE["nan"]), text)
    infinite = pc.is_inf(array)
    sign = pc.if_else(
        pc.greater(array, pc.cast(const(0), array.type)), const(NON_FINITE["inf"]), const(NON_FINITE["-inf"])
    )
    return pc.if_else(infinite, sign, text)


def python_json(value: Any, field_type: pa.DataType, json_text: bool) -> str:
    """Slow path for values Arrow kernels cannot encode (lists, bytes, control characters)."""
    if value is None:
        return "null"
    if json_text and isinstance(value, str):
        return value
    if isinstance(value, list):
        item_type = field_type.value_type if pa.types.is_list(field_type) else pa.null()
        return "[" + ",".join(python_json(v, item_type, json_text) for v in value) + "]"
    if isinstance(value, (bytes, bytearray)):
        return json.dumps(base64.b64encode(value).decode("ascii"))
    if isinstance(value, float) and not math.isfinite(value):
        return NON_FINITE["nan" if math.isnan(value) else "inf" if value > 0 else "-inf"]
    if hasattr(value, "isoformat"):
        return json.dumps(_iso(value))
    return json.dumps(value, ensure_ascii=False)


def _iso(value: Any) -> str:
    if getattr(value, "tzinfo", None) is not None:  # the same instant in UTC, whatever zone it came in
        return str(value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")) + "+00:00"
    return str(value.isoformat())


US_PER_DAY = 86_400_000_000


_CLOCK_LOCK = threading.Lock()


def _clock_texts() -> pa.Array:
    """``HH:MM:SS`` for each second of a day (86,400 strings, built once)."""
    with _CLOCK_LOCK:  # the encode threads ask at the same time: build once
        return _build_clock_texts()


@functools.cache
def _build_clock_texts() -> pa.Array:
    two = [f"{i:02d}" for i in range(60)]
    minutes = [f"{h}:{m}:" for h in two[:24] for m in two]
    data = "".join(minute + second for minute in minutes for second in two).encode("ascii")
    offsets = struct.pack(f"<{86_401}i", *range(0, 8 * 86_401, 8))  # 8 bytes each
    return pa.Array.from_buffers(pa.string(), 86_400, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def timestamp_parts(array: pa.Array) -> list[Any]:
    """ISO 8601 text with microseconds, as pieces to join; ``+00:00`` for timestamps with a time
    zone (stored as UTC).

    Arrow's ``strftime`` formats value by value (about 1 µs each: 80% of JSON Lines encoding). Here
    the few distinct days are formatted once and looked up, the time of day comes from a table of
    the 86,400 seconds, and only the microseconds are formatted per value (integer to text).
    """
    us = pc.cast(pc.cast(array, pa.timestamp("us", tz=array.type.tz)), pa.int64())
    day = pc.divide(us, const(US_PER_DAY))  # truncates toward zero: floor it for times before 1970
    rest = pc.subtract(us, pc.multiply(day, const(US_PER_DAY)))
    before = pc.cast(pc.less(rest, const(0)), pa.int64())
    day = pc.subtract(day, before)
    rest = pc.add(rest, pc.multiply(before, const(US_PER_DAY)))
    days = pc.dictionary_encode(pc.cast(day, pa.int32()))
    dates = pc.strftime(pc.cast(days.dictionary, pa.date32()), format="%Y-%m-%d")
    seconds = pc.divide(rest, const(1_000_000))
    micros = pc.utf8_lpad(pc.cast(pc.subtract(rest, pc.multiply(seconds, const(1_000_000))), pa.string()), 6, "0")
    clock = pc.take(_clock_texts(), seconds)
    return [pc.take(dates, days.indices), "T", clock, ".", micros, "+00:00" if array.type.tz else ""]


def timestamps(array: pa.Array) -> pa.Array:
    return join(*timestamp_parts(array))
