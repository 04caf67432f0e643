"""``make demo`` keeps its promise: the shipped DAG runs on the local stack and verify passes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


def test_demo_exports_and_verifies_a_day():
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.demo"], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = proc.stdout
    assert "exports/doc.metrics/dt=2024-01-04/part-00000.jsonl.gz" in out and "1000 rows" in out
    assert "Rows exported: 1000; manifest: 1000; source rows in [2024-01-04, 2024-01-05): 1000  -> OK" in out
    assert "OK: s3://demo-bucket/exports/doc.metrics/dt=2024-01-04/" in out
    assert out.rstrip().endswith("stopped the local services")
