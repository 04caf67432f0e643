"""``make bench-tables``: how long Airflow's DAG processor takes to parse the shipped DAG file with
many configured tables (``python -m devtools.many_tables [N ...]``, default 50 500 1000).

For each N, a YAML configuration of N tables (the Hive layout, all in one bucket, as a user with
many tables writes it) is named by ``CRATEDB_EXPORT_CONFIG`` and ``dags/cratedb_table_export.py`` is
run in a fresh interpreter that has already imported Airflow (as the DAG processor has): the time is
the DAG file's own, loading and checking the configuration and building the DAG (and, apart, the
configuration's loading and checking alone), the median of BENCH_RUNS runs (default 3). Prints one
line per N and then one JSON object:
{"tables": {"50": {"parse_s": ..., "load_s": ..., "tasks": ...}, ...}}
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DAG_FILE = REPO / "dags" / "cratedb_table_export.py"
PROBE = """
import json, runpy, time
import airflow.sdk  # the DAG processor has Airflow imported before it parses a file
from cratedb_airflow_export import loading
start = time.perf_counter()
config = loading.load_tables()
loaded = time.perf_counter()
namespace = runpy.run_path({dag_file!r})
done = time.perf_counter()
print(json.dumps({{"parse_s": done - loaded, "load_s": loaded - start, "tasks": len(namespace["dag"].tasks)}}))
"""


def tables_yaml(count: int, folder: Path) -> Path:
    entries = [
        {"table": f"doc.table_{i:05d}", "timestamp_column": "ts", "target": "s3://lake/cratedb", "engine": "stream"}
        for i in range(count)
    ]
    path = folder / f"tables-{count}.yaml"
    path.write_text(yaml.safe_dump({"tables": entries}))
    return path


def measure(count: int, folder: Path, runs: int) -> dict[str, float]:
    config = tables_yaml(count, folder)
    env = {**os.environ, "CRATEDB_EXPORT_CONFIG": str(config), "AIRFLOW_HOME": str(folder / "airflow")}
    samples = []
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE.format(dag_file=str(DAG_FILE))],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if proc.returncode != 0:
            raise SystemExit(f"parsing with {count} tables failed:\n{proc.stderr[-3000:]}")
        samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return {
        "parse_s": round(statistics.median(s["parse_s"] for s in samples), 3),
        "load_s": round(statistics.median(s["load_s"] for s in samples), 3),
        "tasks": samples[0]["tasks"],
    }


def main(argv: list[str]) -> int:
    counts = [int(a) for a in argv] or [50, 500, 1000]
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="cratedb-export-many-") as tmp:
        for count in counts:
            results[str(count)] = measure(count, Path(tmp), runs)
            r = results[str(count)]
            print(f"{count} tables: the DAG file parses in {r['parse_s']} s (its configuration: {r['load_s']} s)")
    print(json.dumps({"tables": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
