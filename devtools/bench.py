"""``make bench``: rows/s and peak memory of the ``stream`` engine, the command-line export and
Airflow's SqlToS3Operator, against the raw read limit.

Run from the repository root: ``python -m devtools.bench``.

Generates BENCH_ROWS rows (default 2,000,000) of the tutorial's ``metrics`` shape for one day into a
local PostgreSQL, starts an S3-compatible server (moto) in a process of its own, then runs each
tool in a fresh process, so that its peak RSS (VmHWM) is its own:

- ``raw``: the raw read limit, ``COPY (SELECT ...) TO STDOUT`` over the same window, discarded;
- ``stream``: our ``stream`` engine in-process (``run_export``: read, encode, upload, count(*) check,
  publish), clock started after its imports;
- ``stream_cursor``: the same forced onto the server-side cursor, the path CrateDB sources take;
- ``cli``: ``cratedb-export run`` as a whole process, from interpreter start to exit;
- ``sql_to_s3``: Airflow's SqlToS3Operator on the same query, bucket and format.

So that the benchmark holds still on a busy machine, the raw read is measured before and after
every run and a run's share is its rows/s over the mean of those two; every tool runs BENCH_RUNS
times (default 3) and the median is reported with its spread ((max - min) / median). Every run's
rows are counted from what it wrote (Parquet footers, lines of JSON Lines and CSV), not assumed.

The last line printed is one JSON object:
{"rows": N, "raw_read_rows_per_s": ..., "results": [{"tool": ..., "format": ..., "rows_per_s": ...,
 "share_of_raw": ..., "spread": ..., "peak_rss_mb": ..., "baseline_rss_mb": ..., "cpu_seconds": {...},
 "ceiling_rows_per_s": ..., "share_of_ceiling": ...}]}
(median rows/s; baseline: RSS after imports, before the export; for ``cli`` the interpreter's own).

Every tool runs with ARROW_DEFAULT_MEMORY_POOL=system, as the project's Dockerfile sets it (set the
variable to "mimalloc" to measure Arrow's default).

Environment: BENCH_ROWS, BENCH_RUNS, BENCH_FORMATS (default "parquet,jsonl,csv,iceberg": ``iceberg``
commits the day to a table of a SQL catalog in a SQLite file; SqlToS3Operator has no such format), BENCH_TOOLS
(default "stream,cli,stream_cursor,sql_to_s3"; unknown names are an error), BENCH_CURSORS (the
tables' ``cursors``; default: the product's).

With CRATEDB_URL set the source is that CrateDB instead: the tutorial's ``metrics`` table (OBJECT
``tags`` and ``fields``, partitioned by quarter) as ``doc.cratedb_export_bench`` (dropped and created),
BENCH_ROWS rows in the day, and an S3 server (``devtools.s3server``: moto answering as MinIO) that
CrateDB must reach at the same address (it writes for ``copy``), so CrateDB runs on this machine or
CRATEDB_S3_ENDPOINT names a server both reach. The bound is CrateDB's own fastest unload of the
day, ``COPY ... TO DIRECTORY`` a local folder of CrateDB's (``raw``; BENCH_CRATEDB_DIR, default
``/tmp``, no S3); tools (default "copy,stream,cli,sql_to_s3"): ``copy``, the copy engine end to end
(CrateDB's ``COPY TO`` the S3 server, gzip; JSON Lines only), the others as above; ``raw_cursor``
(a diagnostic) reads the day through the declared cursor and discards it, which is CrateDB producing
and sending the rows with no conversion.

CPU: every run reports the CPU seconds of the measured process (the worker), of the S3 server and,
when CrateDB runs on this machine (the process listening on CRATEDB_URL's port, or
BENCH_CRATEDB_PID), of CrateDB; the run's ceiling is rows x cores / those seconds summed (what this
machine could do if every process kept its cores busy), and the CrateDB mode ends with one Markdown
table: each tool's rows/s against ``copy`` and against its ceiling, the CPU seconds and peak RSS.
"""

from __future__ import annotations

import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DAY = date(2024, 1, 4)
BUCKET = "bench-bucket"
START = datetime(2024, 1, 4, tzinfo=timezone.utc)
END = START + timedelta(days=1)
TABLE = "doc.metrics"
CRATEDB_TABLE = "doc.cratedb_export_bench"  # the only table the CrateDB mode drops and creates
TOOLS = ("stream", "cli", "stream_cursor", "sql_to_s3")
CRATEDB_TOOLS = ("copy", "stream", "cli", "sql_to_s3")
CRATEDB_KNOWN = (*CRATEDB_TOOLS, "raw_cursor")
FORMATS = ("parquet", "jsonl", "csv", "iceberg")


