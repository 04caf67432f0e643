"""source.py without a server: CrateDB's partition values as the columns take them, in any process
time zone."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from cratedb_airflow_export.errors import SourceError
from cratedb_airflow_export.source import CRATEDB, SourceInfo, partition_scope

SOURCE = SourceInfo(
    CRATEDB,
    {
        "ts": "timestamp without time zone",
        "month": "timestamp without time zone",
        "at": "timestamp with time zone",
        "region": "text",
    },
    "timestamp without time zone",
    partition_columns=("month", "at", "region"),
)


def test_partition_values_are_utc_moments_in_every_process_zone(process_zone):
    """CrateDB lists a timestamp partition value as epoch milliseconds: the same UTC moment, naive for
    TIMESTAMP WITHOUT TIME ZONE, whatever the process's zone."""
    scope = partition_scope({"month": 1704067200000, "at": 1704411000000, "region": "eu"}, SOURCE, "doc.t")
    assert scope == (
        ("month", datetime(2024, 1, 1)),
        ("at", datetime(2024, 1, 4, 23, 30, tzinfo=timezone.utc)),
        ("region", "eu"),
    )
    assert partition_scope({"month": None, "region": None}, SOURCE, "doc.t") == (
        ("month", None),
        ("at", None),
        ("region", None),
    )


def test_unreadable_partition_values_name_the_table():
    with pytest.raises(SourceError, match=r"doc\.t: unreadable partition values \[1\]"):
        partition_scope([1], SOURCE, "doc.t")


def test_partition_values_read_as_json_text_are_parsed():
    """The stream engine reads JSON as text on its cursors: the same values as the object."""
    scope = partition_scope('{"month": 1704067200000, "region": "eu"}', SOURCE, "doc.t")
    assert scope == (("month", datetime(2024, 1, 1)), ("at", None), ("region", "eu"))
