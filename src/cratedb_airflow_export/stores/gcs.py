"""The Google Cloud Storage backend: google-cloud-storage, the one module of the package that
imports it (the ``gcs`` extra), and only inside the functions that talk to GCS.

A streamed object is a resumable upload (the JSON API) in parts of the configured size; the object
appears when the upload is finalized on close, and an abandoned upload leaves no object (GCS
discards the session after a week). GCS computes a CRC32C of every object as it arrives (also of
composite and resumable ones) and keeps it: :meth:`GcsStore.checksum`. The lease uses generation
preconditions (``ifGenerationMatch: 0`` to create, the generation read to replace).
"""

from __future__ import annotations

import functools
import logging
from typing import IO, TYPE_CHECKING, Any

from cratedb_airflow_export.errors import TargetError, TargetUnusable
from cratedb_airflow_export.storage import (
    MIN_PART_SIZE,
    Checksum,
    Location,
    OpenUpload,
    Store,
    StoredObject,
    WriteOptions,
)

if TYPE_CHECKING:
    from google.cloud.storage import Bucket, Client

    from cratedb_airflow_export.credentials import GcsCredentials

log = logging.getLogger(__name__)

DATA_TIMEOUT = (10, 60)  # connect, read: as the other backends
PROBE_TIMEOUT = (5, 5)
# how long one call retries what GCS calls transient (the library's default: 120 s): an endpoint
# gone fails the attempt within about this, and Airflow's retry takes over
RETRY_SECONDS = 20.0
CHUNK = 256 * 1024  # resumable upload parts are multiples of this


@functools.cache
def _retry() -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(RETRY_SECONDS)


def _bounded() -> dict[str, Any]:
    """The bounds of every data call: its socket timeouts and its retries."""
    return {"timeout": DATA_TIMEOUT, "retry": _retry()}


