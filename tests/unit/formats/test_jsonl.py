"""Storage layout, JSON Lines fidelity and the multipart writer against the real S3 server."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa

from tests.samples import ROW, encode


def test_json_lines_are_faithful():
    data = gzip.decompress(encode("jsonl", "gzip", [ROW]))
    assert "ünï".encode() in data  # UTF-8, not \\u escapes
    (line,) = [json.loads(x) for x in data.decode().splitlines()]
    assert line == {
        "id": 1,
        "ts": "2024-01-04T00:02:03.456789+00:00",
        "obj": {"a": {"b": [1, 2]}},
        "arr": [1.5, None],
        "nothing": None,
        "text": 'ünï "q" \\ 🚀\n\x01',
        "dec": "12.50",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "raw": "AP8=",
        "naive": "2024-01-04T05:00:00.000000",
        "flag": True,
        "nan": "NaN",  # JSON has no NaN: the string, as CrateDB's COPY TO writes it
        "point": [9.5, 47.25],
        "objs": [{"k": 1}, None],
    }


def test_uncompressed_and_zstd_json_lines():
    rows = [(i, None, None, None, None, None, None, None, None, None, None, None, None, None) for i in (1, 2)]
    plain = encode("jsonl", "none", rows)
    assert plain.startswith(b'{"id":1,"ts":null,') and plain.count(b"\n") == 2
    packed = encode("jsonl", "zstd", rows)
    assert pa.CompressedInputStream(pa.BufferReader(packed), "zstd").read() == plain
