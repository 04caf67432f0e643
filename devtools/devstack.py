"""A local stack without Docker: a real PostgreSQL and a real S3-compatible server on 127.0.0.1.

Used by ``make demo``, ``make up`` and the end-to-end tests. Everything binds to 127.0.0.1 and is
stopped by the PID this module started, nothing else.

- PostgreSQL: the binaries of the ``pgserver`` wheel (PostgreSQL 16), or a system installation
  (``pg_config --bindir``). PostgreSQL refuses to run as root, so as root the cluster runs as a
  dedicated system user created on first use.
- S3: moto's server in a background thread of the calling process (objects live in memory).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "cratedb-export-pg"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bindir() -> Path:
    """Where initdb/pg_ctl live: the pgserver wheel first, then a system installation."""
    spec = importlib.util.find_spec("pgserver")  # not imported: its import has side effects
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "pginstall" / "bin"
        if (bundled / "pg_ctl").exists():
            return bundled
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "pg_ctl").exists():
            return Path(out.stdout.strip())
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    raise RuntimeError("no PostgreSQL binaries found: install the 'pgserver' wheel or Debian's postgresql")


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(name)


def _make_traversable(path: Path) -> None:
    """Let another user reach ``path``: add o+x to each parent (not o+r)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o011)


@dataclass
class LocalPostgres:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1:<port>."""

    workdir: Path
    port: int = field(default_factory=free_port)
    user: str = "postgres"
    password: str = "postgres"
    database: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.workdir / "pgdata"

    @property
    def url(self) -> str:
        """libpq URL; the password is percent-encoded."""
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{self.database}"
        )

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            entry = _ensure_system_user(PG_SYSTEM_USER)
            kwargs = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        proc = subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return proc

    def start(self) -> LocalPostgres:
        bindir = postgres_bindir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = _ensure_system_user(PG_SYSTEM_USER)
            _make_traversable(bindir)
            os.chown(self.workdir, entry.pw_uid, entry.pw_gid)
            _make_traversable(self.workdir)
        pwfile = self.workdir / "pwfile"
        if not (self.datadir / "PG_VERSION").exists():
            pwfile.write_text(self.password + "\n")
            if os.geteuid() == 0:
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.datadir),
                    "-U",
                    self.user,
                    "--pwfile",
                    str(pwfile),
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                ]
            )
            pwfile.unlink()
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.workdir / "postgres.log"),
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.workdir} -c timezone=UTC",
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        log.info("PostgreSQL listening on 127.0.0.1:%s (data in %s)", self.port, self.datadir)
        return self

    @property
    def pid(self) -> int | None:
        pidfile = self.datadir / "postmaster.pid"
        return int(pidfile.read_text().splitlines()[0]) if pidfile.exists() else None

    def stop(self) -> None:
        if self.pid is None:
            return
        self._run([str(postgres_bindir() / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])


@dataclass
class LocalS3:
    """moto's S3-compatible server in a thread of this process, on 127.0.0.1.

    Two behaviours make it answer CrateDB's own S3 clients as MinIO (compose.yaml) does:

    - HEAD Bucket reports no bucket region (``report_bucket_region=False``, MinIO's default). The AWS
      SDK of CrateDB 5.x (``COPY TO/FROM s3://``, global bucket access enabled) caches a reported
      region and then sends every request to AWS's endpoint for it instead of the URI's host:
      ``Unable to execute HTTP request: s3.amazonaws.com`` (seen on CrateDB 5.10.16 with moto).
    - ``check_access_key``: a request signed with another access key is refused (403
      InvalidAccessKeyId), so wrong credentials seen only by CrateDB fail as on a real S3. moto
      itself takes any key; signatures are not verified.
    """

    port: int = field(default_factory=free_port)
    access_key: str = "demo-access-key"
    secret_key: str = "demo-secret-key"
    region: str = "us-east-1"
    report_bucket_region: bool = False
    check_access_key: bool = False
    _server: Any = None
    _thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalS3:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            "127.0.0.1", self.port, self._wrap(app), threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="local-s3")
        self._thread.start()
        log.info("S3-compatible server (moto) listening on %s", self.endpoint_url)
        return self

    def _wrap(self, app: Any) -> Any:
        denied = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>The AWS '
            b"Access Key Id you provided does not exist in our records.</Message></Error>"
        )
        signed_by = re.compile(r"Credential=([^/]+)/")

        def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
            key = signed_by.search(environ.get("HTTP_AUTHORIZATION", ""))
            if self.check_access_key and key and key.group(1) != self.access_key:
                start_response(
                    "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(denied)))]
                )
                return [denied]
            if self.report_bucket_region:
                return app(environ, start_response)

            def without_region(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                kept = [(k, v) for k, v in headers if k.lower() != "x-amz-bucket-region"]
                return start_response(status, kept, exc_info)

            return app(environ, without_region)

        return wrapped

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 client (tests look at what the server holds through S3's own API)."""
        return self.store().client

    def store(self):  # type: ignore[no-untyped-def]
        """The package's S3 backend on this server."""
        from cratedb_airflow_export.credentials import S3Credentials
        from cratedb_airflow_export.stores.s3 import S3Store

        return S3Store.from_credentials(
            S3Credentials(self.access_key, self.secret_key, endpoint_url=self.endpoint_url, region=self.region)
        )

    def arrow_filesystem(self):  # type: ignore[no-untyped-def]
        """A pyarrow S3 filesystem on this server (readers such as pyarrow.dataset)."""
        import pyarrow.fs as pafs

        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint_url,
            region=self.region,
            scheme="http",
        )

    def ensure_bucket(self, name: str) -> str:
        """``name``, created unless it exists (a server that outlives a run may have it)."""
        client = self.client()
        try:
            client.head_bucket(Bucket=name)
        except Exception:
            client.create_bucket(Bucket=name)
        return name

    def airflow_conn_uri(self) -> str:
        """``AIRFLOW_CONN_AWS_DEFAULT`` value for this server (keys percent-encoded)."""
        return (
            f"aws://{quote(self.access_key, safe='')}:{quote(self.secret_key, safe='')}@/"
            f"?endpoint_url={quote(self.endpoint_url, safe='')}&region_name={self.region}"
        )


@dataclass
class RemoteS3(LocalS3):
    """An S3-compatible server someone else runs (MinIO from compose.yaml): the same interface as
    :class:`LocalS3`; start and stop do nothing."""

    endpoint: str = "http://127.0.0.1:9000"

    @property
    def endpoint_url(self) -> str:
        return self.endpoint

    def start(self) -> RemoteS3:
        return self

    def stop(self) -> None:
        pass


@contextmanager
def local_stack(workdir: Path | None = None) -> Iterator[tuple[LocalPostgres, LocalS3]]:
    """Start PostgreSQL and S3 on 127.0.0.1; stop both (and remove a temporary workdir) on exit."""
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="cratedb-export-stack-")) if owned else workdir
    assert root is not None
    pg = LocalPostgres(root)
    s3 = LocalS3()
    try:
        pg.start()
        s3.start()
        yield pg, s3
    finally:
        s3.stop()
        pg.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)


