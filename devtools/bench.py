"""``make bench``: rows/s and peak memory of the ``stream`` engine vs Airflow's SqlToS3Operator.

Run from the repository root: ``python -m devtools.bench``.

Generates BENCH_ROWS rows (default 2,000,000) of the tutorial's ``metrics`` shape for one day into a
local PostgreSQL, then, each in a fresh process so that peak RSS is its own:

- the raw read limit: ``COPY (SELECT ...) TO STDOUT`` over the same window, discarded;
- for each format (parquet, jsonl, csv): our ``stream`` engine (``run_export``: read, encode,
  upload, count(*) check, publish) and SqlToS3Operator on the same query, target and format.

The last line printed is one JSON object:
{"rows": N, "raw_read_rows_per_s": ..., "results": [{"tool": ..., "format": ..., "rows_per_s": ...,
 "peak_rss_mb": ..., "baseline_rss_mb": ...}]}   (baseline: RSS after imports, before the export)

Every tool runs with ARROW_DEFAULT_MEMORY_POOL=system, as the project's Dockerfile sets it (set the
variable to "mimalloc" to measure Arrow's default).

Environment: BENCH_ROWS, BENCH_FORMATS (default "parquet,jsonl,csv"), BENCH_TOOLS (default "stream,sql_to_s3";
"stream_cursor" adds the stream engine forced onto the server-side cursor, the path CrateDB sources take).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAY = date(2024, 1, 4)
BUCKET = "bench-bucket"
START = datetime(2024, 1, 4, tzinfo=timezone.utc)
END = START + timedelta(days=1)
QUERY = 'SELECT * FROM doc.metrics WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s'

GENERATE = """
CREATE SCHEMA IF NOT EXISTS doc;
DROP TABLE IF EXISTS doc.metrics;
CREATE TABLE doc.metrics (
    "hash_id" BIGINT, "timestamp" TIMESTAMP WITH TIME ZONE, "name" TEXT, "tags" JSON, "fields" JSON
);
INSERT INTO doc.metrics
SELECT g * 2654435761 % 9223372036854775807,
       '2024-01-04'::timestamptz + (g::bigint * 86399999999 / {n}) * interval '1 microsecond',
       (ARRAY['cpu', 'memory', 'disk', 'network', 'température', '電力', 'load'])[1 + g % 7],
       json_build_object('host', 'host-' || (g % 8), 'region', CASE WHEN g % 2 = 0 THEN 'eu-west' ELSE 'us-east' END),
       json_build_object('value', (g % 100000) / 1000.0, 'ok', g % 10 <> 0,
                         'samples', json_build_array(g % 100, g % 37, g % 11))
