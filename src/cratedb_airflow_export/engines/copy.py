"""Engine ``copy``: CrateDB's server-side ``COPY ... TO DIRECTORY 's3://...'`` (the tutorial's), or
``'az://...'`` for Azure Blob Storage (the account key or SAS token as bind parameters in ``WITH``).

CrateDB writes the files itself, one per shard, so nothing passes through the worker; CrateDB needs
network access to the bucket. The target URI, with the keys percent-encoded, is a bind parameter:
it never appears in the statement text that CrateDB records in ``sys.jobs_log`` or that the task
log shows. The exact row count comes from the command tag (``COPY <n>``). See docs/cratedb.md for
the URI form and the behaviours this relies on.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, urlsplit

from cratedb_airflow_export import sql
from cratedb_airflow_export.credentials import REDACTED, AzureCredentials, S3Credentials
from cratedb_airflow_export.engines.base import Engine, ExportJob, ExportResult
from cratedb_airflow_export.errors import CredentialsError, SourceError, TargetUnusable
from cratedb_airflow_export.source import execute
from cratedb_airflow_export.storage import StoredObject
from cratedb_airflow_export.stores.azure import AzureStore
from cratedb_airflow_export.stores.s3 import S3Store

if TYPE_CHECKING:
    from cratedb_airflow_export.attempt import Attempt
    from cratedb_airflow_export.credentials import StoreCredentials
    from cratedb_airflow_export.source import SourceInfo
    from cratedb_airflow_export.storage import Location, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrateTarget:
    """Where CrateDB's COPY writes (or reads): the URI, its ``protocol`` option, and the secret
    options (Azure's ``key`` or ``sas_token``), all bind parameters."""

    uri: sql.Secret
    protocol: str | None = None
    secrets: dict[str, sql.Secret] = field(default_factory=dict)


def cratedb_target(creds: StoreCredentials | None, location: Location) -> CrateTarget:
    """:func:`cratedb_s3_uri` or :func:`cratedb_az_uri`, as ``location`` is in S3 or in Azure."""
    if location.scheme == "az":
        return cratedb_az_uri(creds if isinstance(creds, AzureCredentials) else None, location)
    uri, protocol = cratedb_s3_uri(creds if isinstance(creds, S3Credentials) else None, location)
    return CrateTarget(uri, protocol)


def cratedb_az_uri(creds: AzureCredentials | None, location: Location) -> CrateTarget:
    """``az://<account>.<endpoint suffix>/<container>/<prefix>``, CrateDB's form: the account is the
    first label of the host (CrateDB addresses the account's endpoint by host name, so a path-style
    endpoint such as Azurite's default ``http://127.0.0.1:10000/<account>`` cannot be reached by it);
    ``protocol`` from the endpoint; the account key (or else the SAS token) as ``key`` / ``sas_token``.
    Without credentials (``plan``) it shows placeholders."""
    path = f"{location.bucket}/{location.prefix}"
    if creds is None or not (creds.account_key or creds.signature):
        shown = f"az://<account>.blob.core.windows.net/{path}"
        return CrateTarget(sql.Secret(shown, shown), None, {"key": sql.Secret("<key>", "<key>")})
    parts = endpoint_parts(creds.blob_endpoint)
    host = parts.hostname or ""
    account = creds.account_name
    if parts.path.strip("/") or not account or not host.startswith(f"{account}."):
        named = f" {account!r}" if account else ""
        raise CredentialsError(
            f"{creds.origin}: CrateDB's COPY addresses an Azure account by host name (az://<account>.<endpoint>/...), "
            f"and the endpoint {creds.blob_endpoint} does not start with the account's name{named}: "
            "use engine 'stream', or an endpoint of the form https://<account>.blob.core.windows.net"
        )
    authority = host + (f":{parts.port}" if parts.port else "")
    uri = f"az://{authority}/{path}"
    name, value = ("key", creds.account_key) if creds.account_key else ("sas_token", creds.signature)
    assert value is not None
    return CrateTarget(sql.Secret(uri, uri), parts.scheme.lower(), {name: sql.Secret(value, REDACTED)})


def cratedb_s3_uri(creds: S3Credentials | None, location: Location) -> tuple[sql.Secret, str | None]:
    """The ``s3://`` URI CrateDB's COPY writes to (or reads from), and the ``protocol`` option it needs.

    Form: ``s3://<access>:<secret>@[<host>:<port>/]<bucket>/<prefix>``. Keys are percent-encoded
    (AWS secrets contain '/', '+', '='). CrateDB treats the authority as an endpoint only with an
    explicit port, so custom endpoints always get one; with a region and no endpoint the portable
    AWS form ``s3.<region>.amazonaws.com:443`` is used. Without keys (``plan``) it shows placeholders.
    """
    if creds is not None and creds.session_token:
        raise CredentialsError(
            f"{creds.origin} yields temporary credentials (a session token); CrateDB's COPY TO cannot "
            "use them. Use an access key pair, or the 'stream' engine"
        )
    protocol = None
    endpoint = ""
    endpoint_url = creds.endpoint_url if creds else None
    if endpoint_url:
        parts = endpoint_parts(endpoint_url)
        protocol = parts.scheme.lower()
        if protocol not in {"http", "https"} or not parts.hostname:
            raise CredentialsError(f"endpoint_url {endpoint_url!r} must be http(s)://host[:port]")
        port = parts.port or (443 if protocol == "https" else 80)
        endpoint = f"{parts.hostname}:{port}/"
    elif creds is not None and creds.region:
        endpoint = f"s3.{creds.region}.amazonaws.com:443/"
    path = f"{endpoint}{location.bucket}/{location.prefix}"
    if creds is None or creds.access_key is None or creds.secret_key is None:
        shown = f"s3://<access_key>:<secret_key>@{path}"
        return sql.Secret(shown, shown), protocol
    access = quote(creds.access_key, safe="")
    secret = sql.Secret(f"s3://{access}:{quote(creds.secret_key, safe='')}@{path}", f"s3://{access}:{REDACTED}@{path}")
    return secret, protocol


EMPTY_PROBE_BYTES = 64  # an empty gzip member is 20 bytes; a file holding a row is larger than this


def without_empty_files(store: Store, bucket: str, objects: list[StoredObject]) -> tuple[StoredObject, ...]:
    """``objects`` without the files that hold no row, which are deleted. CrateDB writes a file for
    every shard, also for shards without rows in the window; an empty JSON file breaks readers
    such as pyarrow ("Empty JSON stream"), and a day without rows is a manifest with rows 0."""
    kept: list[StoredObject] = []
    empty: list[str] = []
    for obj in objects:
        if obj.size <= EMPTY_PROBE_BYTES and not _holds_text(store.read(bucket, obj.key)):
            empty.append(obj.key)
        else:
            kept.append(obj)
    if empty:
        store.delete(bucket, empty)
        log.info("removed %d file(s) without rows (shards without rows in the window)", len(empty))
    return tuple(kept)


def _holds_text(data: bytes) -> bool:
    return bool((gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).strip())


def check_default_encryption(store: S3Store, bucket: str, sse: str, kms_key_id: str | None) -> None:
    """CrateDB's COPY TO cannot be asked to encrypt what it writes (docs/cratedb.md): with ``sse``
    set, the bucket's default encryption must be that encryption, or the export is refused."""
    algorithm, key = store.default_encryption(bucket)
    if algorithm == sse and (kms_key_id is None or key == kms_key_id):
        return
    wanted = sse + (f" with key {kms_key_id}" if kms_key_id else "")
    found = f"{algorithm}{f' with key {key}' if key else ''}" if algorithm else "none"
    raise TargetUnusable(
        f"engine 'copy' cannot ask CrateDB to encrypt the files it writes, and bucket {bucket!r} does not "
        f"encrypt them by default as the table asks (sse: {wanted}; the bucket's default encryption: {found}): "
        "set the bucket's default encryption to match, or use engine 'stream'"
    )


class CopyEngine(Engine):
    name = "copy"
    needs = (
        "CrateDB writes the files itself (COPY ... TO DIRECTORY): the source must be CrateDB, and CrateDB must "
        "reach the bucket; engine 'stream' works against any source"
    )

    def check(self, job: ExportJob, attempt: Attempt) -> None:
        cfg, source = job.cfg, attempt.database
        if not isinstance(attempt.store, (S3Store, AzureStore)):
            raise TargetUnusable(f"engine 'copy': CrateDB cannot write to {job.location.uri}")
        if cfg.sse and isinstance(attempt.store, S3Store):
            check_default_encryption(attempt.store, job.location.bucket, cfg.sse, cfg.sse_kms_key_id)
        if not source.dialect.copy_to_directory:
            raise SourceError(
                f"engine 'copy' needs CrateDB's COPY ... TO DIRECTORY, and the source of {job.cfg.qualified_name} "
                f"is {source.dialect}: use engine 'stream'"
            )
        check_endpoint_kept(attempt, job.location.bucket)

    def statements(self, job: ExportJob, source: SourceInfo, creds: StoreCredentials | None) -> list[sql.Statement]:
        target = cratedb_target(creds, job.staging)
        copy = sql.copy_to(
            job.cfg,
            job.range,
            target.uri,
            protocol=target.protocol,
            naive=source.naive_timestamps,
            secrets=target.secrets,
        )
        return [sql.refresh(job.cfg), copy] if source.dialect.needs_refresh else [copy]

    def run(self, job: ExportJob, attempt: Attempt, statements: list[sql.Statement]) -> ExportResult:
        *prepare, copy = statements
        for statement in prepare:  # REFRESH: bounded by the attempt
            execute(attempt.cursor, statement, job.cfg.attempt_seconds)
        if job.slice_index is None:
            attempt.count_in_background(job.window)  # the rows are settled: count them while CrateDB writes
        try:
            execute(attempt.cursor, copy, job.cfg.attempt_seconds)
        except Exception as exc:
            refused = refused_by_store(exc, job.staging.uri)
            if refused is None:
                raise
            raise refused from None

        rows = attempt.cursor.rowcount
        if rows is None or rows < 0:
            raise RuntimeError(f"COPY returned no row count (command tag {attempt.cursor.statusmessage!r})")
        objects = without_empty_files(attempt.store, job.staging.bucket, attempt.store.list_objects(job.staging))
        log.info(
            "COPY wrote %d rows of %s into %d object(s) under %s",
            rows,
            job.cfg.qualified_name,
            len(objects),
            job.staging.uri,
        )
        return ExportResult(job, self.name, rows, objects)


# What CrateDB's COPY reports when the store refuses its credentials or what they may do (its S3
# client's access errors; its Azure client (opendal) "PermissionDenied"): another try would be refused
# the same way, so the attempt fails as unusable instead of being retried. Not every error opendal
# calls "(permanent)": with an endpoint out of reach, CrateDB 6.4.3 reports "ConfigInvalid
# (permanent) ... region is missing", which a network path that comes back heals.
STORE_REFUSALS = (
    "PermissionDenied",
    "AuthorizationPermissionMismatch",
    "AuthenticationFailed",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "Status Code: 403",
)


def refused_by_store(exc: BaseException, where: str) -> TargetUnusable | None:
    """A :class:`TargetUnusable` for a COPY the store refused (see STORE_REFUSALS), else None."""
    text = str(exc)
    if not any(mark in text for mark in STORE_REFUSALS):
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return TargetUnusable(
        f"CrateDB's COPY was refused by the store at {where} ({first}): check the credentials CrateDB is given "
        "and what they may do there (a retry would be refused the same way)"
    )


def endpoint_parts(endpoint_url: str) -> SplitResult:
    """An S3 endpoint as configured, ``host[:port]`` without a scheme meaning https."""
    return urlsplit(endpoint_url if "://" in endpoint_url else f"https://{endpoint_url}")


def check_endpoint_kept(attempt: Attempt, bucket: str) -> None:
    """Refuse an export (or restore) by COPY that CrateDB would send to AWS instead of the S3
    endpoint given: CrateDB before 6.3 with an S3 server that names the bucket's region
    (``SourceInfo.copy_follows_bucket_region``). It would fail only after its SDK's retries, with
    ``Unable to execute HTTP request: s3.amazonaws.com``."""
    endpoint = attempt.creds.endpoint_url
    if not endpoint or not attempt.database.copy_follows_bucket_region:
        return
    if (endpoint_parts(endpoint).hostname or "").endswith(".amazonaws.com"):
        return
    region = attempt.store.reported_region(bucket) if isinstance(attempt.store, S3Store) else None
    if region:
        version = ".".join(map(str, attempt.database.version or ()))
        raise TargetUnusable(
            f"CrateDB {version} would send COPY's S3 requests to AWS's endpoint for region {region!r} instead of "
            f"{endpoint}: before 6.3, CrateDB's S3 client follows the region an S3 server names for the bucket, and "
            f"this one names {region!r}. Use engine 'stream', CrateDB 6.3 or later, or an S3 server that names no "
            "region (MinIO's default)"
        )
