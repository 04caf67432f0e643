"""Storage layout, JSON Lines fidelity and the multipart writer against the real S3 server."""

from __future__ import annotations

from datetime import date

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.layout import partition
from cratedb_airflow_export.storage import Location

DAY = date(2024, 1, 4)


def cfg(**kw):
    return TableExport.model_validate({"table": "doc.metrics", "timestamp_column": "ts", **kw})


def test_tutorial_layout_matches_the_tutorial():
    loc = partition(cfg(target_bucket="crate-astro-tutorial/metrics"), DAY)
    assert loc == Location("crate-astro-tutorial", "metrics-2024-01-04")
    assert loc.uri == "s3://crate-astro-tutorial/metrics-2024-01-04/"


@pytest.mark.parametrize(
    ("target", "uri"),
    [
        ("s3://lake/exports", "s3://lake/exports/doc.metrics/dt=2024-01-04/"),
        ("s3://lake/exports/", "s3://lake/exports/doc.metrics/dt=2024-01-04/"),
        ("s3://lake", "s3://lake/doc.metrics/dt=2024-01-04/"),
    ],
)
def test_hive_layout(target, uri):
    assert partition(cfg(target=target), DAY).uri == uri
