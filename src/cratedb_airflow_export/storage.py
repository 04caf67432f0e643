"""The S3-compatible store: locations and the one ``s3://`` URI parser, the client, the bucket check,
listing and deleting, and a memory-bounded multipart writer.

Configuration parses its targets with :func:`parse_s3_uri` at DAG parse time, so this module
imports boto3 and botocore only inside the functions that talk to S3.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export.errors import TargetError, TargetUnusable

if TYPE_CHECKING:
    from botocore.config import Config
    from types_boto3_s3 import S3Client

    from cratedb_airflow_export.credentials import S3Credentials

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")
PARTS_PER_FILE = 9_000  # S3 allows 10,000 parts; a file may run past file_size_mb by one chunk or row group
# Every attempt stages its files under this folder at the bucket root: outside every table folder
# (configuration refuses targets inside it), and '_'-prefixed, so Hive readers never list it.
STAGING_ROOT = "_cratedb_export_staging"
LEASE_ROOT = "_cratedb_export_leases"  # one writer per table and day: lease.py


def bucket_problem(name: str) -> str | None:
    """Why ``name`` breaks S3's bucket naming rules, or None. The rules (general purpose buckets):
    3 to 63 characters of lower-case letters, digits, '.' and '-', starting and ending with a letter
    or digit; no '..' (nor '.-', '-.'); not shaped like an IP address; not the reserved prefixes
    'xn--', 'sthree-', 'amzn-s3-demo-' or suffixes '-s3alias', '--ol-s3', '.mrap', '--x-s3'."""
    if not BUCKET.fullmatch(name):
        return "3 to 63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "no '..', '.-' or '-.'"
    if IP_ADDRESS.fullmatch(name):
        return "not shaped like an IP address"
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3")
    ):
        return "not a prefix or suffix S3 reserves"
    return None


@dataclass(frozen=True)
class Location:
    """A folder in a bucket: ``prefix`` has no leading or trailing slash."""

    bucket: str
    prefix: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}/"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def child(self, name: str) -> Location:
        return Location(self.bucket, f"{self.prefix}/{name}" if self.prefix else name)


def parse_s3_uri(uri: str) -> Location:
    """``s3://bucket/some/prefix/`` -> ``Location("bucket", "some/prefix")``; the bucket name is
    checked, and the prefix may not have empty, ``.`` or ``..`` segments. Raises ValueError."""
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} must start with 's3://'")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    problem = bucket_problem(bucket)
    if problem:
        raise ValueError(f"{bucket!r} is not a valid S3 bucket name ({problem})")
    prefix = prefix.strip("/")
    if "//" in prefix or any(part in {".", ".."} for part in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' segment")
    return Location(bucket, prefix)


def object_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_object_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    location = parse_s3_uri(uri)
    if not location.prefix:
        raise ValueError(f"{uri!r} names a bucket, not an object")
    return location.bucket, location.prefix


# Every S3 call is bounded: data calls wait up to a minute for an answer and retry 3 times; the
# bucket check at the start of an attempt gives up within seconds (two tries of 5 s), so a
# black-holed endpoint fails the attempt at once instead of after minutes per call.
DATA_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 60,
    "retries": {"mode": "standard", "total_max_attempts": 4},
}
PROBE_TIMEOUTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 5,
    "retries": {"mode": "standard", "total_max_attempts": 2},
}


def client_config(*, probe: bool = False, configured: Config | None = None) -> Config:
    """The botocore config of a data client (what the connection configures wins) or of the
    probe client (its short bounds win)."""
    from botocore.config import Config

    ours = Config(**(PROBE_TIMEOUTS if probe else DATA_TIMEOUTS))
    if configured is None:
        return ours
    return configured.merge(ours) if probe else ours.merge(configured)


def make_clients(creds: S3Credentials) -> tuple[S3Client, S3Client]:
    """The data client and the probe client (short bounds, for the bucket check) from plain
    credentials, sharing one boto3 session (the command line; the Airflow edge uses S3Hook's).
    Without keys, boto3's own chain applies (environment, profile, instance role). Custom
    endpoints use path-style addressing."""
    session = _session(creds)
    return _client(session, creds, probe=False), _client(session, creds, probe=True)


def make_client(creds: S3Credentials) -> S3Client:
    """The data client of :func:`make_clients` alone."""
    return _client(_session(creds), creds, probe=False)


def _session(creds: S3Credentials) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.session_token,
        region_name=creds.region,
    )


def _client(session: Any, creds: S3Credentials, *, probe: bool) -> S3Client:
    from botocore.config import Config

    addressing = Config(s3={"addressing_style": "path"} if creds.endpoint_url else {})
    config = client_config(probe=probe).merge(addressing)
    return session.client("s3", endpoint_url=creds.endpoint_url, config=config)  # type: ignore[no-any-return]


def describe_client_error(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


S3_ACCESS_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}


def check_target(probe: S3Client, location: Location) -> None:
    """Fail fast when the bucket is missing, the endpoint unreachable, black-holed or not an S3
    server, or the credentials are wrong. ``probe``: a client with short bounds (``probe=True``).

    Lists at most one key (S3 answers in XML, which a web server that is not S3 does not), because
    CrateDB takes about 15 minutes to fail on a wrong S3 URL (crate/crate#18102).
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )
    from botocore.parsers import ResponseParserError

    endpoint = probe.meta.endpoint_url
    not_s3 = (
        f"the endpoint {endpoint} does not answer like an S3 server (its reply is not S3's listing): "
        "check the connection's endpoint_url"
    )
    try:
        listing = probe.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix + "/", MaxKeys=1)
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise TargetError(f"S3 endpoint unreachable: {exc}") from None
    except ReadTimeoutError:
        seconds = PROBE_TIMEOUTS["read_timeout"] * PROBE_TIMEOUTS["retries"]["total_max_attempts"]
        raise TargetError(
            f"S3 endpoint {endpoint} accepted the connection but did not answer (gave up after {seconds} s)"
        ) from None
    except ResponseParserError:
        raise TargetUnusable(not_s3) from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code, status = error.get("Code", ""), exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "NoSuchBucket":
            raise TargetUnusable(f"bucket {location.bucket!r} does not exist") from None
        if code in S3_ACCESS_ERRORS:
            raise TargetUnusable(
                f"bucket {location.bucket!r} access denied (check the credentials and bucket policy): {code}"
            ) from None
        if (not code or code.isdigit()) and status < 500:
            raise TargetUnusable(
                f"the endpoint {endpoint} answered HTTP {status} without an S3 error: it does not answer like an "
                "S3 server (check the connection's endpoint_url)"
            ) from None
        raise TargetError(f"bucket {location.bucket!r}: {describe_client_error(exc)}") from None
    except BotoCoreError as exc:
        raise TargetError(f"S3 check of bucket {location.bucket!r} failed: {exc}") from None
    if listing.get("Name") != location.bucket:  # every S3 listing names its bucket
        raise TargetUnusable(not_s3)


