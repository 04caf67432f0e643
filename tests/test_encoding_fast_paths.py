"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import zlib
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import rows_of_day
from cratedb_airflow_export.formats import FORMATS, make_encoder
from cratedb_airflow_export.formats.jsonl import encode_jsonl
from cratedb_airflow_export.formats.parallel_gzip import GzipMember, crc32_combine, deflate
from cratedb_airflow_export.formats.parquet import ParquetEncoder, dictionary_columns
from cratedb_airflow_export.formats.text import timestamps
from cratedb_airflow_export.storage import MultipartWriter

UTC = timezone.utc


def one_member(data: bytes) -> bytes:
    """Decompress exactly one gzip member and check nothing follows it."""
    member = zlib.decompressobj(31)
    text = member.decompress(data)
    assert member.eof and member.unused_data == b""
    return text


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


def test_timestamp_text_matches_python_isoformat():
    rng = random.Random(3)
    low, high = datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    span = int((high - low).total_seconds() * 1_000_000)
    values = [low, high, datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]
    values += [low + timedelta(microseconds=rng.randrange(span)) for _ in range(5000)]
    values.append(None)
    aware = timestamps(pa.array(values, pa.timestamp("us", tz="UTC"))).to_pylist()
    assert aware == [None if v is None else v.isoformat(timespec="microseconds") for v in values]
    naive_values = [None if v is None else v.replace(tzinfo=None) for v in values]
    naive = timestamps(pa.array(naive_values, pa.timestamp("us"))).to_pylist()
    assert naive == [None if v is None else v.isoformat(timespec="microseconds") for v in naive_values]
    millis = timestamps(pa.array([datetime(2024, 1, 4, 1, 2, 3, 456000, tzinfo=UTC)], pa.timestamp("ms", "UTC")))
    assert millis.to_pylist() == ["2024-01-04T01:02:03.456000+00:00"]


def test_json_strings_escape_only_where_needed():
    texts = ["plain", "ünïcødé 電力", 'say "hi"', "back\\slash", "line\nbreak\r\t", "bell\x07", "", None]
    schema = pa.schema([("s", pa.string())])
    for batch in (texts, texts[:2], [t for t in texts if t != "bell\x07"]):
        data = bytes(encode_jsonl(schema, pa.RecordBatch.from_arrays([pa.array(batch)], schema=schema)))
        assert [json.loads(line)["s"] for line in data.decode().splitlines()] == batch
        assert "ünïcødé".encode() in data or "ünïcødé" not in batch  # UTF-8, not \\u escapes


def test_parquet_row_groups_have_exactly_the_configured_rows():
    schema = pa.schema([("id", pa.int64())])
    sink = io.BytesIO()
    encoder = ParquetEncoder(schema, sink, "zstd", row_group_size=1000)
    for start in range(0, 3500, 300):  # batches do not line up with row groups
        ids = pa.array(range(start, min(start + 300, 3500)), pa.int64())
        encoder.write(pa.RecordBatch.from_arrays([ids], schema=schema))
    encoder.close()
    parquet = pq.ParquetFile(io.BytesIO(sink.getvalue()))
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [1000, 1000, 1000, 500]
    assert parquet.read().column("id").to_pylist() == list(range(3500))


def test_dictionary_encoding_only_for_repetitive_columns():
    n = 10_000
    batch = pa.RecordBatch.from_pydict(
        {
            "id": list(range(n)),
            "name": [["cpu", "disk", "load"][i % 3] for i in range(n)],
            "doc": [json.dumps({"v": i}) for i in range(n)],
            "tags": [[i % 2] for i in range(n)],
            "nothing": pa.nulls(n),
        }
    )
    assert dictionary_columns(batch.schema, batch) == ["name"]
    assert dictionary_columns(batch.schema, None) is True  # no sample: Arrow's default
    sink = io.BytesIO()
    encoder = ParquetEncoder(batch.schema, sink, "zstd", row_group_size=100_000, sample=batch)
    encoder.write(batch)
    encoder.close()
    group = pq.ParquetFile(io.BytesIO(sink.getvalue())).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema: group.column(i).encodings for i in range(group.num_columns)}
    assert "RLE_DICTIONARY" in encodings["name"]
    assert "RLE_DICTIONARY" not in encodings["id"] and "RLE_DICTIONARY" not in encodings["doc"]