def make_client(creds: GcsCredentials) -> Client:
    """A client from a service account's key (JSON or file), Application Default Credentials
    otherwise; ``endpoint_url`` (fake-gcs-server, a private endpoint) with anonymous access when no
    key is given for it."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client
    from google.oauth2 import service_account

    credentials: Any = None
    if creds.keyfile_dict is not None:
        credentials = service_account.Credentials.from_service_account_info(creds.keyfile_dict)
    elif creds.key_path:
        credentials = service_account.Credentials.from_service_account_file(creds.key_path)
    elif creds.endpoint_url:
        credentials = AnonymousCredentials()
    options = {"api_endpoint": creds.endpoint_url} if creds.endpoint_url else None
    project = creds.project or (credentials.project_id if hasattr(credentials, "project_id") else None)
    return Client(project=project or "-", credentials=credentials, client_options=options)


class GcsStore(Store):
    scheme = "gs"

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def from_credentials(cls, creds: GcsCredentials) -> GcsStore:
        return cls(make_client(creds))

    def bucket(self, name: str) -> Bucket:
        return self.client.bucket(name)

    def check(self, location: Location) -> None:
        from google.api_core.exceptions import Forbidden, GoogleAPICallError, NotFound, Unauthorized
        from requests.exceptions import RequestException

        endpoint = self.client._connection.API_BASE_URL
        try:
            self.client.get_bucket(location.bucket, timeout=PROBE_TIMEOUT, retry=None)
        except NotFound:
            raise TargetUnusable(f"bucket {location.bucket!r} does not exist") from None
        except (Forbidden, Unauthorized) as exc:
            raise TargetUnusable(
                f"bucket {location.bucket!r} access denied (check the service account and its role): {exc.code}"
            ) from None
        except GoogleAPICallError as exc:
            raise TargetError(f"bucket {location.bucket!r}: {exc.code} {exc.message}") from None
        except RequestException as exc:
            raise TargetError(f"GCS endpoint {endpoint} unreachable or not answering: {type(exc).__name__}") from None
        except ValueError:  # a reply that is not GCS's JSON
            raise TargetUnusable(
                f"the endpoint {endpoint} does not answer like Google Cloud Storage (check the connection's endpoint)"
            ) from None

    def list_objects(self, location: Location) -> list[StoredObject]:
        blobs = self.client.list_blobs(location.bucket, prefix=location.prefix + "/", **_bounded())
        found = [StoredObject(b.name, int(b.size or 0), str(b.etag or "")) for b in blobs]
        return sorted(found, key=lambda o: o.key)

    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client.list_blobs(bucket, prefix=prefix, delimiter="/", **_bounded())
        folders: set[str] = set()
        for page in pages.pages:
            folders.update(page.prefixes)
        return sorted(p.rstrip("/") for p in folders)

    def open_uploads(self, location: Location) -> list[OpenUpload]:
        """GCS lists no unfinished resumable uploads; they never become objects."""
        return []

    def abort_upload(self, bucket: str, upload: OpenUpload) -> None:
        return None

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.bucket(bucket).blob(key).download_as_bytes(**_bounded()))

    def read_tail(self, bucket: str, key: str, size: int) -> bytes:
        blob = self.bucket(bucket).get_blob(key, **_bounded())
        if blob is None:
            raise FileNotFoundError(f"gs://{bucket}/{key}")
        start = max(0, int(blob.size or 0) - size)
        return bytes(blob.download_as_bytes(start=start, **_bounded(), checksum=None))

    def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        blob = self.bucket(bucket).blob(key)
        end = start + length - 1  # inclusive
        return bytes(blob.download_as_bytes(start=start, end=end, **_bounded(), checksum=None))

    def open(self, bucket: str, key: str) -> IO[bytes]:
        return self.bucket(bucket).blob(key).open("rb")  # type: ignore[no-any-return]

    def download(self, bucket: str, key: str, into: IO[bytes]) -> None:
        self.bucket(bucket).blob(key).download_to_file(into, **_bounded())

    def size(self, bucket: str, key: str) -> int | None:
        blob = self.bucket(bucket).get_blob(key, **_bounded())
        return None if blob is None else int(blob.size or 0)

    def checksum(self, bucket: str, key: str) -> Checksum | None:
        blob = self.bucket(bucket).get_blob(key, **_bounded())
        return Checksum("crc32c", blob.crc32c) if blob is not None and blob.crc32c else None

    def put(
        self, bucket: str, key: str, body: bytes, content_type: str | None = None, options: WriteOptions | None = None
    ) -> None:
        self.bucket(bucket).blob(key).upload_from_string(
            body, content_type=content_type or "application/octet-stream", **_bounded(), checksum="crc32c"
        )

    def writer(
        self,
        bucket: str,
        key: str,
        part_size: int,
        content_type: str | None = None,
        options: WriteOptions | None = None,
    ) -> ResumableWriter:
        return ResumableWriter(self, bucket, key, part_size, content_type)

    def copy(self, bucket: str, source_key: str, key: str, options: WriteOptions | None = None) -> None:
        """Rewrite on the server, resumed with its token until done (large objects take several calls)."""
        container = self.bucket(bucket)
        target, token = container.blob(key), None
        while True:
            # the library's own retry: none for a copy without a generation precondition
            token, _, _ = target.rewrite(container.blob(source_key), token=token, timeout=DATA_TIMEOUT)
            if token is None:
                return

    def delete(self, bucket: str, keys: list[str]) -> None:
        from google.api_core.exceptions import NotFound

        container = self.bucket(bucket)
        for key in keys:
            try:
                container.delete_blob(key, **_bounded())
            except NotFound:
                continue

    def _upload(self, bucket: str, key: str, body: bytes, content_type: str | None, generation: int) -> str | None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        blob = self.bucket(bucket).blob(key)
        try:
            blob.upload_from_string(
                body,
                content_type=content_type or "application/octet-stream",
                if_generation_match=generation,
                **_bounded(),  # retried: the generation precondition makes a repeat harmless
            )
        except (PreconditionFailed, NotFound):
            return None
        return str(blob.generation)

    def create(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str | None:
        return self._upload(bucket, key, body, content_type, 0)

    def replace_if(self, bucket: str, key: str, body: bytes, tag: str, content_type: str | None = None) -> str | None:
        return self._upload(bucket, key, body, content_type, int(tag))

    def fetch(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        for _ in range(5):  # the object changed between reading its generation and its bytes: again
            blob = self.bucket(bucket).get_blob(key, **_bounded())
            if blob is None:
                return None
            try:
                data = blob.download_as_bytes(if_generation_match=blob.generation, **_bounded())
            except NotFound:
                return None
            except PreconditionFailed:
                continue
            return data, str(blob.generation)
        raise TargetError(f"gs://{bucket}/{key} kept changing while it was read")


class ResumableWriter:
    """Streams bytes into one object through a resumable upload: google-cloud-storage's writer holds
    one part (``part_size``, rounded to 256 KiB) and sends it when full; the object is finalized on
    :meth:`close`; :meth:`abort` never finalizes it, so no object appears."""

    def __init__(self, store: GcsStore, bucket: str, key: str, part_size: int, content_type: str | None) -> None:
        self.blob = store.bucket(bucket).blob(key)
        self.key = key
        size = max(part_size, MIN_PART_SIZE)
        self._stream: Any = self.blob.open(
            "wb",
            chunk_size=size - size % CHUNK,
            content_type=content_type or "application/octet-stream",
            ignore_flush=True,
            **_bounded(),
        )
        self.bytes_written = 0

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self.bytes_written += len(view)
        self._stream.write(view)

    def close(self, rows: int | None = None) -> StoredObject:
        self._stream.close()
        self.blob.reload(**_bounded())
        return StoredObject(self.key, self.bytes_written, str(self.blob.etag or ""), rows)

    def abort(self) -> None:
        """The upload session is left unfinished: GCS never makes it an object. Its buffer is closed
        first: the writer would otherwise finalize the upload when it is closed or collected."""
        if self._stream is not None:
            self._stream._buffer.close()
            self._stream.close()
            self._stream = None
