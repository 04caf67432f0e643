"""The Azure Blob Storage backend: azure-storage-blob, the one module of the package that imports it
(the ``azure`` extra), and only inside the functions that talk to Azure.

A container is this interface's bucket. A streamed object is a block blob: each part is staged as
a block (its MD5 checked by the service on arrival) and the object appears when the block list is
committed; an aborted write commits nothing (Azure discards uncommitted blocks after a week). The
whole object's MD5 is computed while writing and stored as its Content-MD5 (Azure does not compute
one for a block list), so :meth:`AzureStore.checksum` has one for every object written here. The
lease uses Azure's conditional requests (``If-None-Match: *``, ``If-Match`` an ETag).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import time
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
    from azure.storage.blob import BlobServiceClient, ContainerClient

    from cratedb_airflow_export.credentials import AzureCredentials

log = logging.getLogger(__name__)

# Bounded like the S3 backend: data calls wait up to a minute and retry 3 times, 1 + 2^n seconds
# apart (the SDK's default waits 15 s and more between tries: an endpoint gone held one call for a
# minute); the container check at the start of an attempt gives up within seconds.
BACKOFF: dict[str, Any] = {"initial_backoff": 1, "increment_base": 2, "random_jitter_range": 1}
DATA_BOUNDS: dict[str, Any] = {"connection_timeout": 10, "read_timeout": 60, "retry_total": 3, **BACKOFF}
PROBE_BOUNDS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 5, "retry_total": 1, **BACKOFF}
COPY_SECONDS = 600  # a server-side copy still pending after this fails the step


def make_service(creds: AzureCredentials, *, probe: bool = False) -> BlobServiceClient:
    """A Blob service client from a connection string, or the account's endpoint with its key or
    SAS token."""
    from azure.storage.blob import BlobServiceClient

    bounds = PROBE_BOUNDS if probe else DATA_BOUNDS
    if creds.connection_string:
        return BlobServiceClient.from_connection_string(creds.connection_string, **bounds)
    credential: Any = None
    if creds.key:
        credential = {"account_name": creds.account, "account_key": creds.key}
    elif creds.sas_token:
        credential = creds.sas_token.lstrip("?")
    return BlobServiceClient(creds.blob_endpoint, credential=credential, **bounds)


def _status(exc: BaseException) -> int:
    return int(getattr(exc, "status_code", 0) or 0)


class AzureStore(Store):
    """One storage account through two service clients: data (bounded waits, a few retries) and
    probe (the container check, gives up within seconds)."""

    scheme = "az"

    def __init__(self, service: BlobServiceClient, probe: BlobServiceClient | None = None) -> None:
        self.service = service
        self.probe = probe if probe is not None else service

    @classmethod
    def from_credentials(cls, creds: AzureCredentials) -> AzureStore:
        return cls(make_service(creds), make_service(creds, probe=True))

    def lake_uri(self, location: Location) -> str:
        """``abfss://<container>@<account>.dfs.<suffix>/<prefix>``, as Spark, Trino and DuckDB address
        a storage account; an endpoint of another shape (an emulator's path-style one) gives
        ``abfs://<container>/<prefix>``, the account left to the reader's configuration."""
        account, host = self.service.account_name, self.service.primary_hostname or ""
        path = f"/{location.prefix}" if location.prefix else ""
        if account and host.startswith(f"{account}.blob."):
            return f"abfss://{location.bucket}@{account}.dfs.{host[len(account) + 6 :]}{path}"
        return f"abfs://{location.bucket}{path}"

    def container(self, name: str) -> ContainerClient:
        return self.service.get_container_client(name)

    def check(self, location: Location) -> None:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        endpoint = self.probe.url
        try:
            # a listing of one blob, not Get Container Properties: a container's SAS token (service SAS)
            # may list, but never read the container's properties (Azure allows that to account SAS)
            blobs = self.probe.get_container_client(location.bucket).list_blobs(
                name_starts_with=location.prefix, results_per_page=1
            )
            next(iter(blobs.by_page()), None)
        except ResourceNotFoundError:
            raise TargetUnusable(f"container {location.bucket!r} does not exist in {endpoint}") from None
        except ClientAuthenticationError as exc:
            raise TargetUnusable(
                f"container {location.bucket!r} access denied (check the account key or SAS token): "
                f"{getattr(exc, 'error_code', None) or _status(exc)}"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TargetError(f"Azure endpoint {endpoint} unreachable or not answering: {type(exc).__name__}") from None
        except HttpResponseError as exc:
            if _status(exc) in (401, 403):  # e.g. a SAS token without the permissions the export needs
                raise TargetUnusable(
                    f"container {location.bucket!r} access denied: {getattr(exc, 'error_code', None) or _status(exc)} "
                    "(the export needs to read, add, create, write, delete and list: sp=racwdl, or the role "
                    "Storage Blob Data Contributor)"
                ) from None
            if _status(exc) < 500 and not getattr(exc, "error_code", None):
                raise TargetUnusable(
                    f"the endpoint {endpoint} answered HTTP {_status(exc)} without an Azure error: it does not "
                    "answer like Azure Blob Storage (check the connection's endpoint)"
                ) from None
            raise TargetError(f"container {location.bucket!r}: {getattr(exc, 'error_code', '')} {exc.reason}") from None

    def list_objects(self, location: Location) -> list[StoredObject]:
        found = [
            StoredObject(blob.name, int(blob.size), str(blob.etag).strip('"'))
            for blob in self.container(location.bucket).list_blobs(name_starts_with=location.prefix + "/")
        ]
        return sorted(found, key=lambda o: o.key)

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        found = [
            item.name.rstrip("/")
            for item in self.container(bucket).walk_blobs(name_starts_with=prefix, delimiter="/")
            if item.name.endswith("/")
        ]
        return sorted(found)

    def open_uploads(self, location: Location) -> list[OpenUpload]:
        """Azure keeps uncommitted blocks out of every listing and discards them by itself."""
        return []

    def abort_upload(self, bucket: str, upload: OpenUpload) -> None:
        return None

    def read(self, bucket: str, key: str) -> bytes:
        return self.container(bucket).download_blob(key).readall()

    def read_tail(self, bucket: str, key: str, size: int) -> bytes:
        blob = self.container(bucket).get_blob_client(key)
        total = int(blob.get_blob_properties().size)
        return blob.download_blob(offset=max(0, total - size)).readall()

    def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return self.container(bucket).download_blob(key, offset=start, length=length).readall()

    def open(self, bucket: str, key: str) -> IO[bytes]:
        return io.BufferedReader(_ChunkStream(self.container(bucket).download_blob(key).chunks()))

    def download(self, bucket: str, key: str, into: IO[bytes]) -> None:
        self.container(bucket).download_blob(key).readinto(into)

    def size(self, bucket: str, key: str) -> int | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return int(self.container(bucket).get_blob_client(key).get_blob_properties().size)
        except ResourceNotFoundError:
            return None

    def checksum(self, bucket: str, key: str) -> Checksum | None:
        md5 = self.container(bucket).get_blob_client(key).get_blob_properties().content_settings.content_md5
        return Checksum("md5", base64.b64encode(bytes(md5)).decode()) if md5 else None

    def put(
        self, bucket: str, key: str, body: bytes, content_type: str | None = None, options: WriteOptions | None = None
    ) -> None:
        from azure.storage.blob import ContentSettings

        settings = ContentSettings(content_type=content_type, content_md5=bytearray(hashlib.md5(body).digest()))
        self.container(bucket).upload_blob(key, body, overwrite=True, content_settings=settings, validate_content=True)

    def writer(
        self,
        bucket: str,
        key: str,
        part_size: int,
        content_type: str | None = None,
        options: WriteOptions | None = None,
    ) -> BlockWriter:
        return BlockWriter(self, bucket, key, part_size, content_type)

    def copy(self, bucket: str, source_key: str, key: str, options: WriteOptions | None = None) -> None:
        """Copy Blob on the server (keeps the source's Content-MD5), waited for up to COPY_SECONDS."""
        container = self.container(bucket)
        target = container.get_blob_client(key)
        target.start_copy_from_url(container.get_blob_client(source_key).url)
        deadline = time.monotonic() + COPY_SECONDS
        while True:
            copy = target.get_blob_properties().copy
            if copy.status in (None, "success"):
                return
            if copy.status != "pending":
                raise TargetError(
                    f"copying az://{bucket}/{source_key} to {key} ended {copy.status}: {copy.status_description}"
                )
            if time.monotonic() > deadline:
                target.abort_copy(copy.id or "")
                raise TargetError(f"copying az://{bucket}/{source_key} to {key} still pending after {COPY_SECONDS} s")
            time.sleep(0.5)

    def delete(self, bucket: str, keys: list[str]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        container = self.container(bucket)
        for key in keys:
            try:
                container.delete_blob(key)
            except ResourceNotFoundError:
                continue

    def _upload(self, bucket: str, key: str, body: bytes, content_type: str | None, **condition: Any) -> str | None:
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        settings = ContentSettings(content_type=content_type, content_md5=bytearray(hashlib.md5(body).digest()))
        try:
            answer = (
                self.container(bucket).get_blob_client(key).upload_blob(body, content_settings=settings, **condition)
            )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(answer["etag"])

    def create(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str | None:
        return self._upload(bucket, key, body, content_type, overwrite=False)

    def replace_if(self, bucket: str, key: str, body: bytes, tag: str, content_type: str | None = None) -> str | None:
        from azure.core import MatchConditions

        return self._upload(
            bucket, key, body, content_type, overwrite=True, etag=tag, match_condition=MatchConditions.IfNotModified
        )

    def fetch(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            download = self.container(bucket).download_blob(key)
        except ResourceNotFoundError:
            return None
        return download.readall(), str(download.properties.etag)


class _ChunkStream(io.RawIOBase):
    """A read-only stream over an iterator of byte chunks."""

    def __init__(self, chunks: Any) -> None:
        self._chunks, self._left = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left = bytes(chunk)
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


class BlockWriter(PartedWriter):
    """Streams bytes into one block blob (:class:`~.storage.PartedWriter`): each part a block staged
    with its MD5 (checked by Azure); the blob appears only on :meth:`close` (the block list
    committed with the whole blob's MD5, or one Put Blob when the data fit in a single part); the
    blocks of an aborted write are never part of a blob (Azure discards them)."""

    def __init__(self, store: AzureStore, bucket: str, key: str, part_size: int, content_type: str | None) -> None:
        super().__init__(key, part_size, "azure-upload")
        self.blob = store.container(bucket).get_blob_client(key)
        self.bucket, self.content_type = bucket, content_type
        self._md5 = hashlib.md5()

    def _seen(self, view: memoryview) -> None:
        self._md5.update(view)

    def _block_id(self, number: int) -> str:
        return base64.b64encode(f"{number - 1:08d}".encode()).decode()

    def _send_part(self, number: int, chunk: bytearray) -> None:
        block = self._block_id(number)
        self.blob.stage_block(block, bytes(chunk), validate_content=True)
        log.info("staged block %d of az://%s/%s (%d bytes so far)", number, self.bucket, self.key, self.bytes_written)

    def _settings(self) -> Any:
        from azure.storage.blob import ContentSettings

        return ContentSettings(content_type=self.content_type, content_md5=bytearray(self._md5.digest()))

    def _finish_whole(self, body: bytearray) -> str:
        answer: Any = self.blob.upload_blob(
            bytes(body), overwrite=True, content_settings=self._settings(), validate_content=True
        )
        return str(answer["etag"])

    def _finish_parts(self) -> str:
        from azure.storage.blob import BlobBlock

        blocks = [BlobBlock(self._block_id(n)) for n in range(1, self.parts_sent + 1)]
        answer: Any = self.blob.commit_block_list(blocks, content_settings=self._settings())
        return str(answer["etag"])