def test_multipart_writer_takes_buffers_and_cuts_exact_parts(s3_server, bucket):
    client = s3_server.client()
    payload = os.urandom(11 * 1024 * 1024)
    writer = MultipartWriter(client, bucket, "parts/x.bin", 5 * 1024 * 1024)
    writer.write(pa.py_buffer(payload[:7_000_000]))  # an Arrow buffer, as the text encoders hand over
    writer.write(memoryview(payload)[7_000_000:])
    stored = writer.close()
    sizes = [client.head_object(Bucket=bucket, Key="parts/x.bin", PartNumber=n)["ContentLength"] for n in (1, 2, 3)]
    assert sizes == [5 * 1024 * 1024, 5 * 1024 * 1024, 1024 * 1024] and stored.size == len(payload)
    assert client.get_object(Bucket=bucket, Key="parts/x.bin")["Body"].read() == payload
    assert stored.etag.endswith("-3")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_the_columnar_path_does_not_import_pandas(airflow_db, connections, metrics, bucket, fmt):
    """pyarrow imports pandas (40 MB resident) the first time it converts a Python value; the
    PostgreSQL path never needs to. Run in a fresh interpreter, pandas being installed here."""
    script = f"""
import sys
from datetime import date
from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.export import run_export
from cratedb_airflow_export.windows import Window
cfg = TableExport.model_validate({{"table": "doc.metrics", "timestamp_column": "timestamp", "engine": "stream",
                                   "format": "{fmt}", "target": "s3://{bucket}/no-pandas"}})
result = run_export(cfg, Window.for_day(date(2024, 1, 4)))
print(result.rows, "pandas" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == [str(len(rows_of_day(metrics, date(2024, 1, 4)))), "False"]


def test_fewer_gc_passes_restores_the_collector():
    import gc

    from cratedb_airflow_export.engines.stream import GC_THRESHOLD, fewer_gc_passes

    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError), fewer_gc_passes():
        assert gc.get_threshold()[0] == GC_THRESHOLD and gc.get_freeze_count() > frozen
        raise RuntimeError("export failed")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.mark.parametrize(("fmt", "compression", "fast", "small"), [("jsonl", "gzip", 1, 9), ("parquet", "zstd", 1, 19)])
def test_compression_level_trades_speed_for_size(fmt, compression, fast, small):
    rng = random.Random(5)
    words = ["cpu", "memory", "disk", "network", "load", "température"]
    batch = pa.RecordBatch.from_pydict(
        {"id": list(range(20_000)), "text": [" ".join(rng.choices(words, k=12)) for _ in range(20_000)]}
    )
    sizes, contents = {}, {}
    for level in (fast, small):
        sink = io.BytesIO()
        encoder = make_encoder(FORMATS[fmt], batch.schema, sink, compression, row_group_size=10_000, level=level)
        encoder.write(batch)
        encoder.close()
        data = sink.getvalue()
        sizes[level] = len(data)
        contents[level] = one_member(data) if fmt == "jsonl" else pq.read_table(io.BytesIO(data)).to_pylist()
    assert contents[fast] == contents[small]
    assert sizes[small] < sizes[fast]


def test_fewer_gc_passes_leaves_objects_frozen_by_others_frozen():
    import gc

    from cratedb_airflow_export.engines.stream import fewer_gc_passes

    gc.freeze()  # as Airflow's LocalExecutor does before forking its workers
    try:
        frozen = gc.get_freeze_count()
        with fewer_gc_passes():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()