def write_args(sse: str | None = None, kms_key_id: str | None = None) -> dict[str, str]:
    """What every object write carries: a SHA-256 checksum that S3 verifies on arrival and stores
    (S3 additional checksums), and the table's server-side encryption."""
    args = {"ChecksumAlgorithm": "SHA256"}
    if sse:
        args["ServerSideEncryption"] = sse
    if kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
    return args


def stored_checksum(client: S3Client, bucket: str, key: str) -> str | None:
    """The SHA-256 checksum S3 stores for the object (for a multipart object: of its parts' checksums)."""
    return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256")


def stored_size(client: S3Client, bucket: str, key: str) -> int | None:
    """The object's size (one HEAD), None when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def default_encryption(client: S3Client, bucket: str) -> tuple[str | None, str | None]:
    """The bucket's default encryption: (algorithm, KMS key id), or (None, None) without one."""
    from botocore.exceptions import ClientError

    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ServerSideEncryptionConfigurationNotFoundError":
            return None, None
        raise
    default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
    return default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")


def reported_region(client: S3Client, bucket: str) -> str | None:
    """The region the S3 server names for ``bucket`` in its HEAD Bucket answer
    (``x-amz-bucket-region``): AWS and moto do; MinIO does not unless a region is configured."""
    headers = client.head_bucket(Bucket=bucket).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return headers.get("x-amz-bucket-region") or None


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    rows: int | None = None  # when the writer knows it
    checksum_sha256: str | None = None  # as S3 stores it, when read

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag, "rows": self.rows}

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def list_objects(client: S3Client, location: Location) -> list[StoredObject]:
    """Every object below the folder, in key order."""
    found: list[StoredObject] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
        for item in page.get("Contents", []):
            found.append(StoredObject(item["Key"], int(item["Size"]), item.get("ETag", "").strip('"')))
    return sorted(found, key=lambda o: o.key)


def list_folders(client: S3Client, bucket: str, prefix: str) -> list[str]:
    """The "folders" (common prefixes up to the next '/') whose keys start with ``prefix``, without
    their trailing '/', in key order: one request per 1,000 folders."""
    found: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found += [item["Prefix"].rstrip("/") for item in page.get("CommonPrefixes", [])]
    return sorted(found)


@dataclass(frozen=True)
class OpenUpload:
    key: str
    upload_id: str


def open_uploads(client: S3Client, location: Location) -> list[OpenUpload]:
    """Multipart uploads started below the folder and neither completed nor aborted."""
    found: list[OpenUpload] = []
    paginator = client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
        found += [OpenUpload(item["Key"], item["UploadId"]) for item in page.get("Uploads", [])]
    return sorted(found, key=lambda u: (u.key, u.upload_id))


