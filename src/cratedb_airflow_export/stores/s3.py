"""The S3 backend (AWS S3 and S3-compatible servers: MinIO, moto): boto3, the one module of the
package that imports it (a test says so), and only inside the functions that talk to S3.

Every write carries a SHA-256 checksum that S3 verifies on arrival and stores (S3 additional
checksums) and the table's server-side encryption; the lease uses S3's conditional writes
(``If-None-Match: *``, ``If-Match``).
"""

from __future__ import annotations

import logging
from typing import IO, TYPE_CHECKING, Any

from cratedb_airflow_export.errors import TargetError, TargetUnusable
from cratedb_airflow_export.storage import (
    Checksum,
    Location,
    OpenUpload,
    PartedWriter,
    Store,
    StoredObject,
    WriteOptions,
)

if TYPE_CHECKING:
    from botocore.config import Config
    from types_boto3_s3 import S3Client

    from cratedb_airflow_export.credentials import S3Credentials

log = logging.getLogger(__name__)

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
S3_ACCESS_ERRORS = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
NOT_FOUND = ("404", "NoSuchKey", "NotFound")


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
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.session_token,
        region_name=creds.region,
    )
    addressing = Config(s3={"addressing_style": "path"} if creds.endpoint_url else {})

    def client(probe: bool) -> S3Client:
        config = client_config(probe=probe).merge(addressing)
        return session.client("s3", endpoint_url=creds.endpoint_url, config=config)

    return client(False), client(True)


def describe_client_error(exc: Exception) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def _code(exc: Any) -> tuple[str, int]:
    """A ClientError's S3 error code and HTTP status."""
    return exc.response.get("Error", {}).get("Code", ""), exc.response.get("ResponseMetadata", {}).get(
        "HTTPStatusCode", 0
    )


def write_args(options: WriteOptions | None) -> dict[str, str]:
    """What every object write carries: a SHA-256 checksum that S3 verifies on arrival and stores,
    and the table's server-side encryption."""
    args = {"ChecksumAlgorithm": "SHA256"}
    if options is not None and options.sse:
        args["ServerSideEncryption"] = options.sse
    if options is not None and options.kms_key_id:
        args["SSEKMSKeyId"] = options.kms_key_id
    return args