def query(table: str) -> str:
    return f'SELECT * FROM {table} WHERE "timestamp" >= %(start)s AND "timestamp" < %(end)s'


def bench_table() -> str:
    return CRATEDB_TABLE if os.environ.get("CRATEDB_URL") else TABLE


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

# The tutorial's table on CrateDB, partitioned by its generated quarter; OPTIMIZE: a past day's
# segments are merged, no merging runs during the measurements.
GENERATE_CRATEDB = """
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} (
    "hash_id" BIGINT, "timestamp" TIMESTAMP WITH TIME ZONE, "name" TEXT,
    "tags" OBJECT(DYNAMIC), "fields" OBJECT(DYNAMIC),
    "month" TIMESTAMP WITH TIME ZONE GENERATED ALWAYS AS date_trunc('quarter', "timestamp")
) PARTITIONED BY ("month");
INSERT INTO {table} ("hash_id", "timestamp", "name", "tags", "fields")
SELECT (g::bigint * 2654435761) % 9223372036854775807,
       (1704326400000 + (g::bigint * 86399999) / {n})::timestamp with time zone,
       ['cpu', 'memory', 'disk', 'network', 'température', '電力', 'load'][1 + g % 7],
       {{host = 'host-' || (g % 8), region = CASE WHEN g % 2 = 0 THEN 'eu-west' ELSE 'us-east' END}},
       {{value = (g % 100000) / 1000.0, ok = g % 10 <> 0, samples = [g % 100, g % 37, g % 11]}}
FROM generate_series(1, {n}) AS g;
REFRESH TABLE {table};
OPTIMIZE TABLE {table}
"""

