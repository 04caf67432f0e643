"""The README's quick start, run as written: its bash block, in a fresh virtualenv (``make
test-compat`` makes one per supported Airflow, installs Airflow, and runs this there), a fresh
``AIRFLOW_HOME`` under a fresh home directory and a plain (non-Astro) ``dags/`` layout, against the
local stack (PostgreSQL + S3). Only what cannot be written in a README is replaced: the two
connections' values (where the local servers listen) and the bucket's name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, json_lines, partition_keys, read_objects

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("CRATEDB_EXPORT_FRESH_ENV") != "1",
        reason="installs the package: runs in a fresh virtualenv per supported Airflow (make test-compat)",
    ),
]
MARKER = "<!-- quickstart:"


def quickstart_block() -> str:
    """The bash block that follows the quickstart marker in README.md."""
    readme = (REPO / "README.md").read_text()
    after = readme[readme.index(MARKER) :]
    match = re.search(r"```bash\n(.*?)\n```", after, re.S)
    assert match is not None, "README.md: no bash block after the quickstart marker"
    return match.group(1)


def replace_once(text: str, pattern: str, value: str) -> str:
    replaced, count = re.subn(pattern, lambda _: value, text)
    assert count == 1, f"README.md's quick start: {pattern!r} found {count} times, not once"
    return replaced


def test_the_quick_start_works_as_written(postgres, s3_server, metrics, bucket, tmp_path):
    # the secret has a '/' and a '+', percent-encoded as the README says (moto takes any secret)
    aws = f"aws://{s3_server.access_key}:se%2Fcr%2Bet@/" + s3_server.airflow_conn_uri().split("@/", 1)[1]
    script = quickstart_block()
    script = replace_once(script, r"(?<=export AIRFLOW_CONN_CRATEDB_CONNECTION=')[^']*", postgres.url)
    script = replace_once(script, r"(?<=export AIRFLOW_CONN_AWS_DEFAULT=')[^']*", aws)
    script = replace_once(script, r"s3://my-lake/", f"s3://{bucket}/")
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = str(Path(sys.executable).parent)  # the fresh virtualenv's pip, airflow, cratedb-export
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "CRATEDB_EXPORT", "AWS_")) and name not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env |= {"HOME": str(home), "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")])}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]

    airflow_home = home / "airflow"
    assert (airflow_home / "dags" / "cratedb_table_export.py").read_text() == (
        REPO / "dags" / "cratedb_table_export.py"
    ).read_text()
    assert "Interval: [2024-01-04T00:00:00+00:00, 2024-01-05T00:00:00+00:00) UTC" in done.stdout  # plan
    assert "doc.metrics  engine=stream" in done.stdout
    assert f"OK: s3://{bucket}/cratedb/doc.metrics/dt=2024-01-04/" in done.stdout  # verify
    assert "source count(*) over the window: 50 = manifest rows" in done.stdout
    objects = read_objects(s3_server, bucket)
    assert list(objects) == partition_keys("cratedb/doc.metrics/dt=2024-01-04", "part-00000.jsonl.gz")
    assert len(json_lines(objects["cratedb/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz"])) == 50
