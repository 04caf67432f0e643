"""gzip written in parallel: chunks deflated on worker threads, joined into one gzip member.

This is what ``pigz`` does. Each chunk is deflated on its own and ends with a sync flush (byte
aligned, not the final block), so the chunks' deflate streams concatenate into one valid stream;
an empty final block and the trailer (CRC-32 combined over the chunks, length) close the member.
The result is one ordinary gzip member: every gzip reader (gzip, zcat, Python, pandas, DuckDB,
Spark, Athena) reads it, including those that stop after the first member. The cost is that a
chunk cannot refer back into the previous one (chunks are 1-2 MB: well under 1% larger files).

Deflate comes from zlib-ng (the ``zlib-ng`` package: zlib's API and format, same ratio, about 1.6x
the speed at level 6); stdlib zlib if it is missing. Both release the GIL while they deflate and
compute CRC-32, so two threads compress at about twice the speed of one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from cratedb_airflow_export.formats.spec import GZIP_LEVEL

try:
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - the pinned dependency is installed; same API and output format
    import zlib  # type: ignore[no-redef]

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime (reproducible), OS unknown
_FINAL_BLOCK = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15).flush()  # an empty final block


@dataclass(frozen=True)
class Deflated:
    """One chunk, deflated on its own: raw deflate data, CRC-32 and length of the input."""

    data: bytes
    crc: int
    size: int


def deflate(data: Any, level: int | None = None) -> Deflated:
    """Deflate ``data`` (bytes or any buffer) as one chunk of a gzip member, at ``level`` (default
    :data:`GZIP_LEVEL`). Safe on any thread."""
    level = level or GZIP_LEVEL
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)  # -15: raw deflate, 32 KiB window
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return Deflated(body, zlib.crc32(data), len(data))


class GzipMember:
    """Writes one gzip member to ``sink`` from :class:`Deflated` chunks, in the order given."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self._crc = 0
        self._size = 0
        sink.write(GZIP_HEADER)

    def write(self, chunk: Deflated) -> None:
        if chunk.size:
            self._sink.write(chunk.data)
            self._crc = crc32_combine(self._crc, chunk.crc, chunk.size)
            self._size += chunk.size

    def close(self) -> None:
        self._sink.write(_FINAL_BLOCK + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))


# --- CRC-32 of a concatenation from the parts' CRCs (zlib's crc32_combine, which Python's zlib
# does not expose). Polynomials over GF(2) in zlib's reflected bit order. -----------------------

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC-32 polynomial."""
    m, product = 1 << 31, 0
    while True:
        if a & m:
            product ^= b
            if (a & (m - 1)) == 0:
                return product
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _powers() -> list[int]:
    """x^(2^k) modulo the polynomial, k = 0..31."""
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _powers()


def _x8nmodp(length: int) -> int:
    """x^(8 * length) modulo the polynomial: shifting a CRC over ``length`` zero bytes."""
    p, k = 1 << 31, 3  # x^0; 2^3 bits per byte
    while length:
        if length & 1:
            p = _multmodp(_X2N[k & 31], p)
        length >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """CRC-32 of ``a + b`` from ``crc32(a)``, ``crc32(b)`` and ``len(b)``."""
    return _multmodp(_x8nmodp(length2), crc1) ^ crc2