# Installed here only for SqlToS3Operator (pandas is a dev dependency, numpy comes with it); the
# product's own dependencies pull in neither (tests/unit/test_packaging.py checks). pyarrow imports numpy
# whenever it can (11 MB resident), so our tools run with both unimportable: as a user's install.
# Unimportable as if not installed: a finder that raises ModuleNotFoundError (a None in sys.modules
# would look imported to pyarrow's pandas shim, which then fails reading its __version__).
DEV_ONLY = ("numpy", "pandas")
HIDE_DEV_ONLY = f"""
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {DEV_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""

SQL_TO_S3_OPTIONS = {
    "parquet": {"file_format": "parquet", "df_kwargs": {"compression": "zstd"}},
    "jsonl": {"file_format": "json", "df_kwargs": {"orient": "records", "lines": True, "compression": "gzip"}},
    "csv": {"file_format": "csv", "df_kwargs": {"index": False, "compression": "gzip"}},
}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM, which starts afresh at exec). Not ru_maxrss: on Linux that
    survives fork+exec and would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def table_config(tool: str, fmt: str, run: int) -> dict[str, Any]:
    return {
        "table": bench_table(),
        "timestamp_column": "timestamp",
        "engine": "copy" if tool == "copy" else "stream",
        "format": fmt,
        "target": f"s3://{BUCKET}/{prefix(tool, fmt, run)}",
        **({} if tool == "copy" else {"reader": "cursor" if tool == "stream_cursor" else "auto"}),
        **({"cursors": int(os.environ["BENCH_CURSORS"])} if os.environ.get("BENCH_CURSORS") else {}),
        **({"iceberg_table": f"bench.{tool}_{run}"} if fmt == "iceberg" else {}),  # its own table (and folder)
    }


def prefix(tool: str, fmt: str, run: int) -> str:
    return f"{tool}-{fmt}-{run}"


def measure(tool: str, fmt: str, run: int) -> dict[str, float]:
    """Runs in a child process; prints one JSON line. Each tool imports what it needs (only that,
    so the baseline is its own) before the clock starts."""
    if tool in ("raw", "raw_cursor"):
        import psycopg
    elif tool in ("stream", "stream_cursor", "copy"):
        exec(HIDE_DEV_ONLY)
        import boto3  # noqa: F401  # imported lazily by the core: here before the clock, as in a running worker
        import psycopg

        import cratedb_airflow_export.engines.stream  # noqa: F401  # pyarrow, formats, readers
        from cratedb_airflow_export.config import TableExport
        from cratedb_airflow_export.export import run_export
        from cratedb_airflow_export.windows import Window
    else:
        from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator

    baseline = peak_rss_mb()
    started, cpu_started = time.monotonic(), time.process_time()
    bounds = {"start": START, "end": END}
    if tool == "raw" and os.environ.get("CRATEDB_URL"):  # CrateDB's own unload of the day to its disk
        where = '"timestamp" >= %(start)s AND "timestamp" < %(end)s'
        target = os.environ.get("BENCH_CRATEDB_DIR", "/tmp")
        with psycopg.connect(os.environ["BENCH_PG_URL"], autocommit=True) as conn:
            copied = conn.execute(f"COPY {CRATEDB_TABLE} WHERE {where} TO DIRECTORY %(dir)s", {**bounds, "dir": target})
            rows = copied.rowcount
    elif tool == "raw":
        rows = 0
        with psycopg.connect(os.environ["BENCH_PG_URL"]) as conn, conn.cursor() as cur:
            sql = query(TABLE).replace("%(start)s", f"'{START.isoformat()}'").replace("%(end)s", f"'{END.isoformat()}'")
            with cur.copy(f"COPY ({sql}) TO STDOUT") as copy:
                for chunk in copy:
                    rows += bytes(chunk).count(b"\n")
    elif tool == "raw_cursor":  # CrateDB producing and sending the rows: text, no conversion, discarded
        from psycopg.types.string import TextLoader

        rows = 0
        with psycopg.connect(os.environ["BENCH_PG_URL"], autocommit=True) as conn, conn.cursor() as cur:
            for oid in (20, 1184, 1114, 1043, 25, 114, 1015, 199):
                cur.adapters.register_loader(oid, TextLoader)
            cur.execute(f"DECLARE c NO SCROLL CURSOR WITH HOLD FOR {query(CRATEDB_TABLE)}", bounds)
            while batch := cur.execute("FETCH FORWARD 10000 FROM c").fetchall():
                rows += len(batch)
            cur.execute("CLOSE c")
    elif tool in ("stream", "stream_cursor", "copy"):
        rows = run_export(TableExport.model_validate(table_config(tool, fmt, run)), Window.for_day(DAY)).rows
    else:
        operator = SqlToS3Operator(
            task_id="sql_to_s3",
            query=query(bench_table()),
            parameters=bounds,
            sql_conn_id="cratedb_connection",
            aws_conn_id="aws_default",
            s3_bucket=BUCKET,
            s3_key=f"{prefix(tool, fmt, run)}/part",
            replace=True,
            **SQL_TO_S3_OPTIONS[fmt],
        )
        operator.execute(context={})  # type: ignore[arg-type]
        rows = -1  # counted from what it wrote
    seconds = time.monotonic() - started
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "peak_rss_mb": peak_rss_mb(),
        "baseline_rss_mb": baseline,
    }


CLI = (
    HIDE_DEV_ONLY
    + """
import json, os
from pathlib import Path
def status(name):
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(name + ":"))
    return int(line.split()[1]) / 1024