FROM generate_series(1, {n}) AS g;
VACUUM (ANALYZE) doc.metrics
"""  # VACUUM: a past day's table is settled (hint bits set, no autovacuum running during the measurements)

STREAM_OPTIONS = {"parquet": {"format": "parquet"}, "jsonl": {"format": "jsonl"}, "csv": {"format": "csv"}}
SQL_TO_S3_OPTIONS = {
    "parquet": {"file_format": "parquet", "df_kwargs": {"compression": "zstd"}},
    "jsonl": {"file_format": "json", "df_kwargs": {"orient": "records", "lines": True, "compression": "gzip"}},
    "csv": {"file_format": "csv", "df_kwargs": {"index": False, "compression": "gzip"}},
}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: on Linux that survives fork+exec and would
    report the parent's size (the parent holds the S3 server's objects)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(tool: str, fmt: str) -> dict[str, float]:
    """Runs in a child process; prints one JSON line. Each tool imports what it needs (only that,
    so the baseline is its own) before the clock starts."""
    if tool == "raw":
        import psycopg
    elif tool in ("stream", "stream_cursor"):
        from cratedb_airflow_export.config import TableExport
        from cratedb_airflow_export.export import run_export
        from cratedb_airflow_export.windows import Window
    else:
        from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator

    baseline = peak_rss_mb()
    started = time.monotonic()
    if tool == "raw":
        rows = 0
        with psycopg.connect(os.environ["BENCH_PG_URL"]) as conn, conn.cursor() as cur:
            sql = QUERY.replace("%(start)s", f"'{START.isoformat()}'").replace("%(end)s", f"'{END.isoformat()}'")
            with cur.copy(f"COPY ({sql}) TO STDOUT") as copy:
                for chunk in copy:
                    rows += bytes(chunk).count(b"\n")
    elif tool in ("stream", "stream_cursor"):  # stream_cursor: the path CrateDB takes (no COPY TO STDOUT)
        cfg = TableExport.model_validate(
            {
                "table": "doc.metrics",
                "timestamp_column": "timestamp",
                "engine": "stream",
                "target": f"s3://{BUCKET}/{tool}-{fmt}",
                "reader": "cursor" if tool == "stream_cursor" else "auto",
                **STREAM_OPTIONS[fmt],
            }
        )
        rows = run_export(cfg, Window.for_day(DAY)).rows
    else:
        operator = SqlToS3Operator(
            task_id="sql_to_s3",
            query=QUERY,
            parameters={"start": START, "end": END},
            sql_conn_id="cratedb_connection",
            aws_conn_id="aws_default",
            s3_bucket=BUCKET,
            s3_key=f"sql-to-s3-{fmt}/part",
            replace=True,
            **SQL_TO_S3_OPTIONS[fmt],
        )
        operator.execute(context={})  # type: ignore[arg-type]
        rows = int(os.environ["BENCH_ROWS"])
    seconds = time.monotonic() - started
    return {
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": baseline,
    }


def child(tool: str, fmt: str, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench", "--measure", tool, fmt],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {fmt} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    import psycopg

    from devtools.devstack import local_stack

    rows = int(os.environ.get("BENCH_ROWS", "2000000"))
    formats = os.environ.get("BENCH_FORMATS", "parquet,jsonl,csv").split(",")
    tools = os.environ.get("BENCH_TOOLS", "stream,sql_to_s3").split(",")
    with tempfile.TemporaryDirectory(prefix="cratedb-export-bench-") as home, local_stack() as (pg, s3):
        s3.client().create_bucket(Bucket=BUCKET)
        started = time.monotonic()
        with psycopg.connect(pg.url, autocommit=True) as conn:
            for statement in GENERATE.format(n=rows).split(";"):
                conn.execute(statement)
        print(f"generated {rows:,} rows of doc.metrics for {DAY} in {time.monotonic() - started:.1f}s", flush=True)
        env = {
            **os.environ,
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW_CONN_CRATEDB_CONNECTION": pg.url,
            "AIRFLOW_CONN_AWS_DEFAULT": s3.airflow_conn_uri(),
            "BENCH_PG_URL": pg.url,
            "BENCH_ROWS": str(rows),
            # as the project's Dockerfile sets it (for every tool): Arrow on the system allocator
            "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system"),
        }
        raw = child("raw", "-", env)
        if raw["rows"] != rows:
            raise RuntimeError(f"raw read saw {raw['rows']} rows, expected {rows}")
        print(f"raw read limit (COPY TO STDOUT, discarded): {raw['rows_per_s']:,.0f} rows/s", flush=True)
        results = []
        for fmt in formats:
            for tool in tools:
                result = child(tool, fmt, env)
                if result["rows"] != rows:
                    raise RuntimeError(f"{tool} {fmt} exported {result['rows']} rows, expected {rows}")
                share = result["rows_per_s"] / raw["rows_per_s"]
                print(
                    f"{tool:10} {fmt:8} {result['rows_per_s']:>10,.0f} rows/s ({share:4.0%} of raw read)  "
                    f"peak RSS {result['peak_rss_mb']:,.0f} MB (after imports {result['baseline_rss_mb']:,.0f} MB)"
                    f"  ({result['seconds']:.1f}s)",
                    flush=True,
                )
                results.append(
                    {
                        "tool": tool,
                        "format": fmt,
                        "rows_per_s": round(result["rows_per_s"]),
                        "peak_rss_mb": round(result["peak_rss_mb"], 1),
                        "baseline_rss_mb": round(result["baseline_rss_mb"], 1),
                    }
                )
    print(json.dumps({"rows": rows, "raw_read_rows_per_s": round(raw["rows_per_s"]), "results": results}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        sys.exit(0)
    sys.exit(main())