def abort_uploads(client: S3Client, location: Location) -> int:
    """Abort the open multipart uploads below the folder; returns how many."""
    uploads = open_uploads(client, location)
    for upload in uploads:
        client.abort_multipart_upload(Bucket=location.bucket, Key=upload.key, UploadId=upload.upload_id)
    return len(uploads)


def read_object(client: S3Client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def put_object(
    client: S3Client, bucket: str, key: str, body: bytes, content_type: str | None = None, **args: str
) -> None:
    """One object in one request; ``args``: :func:`write_args`."""
    extra = {"ContentType": content_type, **args} if content_type else args
    client.put_object(Bucket=bucket, Key=key, Body=body, **extra)  # type: ignore[arg-type]


def delete_keys(client: S3Client, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        batch: Any = [{"Key": key} for key in keys[start : start + 1000]]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise TargetError(f"could not delete s3://{bucket}/{first.get('Key')}: {first.get('Message', '')}")


def clear(client: S3Client, location: Location) -> int:
    """Delete every object below the folder; returns how many there were."""
    keys = [o.key for o in list_objects(client, location)]
    delete_keys(client, location.bucket, keys)
    return len(keys)


class MultipartWriter:
    """Streams bytes into one S3 object; memory is bounded by two parts (the one being filled and
    the one uploading).

    A full part is uploaded by a background thread while the caller produces the next one (at most
    one upload in flight). The object appears only on :meth:`close` (CompleteMultipartUpload, or
    one PutObject when the data fit in a single part); :meth:`abort` discards every uploaded
    part, so a failed export leaves no object behind.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        part_size: int,
        content_type: str | None = None,
        args: dict[str, str] | None = None,
    ) -> None:
        """``args``: :func:`write_args` (checksum, encryption) for the object."""
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = max(part_size, MIN_PART_SIZE)
        self._extra: dict[str, Any] = {**({"ContentType": content_type} if content_type else {}), **(args or {})}
        self._checksum = self._extra.get("ChecksumAlgorithm")
        self._part: bytearray | None = None  # the part being filled, allocated at full size once
        self._fill = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-upload")
        self._inflight: Future[None] | None = None
        self._next_part = 1
        self.bytes_written = 0

    def write(self, data: Any) -> None:
        """Append ``data`` (bytes or any buffer; copied before this returns). Each byte is copied
        once, into the part it belongs to; a full part goes to the uploader as it is."""
        view = memoryview(data).cast("B")
        self.bytes_written += len(view)
        while len(view):
            if self._part is None:
                self._part, self._fill = bytearray(self.part_size), 0
            n = min(len(view), self.part_size - self._fill)
            self._part[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == self.part_size:
                self._submit(self._take())

    def _take(self) -> bytearray:
        part, fill = self._part if self._part is not None else bytearray(), self._fill
        self._part, self._fill = None, 0
        del part[fill:]  # in place: no copy
        return part

    def _submit(self, chunk: bytearray) -> None:
        self._wait()
        if self._upload_id is None:
            created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self._extra)
            self._upload_id = created["UploadId"]
        self._next_part += 1
        self._inflight = self._pool.submit(self._upload_part, self._next_part - 1, chunk)

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()  # re-raises an upload error in the caller

    def _upload_part(self, number: int, chunk: bytearray) -> None:
        assert self._upload_id is not None
        checksum: Any = {"ChecksumAlgorithm": self._checksum} if self._checksum else {}
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=chunk,  # type: ignore[arg-type]  # any buffer: botocore sends it as it is
            **checksum,
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if response.get("ChecksumSHA256"):
            part["ChecksumSHA256"] = response["ChecksumSHA256"]
        self._parts.append(part)
        log.info("uploaded part %d of s3://%s/%s (%d bytes so far)", number, self.bucket, self.key, self.bytes_written)

    def close(self, rows: int | None = None) -> StoredObject:
        try:
            if self._upload_id is None:
                body: Any = self._take()  # a bytearray: botocore sends any buffer as it is
                response: Any = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **self._extra)
            else:
                if self._fill:
                    self._submit(self._take())
                self._wait()
                parts: Any = sorted(self._parts, key=lambda p: p["PartNumber"])
                response = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
                )
        finally:
            self._pool.shutdown(wait=True)
        return StoredObject(self.key, self.bytes_written, str(response.get("ETag", "")).strip('"'), rows)

    def abort(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        self._part, self._fill = None, 0
        try:
            self._wait()
        except Exception:  # the upload that failed is why we abort
            pass
        self._pool.shutdown(wait=True)
        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except (ClientError, BotoCoreError) as exc:  # pragma: no cover - best effort on a failing path
                log.warning("could not abort multipart upload of s3://%s/%s: %s", self.bucket, self.key, exc)
            self._upload_id = None