baseline = status("VmRSS")
from cratedb_airflow_export.cli import main
code = main(sys.argv[1:])
import time
report = {"peak_rss_mb": status("VmHWM"), "baseline_rss_mb": baseline, "cpu_seconds": time.process_time()}
os.write(int(os.environ["BENCH_REPORT_FD"]), json.dumps(report).encode())
sys.exit(code)
"""
)


def run_cli(fmt: str, run: int, env: dict[str, str], workdir: Path) -> dict[str, float]:
    """``cratedb-export run`` as a whole process: interpreter start to exit, the console script's
    own entry point (``cli.main``); the process reports its peak RSS on a pipe as it exits."""
    config = workdir / f"cli-{fmt}-{run}.yaml"
    config.write_text(json.dumps({"tables": [table_config("cli", fmt, run)]}))
    read_end, write_end = os.pipe()
    args = ["run", "--date", DAY.isoformat(), "--config", str(config)]
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, *args],
        cwd=REPO,
        env={**env, "BENCH_REPORT_FD": str(write_end)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    out, err = proc.communicate()
    seconds = time.monotonic() - started
    report = os.read(read_end, 4096)
    os.close(read_end)
    if proc.returncode != 0:
        raise RuntimeError(f"cli {fmt} failed:\n{err.decode()[-3000:]}\n{out.decode()[-1000:]}")
    return {"rows": -1, "seconds": seconds, **json.loads(report)}


def child(tool: str, fmt: str, run: int, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "devtools.bench", "--measure", tool, fmt, str(run)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} {fmt} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows_written(client: Any, fmt: str, key_prefix: str) -> int:
    """Rows in the data files under ``key_prefix``: Parquet footers, lines of JSON Lines, CSV lines
    less the header; decompressed as a stream (bounded memory)."""
    import pyarrow.parquet as pq

    paginator = client.get_paginator("list_objects_v2")
    listing = [
        o for page in paginator.paginate(Bucket=BUCKET, Prefix=key_prefix + "/") for o in page.get("Contents", [])
    ]
    keys = [o["Key"] for o in listing if not o["Key"].rsplit("/", 1)[-1].startswith("_")]
    if fmt in ("parquet", "iceberg"):  # Iceberg: the data files, not the table's metadata
        keys = [key for key in keys if key.endswith(".parquet")]
    if not keys:
        raise RuntimeError(f"nothing written under s3://{BUCKET}/{key_prefix}/")
    total = 0
    for key in keys:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        if fmt in ("parquet", "iceberg"):
            total += pq.read_metadata(io.BytesIO(body.read())).num_rows
            continue
        lines, inflate = 0, zlib.decompressobj(31) if key.endswith(".gz") else None
        for chunk in body.iter_chunks(1 << 20):
            data = inflate.decompress(chunk) if inflate else chunk
            lines += data.count(b"\n")
        total += lines - (1 if fmt == "csv" else 0)
    return total


def remove_run(client: Any, key_prefix: str) -> None:
    """Delete what a run wrote (its partition and anything left in staging): moto keeps every
    object in its process's memory, and a server holding hundreds of MB more is a slower server."""
    for folder in (key_prefix + "/", f"_cratedb_export_staging/{key_prefix}/"):
        while keys := [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=folder).get("Contents", [])]:
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in keys]})


