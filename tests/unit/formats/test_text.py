"""The columnar fast paths give the same bytes a reader expects: parallel gzip, timestamp text,
JSON string escaping, Parquet row groups and dictionary choice, part sizes."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from cratedb_airflow_export.formats.jsonl import encode_jsonl
from cratedb_airflow_export.formats.text import timestamps

UTC = timezone.utc


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


def test_an_aware_moment_from_another_zone_is_written_as_utc(process_zone):
    """psycopg hands timestamptz values in the session's zone: the text is the same instant in UTC."""
    from datetime import datetime, timedelta, timezone

    import pyarrow as pa

    from cratedb_airflow_export.formats.text import python_json

    kathmandu = timezone(timedelta(hours=5, minutes=45))
    moment = datetime(2024, 1, 5, 5, 15, tzinfo=kathmandu)
    assert python_json(moment, pa.timestamp("us", tz="UTC"), False) == '"2024-01-04T23:30:00.000000+00:00"'
