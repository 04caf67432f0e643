"""The command line as scripts and people use it: progress on stderr (percent of the window's count,
rate, time left, day N of M), ``--quiet``, and ``--json`` on every command that reports."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from tests.helpers import BIG_ROWS, REPO

pytestmark = pytest.mark.e2e


def cli(*args: str, progress_every: float | None = None) -> subprocess.CompletedProcess[str]:
    """``cratedb-export`` in a fresh interpreter (its logging configured as on a terminal);
    ``progress_every``: seconds between progress lines (10 in the product)."""
    code = "import sys\n"
    if progress_every is not None:
        code += f"import cratedb_airflow_export.engines.stream as s; s.PROGRESS_SECONDS = {progress_every}\n"
    code += f"from cratedb_airflow_export.cli import main\nsys.exit(main({list(args)!r}))\n"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=os.environ, timeout=300
    )


@pytest.fixture
def config(tmp_path: Path, bucket: str, big_table: str) -> str:
    path = tmp_path / "exports.yaml"
    entry = {"table": big_table, "timestamp_column": "timestamp", "engine": "stream", "target": f"s3://{bucket}/lake"}
    path.write_text(json.dumps({"tables": [entry]}))
    return str(path)


def test_a_long_export_logs_percent_rate_and_time_left(connections, s3_server, big_table, config):
    done = cli("run", "--date", "2024-01-03", "--to", "2024-01-04", "--config", config, progress_every=0)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Exporting {big_table} (day 1 of 2), interval [2024-01-03" in done.stderr
    # log times in UTC, whatever the process's zone (the suite runs in Asia/Kathmandu)
    stamp = re.search(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)Z INFO Exporting", done.stderr, re.M)
    assert stamp is not None, done.stderr[:2000]
    logged = datetime.fromisoformat(stamp.group(1)).replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - logged).total_seconds()) < 300
    assert f"Exporting {big_table} (day 2 of 2), interval [2024-01-04" in done.stderr
    line = rf"{big_table} 2024-01-04: ([\d,]+) of {BIG_ROWS:,} rows \((\d+)%\), [\d.]+ MB written, [\d,]+ rows/s"
    progress = re.findall(line, done.stderr)
    assert progress, done.stderr[-3000:]  # the count runs while the rows are read: in before the end
    rows = [int(r.replace(",", "")) for r, _ in progress]
    assert rows == sorted(rows) and rows[-1] <= BIG_ROWS
    expected = [100 if r >= BIG_ROWS else min(99, 100 * r // BIG_ROWS) for r in rows]
    assert [int(percent) for _, percent in progress] == expected
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [
        f"OK {big_table} 2024-01-03",
        f"OK {big_table} 2024-01-04",
    ]


def test_quiet_keeps_stderr_to_warnings_and_json_reports_every_command(connections, postgres, big_table, config):
    done = cli("run", "--quiet", "--date", "2024-01-04", "--config", config)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-3000:]
    assert done.stdout.startswith(f"OK {big_table} 2024-01-04: {BIG_ROWS} rows")

    verify = cli("verify", "--json", "-q", "--date", "2024-01-03", "--to", "2024-01-04", "--config", config)
    assert verify.returncode == 1, verify.stderr[-3000:]  # 01-03 was never exported
    reports = [json.loads(line) for line in verify.stdout.splitlines()]
    assert [(r["table"], r["day"], r["state"]) for r in reports] == [
        (big_table, "2024-01-03", "missing"),
        (big_table, "2024-01-04", "complete"),
    ]
    assert reports[1]["problems"] == [] and f"source count(*) over the window: {BIG_ROWS:,}" in " ".join(
        reports[1]["facts"]
    ).replace(f"{BIG_ROWS}", f"{BIG_ROWS:,}")

    again = cli("reconcile", "--json", "-q", "--days", "2", "--until", "2024-01-04", "--config", config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [json.loads(line) for line in again.stdout.splitlines()] == [
        {"table": big_table, "day": "2024-01-03", "state": "not exported", "recorded": None, "counted": None},
        {"table": big_table, "day": "2024-01-04", "state": "unchanged", "recorded": BIG_ROWS, "counted": BIG_ROWS},
    ]

    copy = f"{big_table}_back"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {copy} (LIKE {big_table})")
    back = cli(
        "restore", "--json", "-q", "--table", big_table, "--date", "2024-01-04", "--into", copy, "--config", config
    )
    assert back.returncode == 0, back.stderr[-3000:]
    (restored,) = [json.loads(line) for line in back.stdout.splitlines()]
    shown = (restored["table"], restored["day"], restored["rows"], restored["deleted"])
    assert shown == (copy, "2024-01-04", BIG_ROWS, 0)
    with psycopg.connect(postgres.url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {copy}").fetchone() == (BIG_ROWS,)
