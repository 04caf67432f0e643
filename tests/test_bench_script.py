"""``make bench`` keeps working: a tiny run prints its JSON line with every tool and format."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e


def test_bench_prints_its_json_line():
    env = {**os.environ, "BENCH_ROWS": "3000", "BENCH_FORMATS": "parquet,csv"}
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 3000 and result["raw_read_rows_per_s"] > 0
    assert [(r["tool"], r["format"]) for r in result["results"]] == [
        ("stream", "parquet"),
        ("sql_to_s3", "parquet"),
        ("stream", "csv"),
        ("sql_to_s3", "csv"),
    ]
    assert all(r["rows_per_s"] > 0 and r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0 for r in result["results"])
