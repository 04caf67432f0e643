"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import subprocess
import zlib

import pyarrow as pa
import pytest

from cratedb_airflow_export.formats import FORMATS, make_encoder
from cratedb_airflow_export.formats.parallel_gzip import GzipMember, crc32_combine, deflate
from tests.samples import one_member


def test_crc32_combine_matches_zlib():
    rng = random.Random(7)
    for _ in range(300):
        a, b = rng.randbytes(rng.randrange(0, 3000)), rng.randbytes(rng.randrange(0, 70_000))
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_parallel_deflated_chunks_make_one_gzip_member():
    rng = random.Random(1)
    chunks = [rng.randbytes(rng.randrange(0, 200_000)) + b"abc\n" * rng.randrange(0, 50_000) for _ in range(12)]
    sink = io.BytesIO()
    member = GzipMember(sink)
    for chunk in chunks:
        member.write(deflate(chunk))
    member.close()
    data = sink.getvalue()
    assert one_member(data) == b"".join(chunks)  # one member: readers that stop after it see everything
    assert gzip.decompress(data) == b"".join(chunks)
    if shutil.which("gzip"):
        assert subprocess.run(["gzip", "-t"], input=data, check=False).returncode == 0


def test_an_empty_gzip_file_is_valid():
    sink = io.BytesIO()
    GzipMember(sink).close()
    assert one_member(sink.getvalue()) == b""


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_text_formats_gzip_is_one_member(fmt):
    schema = pa.schema([("id", pa.int64()), ("label", pa.string())])
    sink = io.BytesIO()
    encoder = make_encoder(FORMATS[fmt], schema, sink, "gzip", row_group_size=1000)
    for start in range(0, 30_000, 10_000):
        ids = list(range(start, start + 10_000))
        encoder.write(pa.RecordBatch.from_arrays([pa.array(ids), pa.array([f"n{i}" for i in ids])], schema=schema))
    encoder.close()
    lines = one_member(sink.getvalue()).decode().splitlines()
    if fmt == "csv":
        assert lines[0] == '"id","label"' and len(lines) == 30_001
    else:
        assert [json.loads(line)["id"] for line in lines] == list(range(30_000))
