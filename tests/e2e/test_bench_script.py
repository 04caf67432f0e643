"""``make bench`` keeps working: a tiny run prints its JSON line with every tool and format."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_bench_prints_its_json_line():
    env = {**os.environ, "BENCH_ROWS": "3000", "BENCH_FORMATS": "parquet,csv", "BENCH_RUNS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == 3000 and result["raw_read_rows_per_s"] > 0
    assert [(r["tool"], r["format"]) for r in result["results"]] == [
        (tool, fmt) for fmt in ("parquet", "csv") for tool in ("stream", "cli", "stream_cursor", "sql_to_s3")
    ]
    for r in result["results"]:
        assert r["rows_per_s"] > 0 and r["share_of_raw"] > 0 and r["spread"] == 0  # one run: no spread
        assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 0


def test_an_unknown_tool_is_an_error():
    env = {**os.environ, "BENCH_ROWS": "10", "BENCH_TOOLS": "stream,duckdb"}
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "BENCH_TOOLS: unknown ['duckdb']; known: stream, cli, stream_cursor, sql_to_s3" in proc.stderr


def test_the_many_tables_bench_parses_the_shipped_dag_file():
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.many_tables", "3", "30"],
        cwd=REPO,
        env={**os.environ, "BENCH_RUNS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [(n, r["tasks"]) for n, r in result["tables"].items()] == [("3", 3), ("30", 30)]
    # times are measured, not asserted (speed lives in benchmarks): each was taken
    assert all(r["parse_s"] > 0 and r["load_s"] >= 0 for r in result["tables"].values())  # ms-rounded