# --- sample data: the tutorial's ``metrics`` table --------------------------------------------------

METRICS_DDL_POSTGRES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    "hash_id" BIGINT,
    "timestamp" TIMESTAMP WITH TIME ZONE,
    "name" TEXT,
    "tags" JSON,
    "fields" JSON
)
"""

METRICS_DDL_CRATEDB = """
CREATE TABLE IF NOT EXISTS {table} (
    "hash_id" BIGINT,
    "timestamp" TIMESTAMP WITH TIME ZONE,
    "name" TEXT,
    "tags" OBJECT(DYNAMIC),
    "fields" OBJECT(DYNAMIC),
    "month" TIMESTAMP AS date_trunc('quarter', "timestamp")
)
"""

SAMPLE_NAMES = ["cpu", "memory", "disk", "network", "température", "電力", "load 🚀"]


def sample_metrics(days: list[date], per_day: int, seed: int = 42) -> list[tuple[Any, ...]]:
    """Deterministic rows of the tutorial's shape: ``max(per_day, 4)`` a day, including boundary rows.

    Each day gets a row exactly at 00:00:00 UTC, one at 23:59:59.999999 UTC, and two stored with
    non-UTC offsets that fall inside the day only when converted to UTC.
    """
    rng = random.Random(seed)
    rows: list[tuple[Any, ...]] = []
    for day in days:
        start = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
        stamps = [
            start,
            start + timedelta(days=1) - timedelta(microseconds=1),
            (start + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2))),  # 03:00+02 = 01:00Z
            (start + timedelta(hours=22)).astimezone(timezone(timedelta(hours=-5))),  # 17:00-05 = 22:00Z
        ]
        while len(stamps) < per_day:
            stamps.append(start + timedelta(microseconds=rng.randrange(86_400_000_000)))
        for stamp in stamps:
            name = rng.choice(SAMPLE_NAMES)
            tags = {"host": f"host-{rng.randrange(8)}", "region": rng.choice(["eu-west", "us-east"]), "name": name}
            fields = {
                "value": round(rng.uniform(0, 100), 3),
                "ok": rng.random() > 0.1,
                "samples": [rng.randrange(100) for _ in range(3)],
                "note": None if rng.random() > 0.5 else 'ünïcødé "quoted" \\ back',
            }
            rows.append((rng.getrandbits(62), stamp, name, tags, fields))
    return rows


def create_metrics(
    conn: Any, rows: list[tuple[Any, ...]], *, cratedb: bool = False, table: str = "doc.metrics"
) -> None:
    """Create the tutorial's ``metrics`` table (PostgreSQL or CrateDB flavour) and insert ``rows``."""
    from psycopg.types.json import Json

    ddl = (METRICS_DDL_CRATEDB if cratedb else METRICS_DDL_POSTGRES).format(table=table, schema=table.split(".")[0])
    with conn.cursor() as cur:
        for statement in ddl.split(";"):
            if statement.strip():
                cur.execute(statement)
        cur.executemany(
            f'INSERT INTO {table} ("hash_id", "timestamp", "name", "tags", "fields") VALUES (%s, %s, %s, %s, %s)',
            [(h, ts, name, Json(tags), Json(fields)) for h, ts, name, tags, fields in rows],
        )
        if cratedb:
            cur.execute(f"REFRESH TABLE {table}")


def wait_for_airflow_api(port: int, proc: subprocess.Popen, timeout: float) -> bool:  # type: ignore[type-arg]
    """Wait until Airflow's API server on 127.0.0.1:``port`` answers; False if ``proc`` died or time ran out."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2)
            return True
        except OSError:
            time.sleep(0.5)
    return False
