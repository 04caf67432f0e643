"""Storage layout, JSON Lines fidelity and the multipart writer against the real S3 server."""

from __future__ import annotations

import pytest

from tests.samples import ROW, encode


def test_csv_is_rfc4180():
    text = encode("csv", "none", [ROW]).decode()
    header, row, end = text.split("\r\n")
    assert header == '"id","ts","obj","arr","nothing","text","dec","uuid","raw","naive","flag","nan","point","objs"'
    assert row.startswith('1,"2024-01-04T00:02:03.456789+00:00","{""a"": {""b"": [1, 2]}}","[1.5,null]",,')
    assert '"ünï ""q"" \\ 🚀\n\x01"' in row  # quoted, quotes doubled, newline kept inside the field
    assert end == ""


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_file_of_a_day_without_rows_reads_as_no_rows(tmp_path, compression):
    """The header alone (an empty day): no rows, not Arrow's "Empty CSV file" (the oracle found the
    restore of such a day failing)."""
    import gzip

    from cratedb_airflow_export.formats.csvfile import read_file

    path = tmp_path / "part-00000.csv"
    header = b"id,ts,doc\r\n"
    path.write_bytes(gzip.compress(header) if compression == "gzip" else header)
    assert list(read_file(str(path), compression)) == []
    path.write_bytes(gzip.compress(header + b'1,,"{}"\r\n') if compression == "gzip" else header + b'1,,"{}"\r\n')
    assert list(read_file(str(path), compression)) == [{"id": "1", "ts": None, "doc": "{}"}]
