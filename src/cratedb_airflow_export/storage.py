"""The object store, whatever it is: locations, the one target URI parser, and :class:`Store`, the
interface every backend implements (``stores/``: one module per store).

The publish protocol, manifests, the lease, ``verify``, ``restore``, retention's archive checks and
Iceberg's file registration call a :class:`Store` and never a store's SDK, as common-sql's Dialect
keeps callers dialect-agnostic. This module imports no SDK: configuration parses its targets here at
DAG parse time.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import IO, Any, Literal, NamedTuple, Protocol

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last; every backend cuts parts this big
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
    """A folder in a bucket (S3, GCS) or container (Azure): ``prefix`` has no leading or trailing
    slash; ``scheme`` names the store (``s3``, ``az``, ``gs``)."""

    bucket: str
    prefix: str
    scheme: str = "s3"

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}/"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def child(self, name: str) -> Location:
        return self.at(f"{self.prefix}/{name}" if self.prefix else name)

    def at(self, prefix: str) -> Location:
        """Another folder of the same bucket."""
        return replace(self, prefix=prefix)

    def object_uri(self, key: str) -> str:
        """The URI of the object ``key`` (a whole key, not a name in this folder) of this bucket."""
        return f"{self.scheme}://{self.bucket}/{key}"


CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
# The schemes a target may have, and the store each names: abfs:// (as Spark, fsspec and DuckDB
# spell Azure Blob Storage) is read as az://, CrateDB's spelling.
SCHEMES = {"s3": "s3", "az": "az", "abfs": "az", "gs": "gs"}
GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._\-]{1,220}[a-z0-9]")


def container_problem(name: str) -> str | None:
    """Why ``name`` breaks Azure's container naming rules, or None: 3 to 63 lower-case letters,
    digits and '-', starting and ending with a letter or digit, no '--'."""
    if not CONTAINER.fullmatch(name):
        return "3 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit, no '--'"
    return None


def parse_target(uri: str) -> Location:
    """``s3://bucket/some/prefix/`` -> ``Location("bucket", "some/prefix")``; ``az://container/prefix``
    (or ``abfs://``) -> ``Location("container", "prefix", "az")``. The bucket or container name is
    checked, and the prefix may not have empty, ``.`` or ``..`` segments. Raises ValueError."""
    scheme, found, rest = uri.partition("://")
    if not found or scheme not in SCHEMES:
        raise ValueError(f"{uri!r} must start with 's3://', 'az://' (or 'abfs://') or 'gs://'")
    bucket, _, prefix = rest.partition("/")
    store = SCHEMES[scheme]
    if store == "az":
        if "@" in bucket:
            raise ValueError(
                f"{uri!r}: name the container alone (az://<container>/<path>); the account comes from the connection"
            )
        problem = container_problem(bucket)
        if problem:
            raise ValueError(f"{bucket!r} is not a valid Azure container name ({problem})")
    elif store == "gs":
        if not GCS_BUCKET.fullmatch(bucket) or ".." in bucket or any(len(p) > 63 for p in bucket.split(".")):
            raise ValueError(
                f"{bucket!r} is not a valid GCS bucket name (3 to 63 lower-case letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit; up to 222 with dots, each part up to 63)"
            )
    else:
        problem = bucket_problem(bucket)
        if problem:
            raise ValueError(f"{bucket!r} is not a valid S3 bucket name ({problem})")
    prefix = prefix.strip("/")
    if "//" in prefix or any(part in {".", ".."} for part in prefix.split("/")):
        raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' segment")
    return Location(bucket, prefix, store)


def split_object_uri(uri: str) -> tuple[Location, str]:
    """``s3://bucket/some/key`` -> (the bucket's root, ``"some/key"``)."""
    location = parse_target(uri)
    if not location.prefix:
        raise ValueError(f"{uri!r} names a bucket, not an object")
    return location.at(""), location.prefix


@dataclass(frozen=True)
class WriteOptions:
    """What every object a table writes carries besides its bytes: the table's server-side
    encryption (S3: ``AES256`` / ``aws:kms`` with a key). Every backend also has the store verify
    and keep a checksum of what arrived (:meth:`Store.checksum`)."""

    sse: str | None = None
    kms_key_id: str | None = None


class Checksum(NamedTuple):
    """What a store computed over an object's bytes as they arrived and keeps with it (base64)."""

    algorithm: Literal["sha256", "md5", "crc32c"]
    value: str

    def __str__(self) -> str:
        return f"{self.algorithm.upper()} {self.value}"


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str
    rows: int | None = None  # when the writer knows it
    checksum: Checksum | None = None  # as the store keeps it, when read (:meth:`Store.checksum`)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag, "rows": self.rows}

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class OpenUpload:
    key: str
    upload_id: str


class Writer(Protocol):
    """One object written as a stream: memory bounded by two parts; the object appears only on
    :meth:`close`, and :meth:`abort` leaves nothing behind."""

    bytes_written: int

    def write(self, data: Any) -> None: ...

    def close(self, rows: int | None = None) -> StoredObject: ...

    def abort(self) -> None: ...


class PartedWriter(ABC):
    """A :class:`Writer` that sends an object in parts of ``part_size`` bytes: memory is bounded by
    two parts (the one being filled and the one being sent by a background thread while the caller
    produces the next; at most one in flight). Each byte is copied once, into the part it belongs
    to. The object appears only when :meth:`close` finishes it (one request when everything fit in
    one part); :meth:`abort` leaves none. A backend says how a part is sent and the object made."""

    def __init__(self, key: str, part_size: int, thread_name: str) -> None:
        self.key = key
        self.part_size = max(part_size, MIN_PART_SIZE)
        self.bytes_written = 0
        self.parts_sent = 0
        self._part: bytearray | None = None  # the part being filled, allocated at full size once
        self._fill = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._inflight: Future[None] | None = None

    # what a backend does

    @abstractmethod
    def _send_part(self, number: int, chunk: bytearray) -> None:
        """Send part ``number`` (1, 2, ...; in the background thread)."""

    @abstractmethod
    def _finish_whole(self, body: bytearray) -> str:
        """Store everything (less than a part) as the object in one request; its ETag."""

    @abstractmethod
    def _finish_parts(self) -> str:
        """Make the object of the parts sent; its ETag."""

    def _before_first_part(self) -> None:  # noqa: B027  # a hook: most backends need none
        """Called in the caller's thread before part 1 is sent (S3: start the multipart upload)."""

    def _seen(self, view: memoryview) -> None:  # noqa: B027
        """Every byte written, in order (Azure: the whole object's MD5)."""

    def _discard(self) -> None:  # noqa: B027
        """After :meth:`abort`: drop what the store holds of the parts sent (S3: the upload)."""

    # the buffering

    def write(self, data: Any) -> None:
        """Append ``data`` (bytes or any buffer; copied before this returns)."""
        view = memoryview(data).cast("B")
        self.bytes_written += len(view)
        self._seen(view)
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
        if not self.parts_sent:
            self._before_first_part()
        self.parts_sent += 1
        self._inflight = self._pool.submit(self._send_part, self.parts_sent, chunk)

    def _wait(self) -> None:
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()  # re-raises a send error in the caller

    def close(self, rows: int | None = None) -> StoredObject:
        try:
            if not self.parts_sent:
                etag = self._finish_whole(self._take())
            else:
                if self._fill:
                    self._submit(self._take())
                self._wait()
                etag = self._finish_parts()
        finally:
            self._pool.shutdown(wait=True)
        return StoredObject(self.key, self.bytes_written, etag.strip('"'), rows)

    def abort(self) -> None:
        self._part, self._fill = None, 0
        try:
            self._wait()
        except Exception:  # the send that failed is why we abort
            pass
        self._pool.shutdown(wait=True)
        self._discard()


class Store(ABC):
    """One object store (one account or endpoint with its credentials). ``bucket`` is the bucket
    (S3, GCS) or container (Azure); ``key`` a whole object key. Every call is bounded; the
    store's own errors propagate (transient unless a backend says otherwise), and :meth:`check`
    turns what it finds at the start of an attempt into :class:`~.errors.TargetError` /
    :class:`~.errors.TargetUnusable`."""

    scheme: str = ""

    @abstractmethod
    def check(self, location: Location) -> None:
        """Fail fast (seconds) when the bucket is missing, the endpoint unreachable or not this
        kind of store, or the credentials are wrong."""

    @abstractmethod
    def list_objects(self, location: Location) -> list[StoredObject]:
        """Every object below the folder, in key order."""

    @abstractmethod
    def list_folders(self, bucket: str, prefix: str) -> list[str]:
        """The "folders" (common prefixes up to the next '/') whose keys start with ``prefix``,
        without their trailing '/', in key order."""

    @abstractmethod
    def open_uploads(self, location: Location) -> list[OpenUpload]:
        """Streamed writes started below the folder and neither completed nor aborted (where the
        store can list them)."""

    @abstractmethod
    def abort_upload(self, bucket: str, upload: OpenUpload) -> None: ...

    @abstractmethod
    def read(self, bucket: str, key: str) -> bytes: ...

    @abstractmethod
    def read_tail(self, bucket: str, key: str, size: int) -> bytes:
        """The object's last ``size`` bytes (all of it when shorter)."""

    @abstractmethod
    def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from ``start`` (fewer at the end of the object)."""

    @abstractmethod
    def open(self, bucket: str, key: str) -> IO[bytes]:
        """The object as a stream (read it in chunks; close it)."""

    @abstractmethod
    def download(self, bucket: str, key: str, into: IO[bytes]) -> None: ...

    @abstractmethod
    def size(self, bucket: str, key: str) -> int | None:
        """The object's size, None when there is no such object."""

    @abstractmethod
    def checksum(self, bucket: str, key: str) -> Checksum | None:
        """The checksum the store computed on arrival and keeps with the object (S3: SHA-256, of
        the parts' checksums for a multipart object; Azure: the whole object's MD5; GCS: its
        CRC32C), None when it keeps none."""

    @abstractmethod
    def put(
        self, bucket: str, key: str, body: bytes, content_type: str | None = None, options: WriteOptions | None = None
    ) -> None:
        """One object in one request."""

    @abstractmethod
    def writer(
        self,
        bucket: str,
        key: str,
        part_size: int,
        content_type: str | None = None,
        options: WriteOptions | None = None,
    ) -> Writer: ...

    @abstractmethod
    def copy(self, bucket: str, source_key: str, key: str, options: WriteOptions | None = None) -> None:
        """Copy an object inside the bucket, on the server."""

    @abstractmethod
    def delete(self, bucket: str, keys: list[str]) -> None:
        """Delete the objects; a key with no object is no error."""

    # Conditional writes: the lease (lease.py). A version tag is what the store answers for the
    # object as written (S3 and Azure: the ETag; GCS: the generation).

    @abstractmethod
    def create(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str | None:
        """Write the object only if none exists; its version tag, or None when one exists."""

    @abstractmethod
    def replace_if(self, bucket: str, key: str, body: bytes, tag: str, content_type: str | None = None) -> str | None:
        """Overwrite the object only if it is still at version ``tag``; the new tag, or None when
        it changed or is gone."""

    @abstractmethod
    def fetch(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """The object and its version tag, None when there is none."""

    # Built on the above.

    def lake_uri(self, location: Location) -> str:
        """The folder as lake tools (Spark, Trino, DuckDB, pyiceberg) spell it in a table's metadata,
        without a trailing slash: its own URI unless a store spells it otherwise."""
        return location.uri.rstrip("/")

    def abort_uploads(self, location: Location) -> int:
        """Abort the open streamed writes below the folder; returns how many."""
        uploads = self.open_uploads(location)
        for upload in uploads:
            self.abort_upload(location.bucket, upload)
        return len(uploads)

    def clear(self, location: Location) -> int:
        """Delete every object below the folder; returns how many there were."""
        keys = [o.key for o in self.list_objects(location)]
        self.delete(location.bucket, keys)
        return len(keys)