class MotoProcess:
    """The local S3 server (``devtools.s3server``: moto, answering as MinIO) in a process of its
    own, on 127.0.0.1: it does not share the measured process, the objects it holds do not count in
    anybody's RSS, and CrateDB (which writes for the ``copy`` engine) reaches it too."""

    def __init__(self) -> None:
        from devtools.devstack import LocalS3, free_port

        self.s3 = LocalS3(port=free_port())
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Any:
        server = [sys.executable, "-m", "devtools.s3server", "--port", str(self.s3.port)]
        self.proc = subprocess.Popen(
            [*server, "--access-key", self.s3.access_key, "--secret-key", self.s3.secret_key],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.s3.client().list_buckets()
                return self.s3
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("moto_server did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def process_cpu(pid: int) -> float:
    """CPU seconds a process and its waited-for children have used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1/0.0.0.0 ``port`` on this machine (None: none here, or not
    visible to this user): CrateDB's, whose CPU the CrateDB mode reports."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def cores() -> int:
    return len(os.sched_getaffinity(0))


def chosen(variable: str, default: tuple[str, ...], known: tuple[str, ...]) -> list[str]:
    names = [n.strip() for n in os.environ.get(variable, ",".join(default)).split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"{variable}: unknown {unknown}; known: {', '.join(known)}")
    return names


def base_env(home: str, source_url: str, s3: Any) -> dict[str, str]:
    return {
        **os.environ,
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CRATEDB_CONNECTION": source_url,
        "AIRFLOW_CONN_AWS_DEFAULT": s3.airflow_conn_uri(),
        "BENCH_PG_URL": source_url,
        # format iceberg: a SQL catalog in a SQLite file of the run's folder
        "AIRFLOW_CONN_ICEBERG_DEFAULT": json.dumps(
            {"conn_type": "generic", "extra": {"type": "sql", "uri": f"sqlite:///{home}/catalog.db"}}
        ),
        # as the project's Dockerfile sets it (for every tool): Arrow on the system allocator
        "ARROW_DEFAULT_MEMORY_POOL": os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "system"),
    }


def main_cratedb(url: str, rows: int, runs: int, formats: list[str]) -> int:
    """The benchmark against the CrateDB at ``url`` (see the module's docstring)."""
    from urllib.parse import urlparse

    import psycopg

    tools = chosen("BENCH_TOOLS", CRATEDB_TOOLS, CRATEDB_KNOWN)
    moto = MotoProcess()
    with tempfile.TemporaryDirectory(prefix="cratedb-export-bench-") as home, moto as s3:
        client = s3.client()
        client.create_bucket(Bucket=BUCKET)
        started = time.monotonic()
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in GENERATE_CRATEDB.format(table=CRATEDB_TABLE, n=rows).split(";"):
                conn.execute(statement)
            version = conn.execute("SELECT version()").fetchone()[0]  # type: ignore[index]
        print(f"generated {rows:,} rows of {CRATEDB_TABLE} for {DAY} in {time.monotonic() - started:.1f}s ({version})")
        env = base_env(home, url, s3)
        crate = int(os.environ.get("BENCH_CRATEDB_PID") or 0) or listening_pid(urlparse(url).port or 5432)
        assert moto.proc is not None
        watched = {"S3 server": moto.proc.pid, **({"CrateDB": crate} if crate else {})}
        if not crate:
            print("CrateDB's process is not on this machine (BENCH_CRATEDB_PID): no CPU figures, no ceiling")
        try:
            results, raws = bench(tools, formats, runs, rows, env, client, Path(home), watched if crate else {})
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {CRATEDB_TABLE}")
    print(comparison(results, rows, cores()))
    print(
        json.dumps(
            {"rows": rows, "source": version, "raw_read_rows_per_s": round(statistics.mean(raws)), "results": results}
        )
    )
    return 0


def comparison(results: list[dict[str, Any]], rows: int, cpus: int) -> str:
    """The CrateDB mode's results as one Markdown table: each tool against the ``copy`` engine and
    against the machine's ceiling (rows x cores / the CPU seconds every process of the run used)."""
    copy = next((r["rows_per_s"] for r in results if r["tool"] == "copy" and "rows_per_s" in r), None)
    lines = [
        f"{rows:,} rows, {cpus} cores, medians",
        "| tool | format | rows/s | x copy | CPU s CrateDB / worker / S3 | ceiling rows/s | of ceiling | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "rows_per_s" not in r:
            lines.append(f"| {r['tool']} | {r['format']} | does not run | | | | | |")
            continue
        cpu = r.get("cpu_seconds", {})
        spent = " / ".join(f"{cpu[k]:.1f}" if k in cpu else "-" for k in ("CrateDB", "worker", "S3 server"))
        ceiling = r.get("ceiling_rows_per_s")
        lines.append(
            f"| {r['tool']} | {r['format']} | {r['rows_per_s']:,} | "
            + (f"{r['rows_per_s'] / copy:.2f}" if copy else "-")
            + f" | {spent} | "
            + (f"{ceiling:,} | {r['share_of_ceiling']:.0%}" if ceiling else "- | -")
            + f" | {r['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def main() -> int:
    import psycopg

    from devtools.devstack import LocalPostgres

    rows = int(os.environ.get("BENCH_ROWS", "2000000"))
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    formats = chosen("BENCH_FORMATS", FORMATS, FORMATS)
    if os.environ.get("CRATEDB_URL"):
        return main_cratedb(os.environ["CRATEDB_URL"], rows, runs, formats)
    tools = chosen("BENCH_TOOLS", TOOLS, TOOLS)
    with tempfile.TemporaryDirectory(prefix="cratedb-export-bench-") as home, MotoProcess() as s3:
        pg = LocalPostgres(Path(home) / "pg").start()
        try:
            client = s3.client()
            client.create_bucket(Bucket=BUCKET)
            started = time.monotonic()
            with psycopg.connect(pg.url, autocommit=True) as conn:
                for statement in GENERATE.format(n=rows).split(";"):
                    conn.execute(statement)
            print(f"generated {rows:,} rows of doc.metrics for {DAY} in {time.monotonic() - started:.1f}s", flush=True)
            env = base_env(home, pg.url, s3)
            results, raws = bench(tools, formats, runs, rows, env, client, Path(home))
        finally:
            pg.stop()
    print(json.dumps({"rows": rows, "raw_read_rows_per_s": round(statistics.mean(raws)), "results": results}))
    return 0


def bench(
    tools: list[str],
    formats: list[str],
    runs: int,
    rows: int,
    env: dict[str, str],
    client: Any,
    workdir: Path,
    watched: dict[str, int] | None = None,
) -> tuple[list[dict[str, Any]], list[float]]:
    """Every tool in every format ``runs`` times; ``watched``: processes (name -> PID) whose CPU
    seconds during each run are reported beside the worker's own (the database, the S3 server)."""
    watched = watched or {}

    def raw() -> float:
        measured = child("raw", "-", 0, env)
        if measured["rows"] != rows:
            raise RuntimeError(f"raw read saw {measured['rows']} rows, expected {rows}")
        return rows / measured["seconds"]

    raws = [raw()]
    bound = "COPY TO DIRECTORY, CrateDB's disk" if os.environ.get("CRATEDB_URL") else "COPY TO STDOUT, discarded"
    print(f"raw read limit ({bound}): {raws[0]:,.0f} rows/s", flush=True)
    results = []
    for fmt in formats:
        for tool in tools:
            if tool == "copy" and fmt != "jsonl":
                continue  # CrateDB's COPY TO writes JSON Lines only
            if tool == "sql_to_s3" and fmt == "iceberg":
                continue  # SqlToS3Operator writes files, not Iceberg tables
            if tool == "raw_cursor" and fmt != formats[0]:
                continue  # writes nothing: once is enough
            speeds, shares, peaks, baselines = [], [], [], []
            cpus: dict[str, list[float]] = {name: [] for name in ("worker", *watched)}
            for run in range(runs):
                before = raws[-1]
                cpu_before = {name: process_cpu(pid) for name, pid in watched.items()}
                try:
                    measured = run_cli(fmt, run, env, workdir) if tool == "cli" else child(tool, fmt, run, env)
                except RuntimeError as exc:
                    if not (tool == "sql_to_s3" and os.environ.get("CRATEDB_URL")):
                        raise
                    # SqlToS3Operator reads through PostgresHook's SQLAlchemy engine, whose PostgreSQL
                    # dialect cannot parse CrateDB's version(): reported, not measured
                    error = str(exc).strip().splitlines()[-1][:300]
                    print(f"{tool:13} {fmt:8} does not run against CrateDB: {error}", flush=True)
                    results.append({"tool": tool, "format": fmt, "error": error})
                    break
                for name, pid in watched.items():
                    cpus[name].append(process_cpu(pid) - cpu_before[name])
                cpus["worker"].append(measured["cpu_seconds"])
                written = rows if tool == "raw_cursor" else rows_written(client, fmt, prefix(tool, fmt, run))
                remove_run(client, prefix(tool, fmt, run))  # the S3 server holds the same, whichever run is next
                if written != rows or measured["rows"] not in (-1, rows):
                    raise RuntimeError(f"{tool} {fmt}: wrote {written} rows (reported {measured['rows']}), not {rows}")
                raws.append(raw())
                speed = rows / measured["seconds"]
                speeds.append(speed)
                shares.append(speed / statistics.mean([before, raws[-1]]))
                peaks.append(measured["peak_rss_mb"])
                baselines.append(measured["baseline_rss_mb"])
            if not speeds:
                continue
            median = statistics.median(speeds)
            spread = (max(speeds) - min(speeds)) / median
            share = statistics.median(shares)
            cpu = {name: round(statistics.median(values), 2) for name, values in cpus.items()}
            used = [sum(values) for values in zip(*cpus.values(), strict=True)]
            # what this machine's cores could do if every process of the run kept them busy
            ceiling = statistics.median(rows * cores() / seconds for seconds in used) if len(cpus) > 1 else None
            print(
                f"{tool:13} {fmt:8} {median:>10,.0f} rows/s ({share:4.0%} of raw read, spread {spread:4.0%})  "
                f"peak RSS {max(peaks):,.0f} MB (after imports {statistics.median(baselines):,.0f} MB)  "
                f"CPU s {' / '.join(f'{k} {v:.1f}' for k, v in cpu.items())}"
                + (f"  ceiling {ceiling:,.0f} rows/s ({median / ceiling:.0%})" if ceiling else ""),
                flush=True,
            )
            results.append(
                {
                    "cpu_seconds": cpu,
                    **(
                        {"ceiling_rows_per_s": round(ceiling), "share_of_ceiling": round(median / ceiling, 3)}
                        if ceiling
                        else {}
                    ),
                    "tool": tool,
                    "format": fmt,
                    "rows_per_s": round(median),
                    "share_of_raw": round(share, 3),
                    "spread": round(spread, 3),
                    "peak_rss_mb": round(max(peaks), 1),
                    "baseline_rss_mb": round(statistics.median(baselines), 1),
                }
            )
    return results, raws


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        sys.exit(0)
    sys.exit(main())
