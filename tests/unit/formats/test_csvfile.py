"""Storage layout, JSON Lines fidelity and the multipart writer against the real S3 server."""

from __future__ import annotations

from tests.samples import ROW, encode


def test_csv_is_rfc4180():
    text = encode("csv", "none", [ROW]).decode()
    header, row, end = text.split("\r\n")
    assert header == '"id","ts","obj","arr","nothing","text","dec","uuid","raw","naive","flag","nan","point","objs"'
    assert row.startswith('1,"2024-01-04T00:02:03.456789+00:00","{""a"": {""b"": [1, 2]}}","[1.5,null]",,')
    assert '"ünï ""q"" \\ 🚀\n\x01"' in row  # quoted, quotes doubled, newline kept inside the field
    assert end == ""
