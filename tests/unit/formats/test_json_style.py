"""``json_style: cratedb``: the stream engine writes JSON Lines in the shape of CrateDB's
``COPY TO ... format = 'json_object'``, so moving a table from ``copy`` to ``stream`` does not
change what its readers see. The expected lines are written from CrateDB's documented output rules
(docs/cratedb.md, "What COPY TO writes"), not from our encoder; the CrateDB integration suite
compares with CrateDB's own output where a CrateDB is available."""

from __future__ import annotations

from typing import Any

import pytest

from cratedb_airflow_export.config import TableExport
from tests.samples import JSON_STYLE_ROWS, copy_to_line

pytestmark = pytest.mark.e2e


def test_the_expected_lines_follow_the_documented_rules():
    """The reference itself, on one row: what docs/cratedb.md says COPY TO writes."""
    assert copy_to_line(JSON_STYLE_ROWS[1]) == '{"id":2,"ts":1704412799999}'
    assert copy_to_line(JSON_STYLE_ROWS[2]).startswith(
        '{"id":3,"ts":1704326400000,"local_ts":-1,"day":-86400000,"name":""'
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"engine": "copy", "json_style": "iso"}, "json_style: 'iso' is not available for jsonl with engine 'copy'"),
        ({"engine": "stream", "format": "csv", "json_style": "cratedb"}, "it applies to JSON Lines"),
        ({"engine": "stream", "json_style": "epoch"}, "json_style"),
    ],
)
def test_json_style_is_checked_against_engine_and_format(overrides, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TableExport.model_validate(
            {"table": "doc.t", "timestamp_column": "ts", "target": "s3://lake-bucket/p", **overrides}
        )


def test_each_engine_and_format_gets_its_default_style():
    def style(**overrides: Any) -> str | None:
        base = {"table": "doc.t", "timestamp_column": "ts", "target": "s3://lake-bucket/p"}
        return TableExport.model_validate({**base, **overrides}).json_style

    assert style() == "cratedb"  # engine copy: CrateDB's own shape
    assert style(engine="stream") == "iso"
    assert style(engine="stream", format="parquet") is None
