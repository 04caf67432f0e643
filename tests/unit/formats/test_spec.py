"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import io
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cratedb_airflow_export.formats import FORMATS, make_encoder
from tests.samples import one_member


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


def test_data_file_names():
    assert FORMATS["jsonl"].file_name("gzip", 0) == "part-00000.jsonl.gz"
    assert FORMATS["jsonl"].file_name("zstd", 1) == "part-00001.jsonl.zst"
    assert FORMATS["jsonl"].file_name("none", 3) == "part-00003.jsonl"
    assert FORMATS["csv"].file_name("gzip", 0) == "part-00000.csv.gz"
    assert FORMATS["parquet"].file_name("zstd", 12) == "part-00012.parquet"
