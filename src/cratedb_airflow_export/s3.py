"""The S3 destination: a boto3 client from the Airflow connection, target checks, listing and a
memory-bounded multipart writer."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.layout import Location

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last


class TargetError(RuntimeError):
    """The target bucket cannot be reached or written."""


def s3_client(creds: S3Credentials) -> Any:
    """A boto3 S3 client: through S3Hook for an Airflow connection, plain boto3 for the env fallback."""
    if creds.conn_id is not None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=creds.conn_id).get_conn()
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        endpoint_url=creds.endpoint_url,
        region_name=creds.region,
        config=Config(s3={"addressing_style": "path"} if creds.endpoint_url else {}),
    )


def describe_client_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"


def check_target(client: Any, location: Location) -> None:
    """Fail fast when the bucket is missing, unreachable or the credentials are wrong.

    CrateDB takes about 15 minutes to fail on a wrong S3 URL (crate/crate#18102); this takes a second.
    """
    try:
        client.head_bucket(Bucket=location.bucket)
    except EndpointConnectionError as exc:
        raise TargetError(f"S3 endpoint unreachable: {exc}") from None
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reason = {404: "does not exist", 403: "access denied (check the credentials and bucket policy)"}.get(
            status, describe_client_error(exc)
        )
        raise TargetError(f"bucket {location.bucket!r} {reason}") from None
    except BotoCoreError as exc:
        raise TargetError(f"S3 check of bucket {location.bucket!r} failed: {exc}") from None


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    rows: int | None = None  # when the writer knows it

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag, "rows": self.rows}

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def list_objects(client: Any, location: Location) -> list[StoredObject]:
    """Every object below the folder, in key order."""
    found: list[StoredObject] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.prefix + "/"):
        for item in page.get("Contents", []):
            found.append(StoredObject(item["Key"], int(item["Size"]), item.get("ETag", "").strip('"')))
    return sorted(found, key=lambda o: o.key)


def delete_keys(client: Any, bucket: str, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        response = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if response.get("Errors"):
            first = response["Errors"][0]
            raise TargetError(f"could not delete s3://{bucket}/{first['Key']}: {first.get('Message', '')}")


def clear(client: Any, location: Location) -> int:
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

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.part_size = max(part_size, MIN_PART_SIZE)
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
            self._upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        self._next_part += 1
        self._inflight = self._pool.submit(self._upload_part, self._next_part - 1, chunk)

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()  # re-raises an upload error in the caller

    def _upload_part(self, number: int, chunk: bytearray) -> None:
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=chunk
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})
        log.info("uploaded part %d of s3://%s/%s (%d bytes so far)", number, self.bucket, self.key, self.bytes_written)

    def close(self, rows: int | None = None) -> StoredObject:
        try:
            if self._upload_id is None:
                response = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=self._take())
            else:
                if self._fill:
                    self._submit(self._take())
                self._wait()
                parts = sorted(self._parts, key=lambda p: p["PartNumber"])
                response = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
                )
        finally:
            self._pool.shutdown(wait=True)
        return StoredObject(self.key, self.bytes_written, str(response.get("ETag", "")).strip('"'), rows)

    def abort(self) -> None:
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