class S3Store(Store):
    """An S3 endpoint through two boto3 clients: ``client`` for data (bounded waits, a few
    retries), ``probe`` for the bucket check (gives up within seconds)."""

    scheme = "s3"

    def __init__(self, client: S3Client, probe: S3Client | None = None) -> None:
        self.client = client
        self.probe = probe if probe is not None else client

    @classmethod
    def from_credentials(cls, creds: S3Credentials) -> S3Store:
        return cls(*make_clients(creds))

    def check(self, location: Location) -> None:
        """Lists at most one key (S3 answers in XML, which a web server that is not S3 does not),
        because CrateDB takes about 15 minutes to fail on a wrong S3 URL (crate/crate#18102)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )
        from botocore.parsers import ResponseParserError

        endpoint = self.probe.meta.endpoint_url
        not_s3 = (
            f"the endpoint {endpoint} does not answer like an S3 server (its reply is not S3's listing): "
            "check the connection's endpoint_url"
        )
        try:
            listing = self.probe.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix + "/", MaxKeys=1)
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
            code, status = _code(exc)
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

    def list_objects(self, location: Location) -> list[StoredObject]:
        found: list[StoredObject] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
            for item in page.get("Contents", []):
                found.append(StoredObject(item["Key"], int(item["Size"]), item.get("ETag", "").strip('"')))
        return sorted(found, key=lambda o: o.key)

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        """One request per 1,000 folders."""
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            found += [item["Prefix"].rstrip("/") for item in page.get("CommonPrefixes", [])]
        return sorted(found)

    def open_uploads(self, location: Location) -> list[OpenUpload]:
        found: list[OpenUpload] = []
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
            found += [OpenUpload(item["Key"], item["UploadId"]) for item in page.get("Uploads", [])]
        return sorted(found, key=lambda u: (u.key, u.upload_id))

    def abort_upload(self, bucket: str, upload: OpenUpload) -> None:
        self.client.abort_multipart_upload(Bucket=bucket, Key=upload.key, UploadId=upload.upload_id)

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def read_tail(self, bucket: str, key: str, size: int) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{size}")["Body"].read()

    def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        span = f"bytes={start}-{start + length - 1}"
        return self.client.get_object(Bucket=bucket, Key=key, Range=span)["Body"].read()

    def open(self, bucket: str, key: str) -> IO[bytes]:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"]  # type: ignore[return-value]

    def download(self, bucket: str, key: str, into: IO[bytes]) -> None:
        self.client.download_fileobj(bucket, key, into)

    def size(self, bucket: str, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as exc:
            if _code(exc)[0] in NOT_FOUND:
                return None
            raise

    def checksum(self, bucket: str, key: str) -> Checksum | None:
        value = self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED").get("ChecksumSHA256")
        return Checksum("sha256", value) if value else None

    def put(
        self, bucket: str, key: str, body: bytes, content_type: str | None = None, options: WriteOptions | None = None
    ) -> None:
        extra: Any = {**({"ContentType": content_type} if content_type else {}), **write_args(options)}
        self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def writer(
        self,
        bucket: str,
        key: str,
        part_size: int,
        content_type: str | None = None,
        options: WriteOptions | None = None,
    ) -> MultipartWriter:
        return MultipartWriter(self.client, bucket, key, part_size, content_type, write_args(options))

    def copy(self, bucket: str, source_key: str, key: str, options: WriteOptions | None = None) -> None:
        """Multipart server-side copy for large objects (boto3's managed copy)."""
        extra: Any = write_args(options)
        self.client.copy({"Bucket": bucket, "Key": source_key}, bucket, key, ExtraArgs=extra)

    def delete(self, bucket: str, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch: Any = [{"Key": key} for key in keys[start : start + 1000]]
            response = self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise TargetError(f"could not delete s3://{bucket}/{first.get('Key')}: {first.get('Message', '')}")

    def _conditional_put(
        self, bucket: str, key: str, body: bytes, content_type: str | None, **condition: str
    ) -> str | None:
        from botocore.exceptions import ClientError

        extra: Any = {"ContentType": content_type} if content_type else {}
        try:
            answer = self.client.put_object(Bucket=bucket, Key=key, Body=body, **extra, **condition)  # type: ignore[arg-type]
        except ClientError as exc:
            code, status = _code(exc)
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (404, 409, 412):
                return None
            raise
        return answer["ETag"]

    def create(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str | None:
        return self._conditional_put(bucket, key, body, content_type, IfNoneMatch="*")

    def replace_if(self, bucket: str, key: str, body: bytes, tag: str, content_type: str | None = None) -> str | None:
        return self._conditional_put(bucket, key, body, content_type, IfMatch=tag)

    def fetch(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc)[0] in NOT_FOUND:
                return None
            raise
        return answer["Body"].read(), answer["ETag"]

    # S3 alone: what the copy engine checks before CrateDB writes to S3 itself.

    def default_encryption(self, bucket: str) -> tuple[str | None, str | None]:
        """The bucket's default encryption: (algorithm, KMS key id), or (None, None) without one."""
        from botocore.exceptions import ClientError

        try:
            rules = self.client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError as exc:
            if _code(exc)[0] == "ServerSideEncryptionConfigurationNotFoundError":
                return None, None
            raise
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        return default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")

    def reported_region(self, bucket: str) -> str | None:
        """The region the S3 server names for ``bucket`` in its HEAD Bucket answer
        (``x-amz-bucket-region``): AWS and moto do; MinIO does not unless a region is configured."""
        headers = self.client.head_bucket(Bucket=bucket).get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return headers.get("x-amz-bucket-region") or None


class MultipartWriter(PartedWriter):
    """Streams bytes into one S3 object (:class:`~.storage.PartedWriter`): a multipart upload,
    started with the first full part; CompleteMultipartUpload on :meth:`close` (one PutObject when
    the data fit in a single part); :meth:`abort` discards every uploaded part, so a failed export
    leaves no object behind."""

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
        super().__init__(key, part_size, "s3-upload")
        self.client, self.bucket = client, bucket
        self._extra: dict[str, Any] = {**({"ContentType": content_type} if content_type else {}), **(args or {})}
        self._checksum = self._extra.get("ChecksumAlgorithm")
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _before_first_part(self) -> None:
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key, **self._extra)
        self._upload_id = created["UploadId"]

    def _send_part(self, number: int, chunk: bytearray) -> None:
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

    def _finish_whole(self, body: bytearray) -> str:
        # a bytearray: botocore sends any buffer as it is
        response: Any = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, **self._extra)  # type: ignore[arg-type]
        return str(response.get("ETag", ""))

    def _finish_parts(self) -> str:
        assert self._upload_id is not None
        parts: Any = sorted(self._parts, key=lambda p: p["PartNumber"])
        response: Any = self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
        )
        return str(response.get("ETag", ""))

    def _discard(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._upload_id is not None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except (ClientError, BotoCoreError) as exc:  # pragma: no cover - best effort on a failing path
                log.warning("could not abort multipart upload of s3://%s/%s: %s", self.bucket, self.key, exc)
            self._upload_id = None
