"""Iceberg's file IO through the target's :class:`~.storage.Store`: pyiceberg reads and writes a
table's metadata, manifests and data files here, on S3, Azure Blob Storage and Google Cloud Storage
alike, with the credentials the export already holds (Airflow's connections, refreshed as they are),
not with a second set of file system properties in the catalog's connection.

A file's location is the URI the table's metadata records: ``s3://``, ``gs://``, or on Azure
``abfss://<container>@<account>.dfs.<suffix>/...`` (as Spark, Trino and DuckDB address it; see
:meth:`.Store.lake_uri`); ``az://``, ``abfs://``, ``wasb[s]://``, ``s3a://`` and ``gcs://`` name
the same objects. A location on another store is refused with its URI.

Reads are ranged: a Parquet reader fetches the footer and the column chunks it needs, never the
whole file. A written file (metadata JSON, a manifest, a manifest list: kilobytes to a few
megabytes) is held in memory and stored in one request when its stream is closed, only if the
writer left the ``with`` block without an error: a failed write leaves no object behind.
"""

from __future__ import annotations

import io
import weakref
from collections.abc import Mapping
from os import SEEK_CUR, SEEK_END, SEEK_SET
from types import TracebackType
from typing import Any

from pyiceberg.io import PY_IO_IMPL, FileIO, InputFile, InputStream, OutputFile, OutputStream

from cratedb_airflow_export.storage import Store, WriteOptions

# pyiceberg builds a FileIO from the catalog's properties alone (``py-io-impl``: a class, given the
# properties), also inside a catalog's own methods: the store travels as a token in them
STORE_PROPERTY = "cratedb-export.store"
SSE_PROPERTY = "cratedb-export.sse"
KMS_PROPERTY = "cratedb-export.sse-kms-key-id"
_STORES: weakref.WeakValueDictionary[str, Store] = weakref.WeakValueDictionary()

# the URI schemes that name each store's objects in a table's metadata
SCHEMES = {
    "s3": {"s3", "s3a", "s3n"},
    "az": {"az", "abfs", "abfss", "wasb", "wasbs"},
    "gs": {"gs", "gcs"},
}


def split_location(store: Store, location: str) -> tuple[str, str]:
    """``location`` as (bucket or container, key) of ``store``. Raises ValueError for a location
    on another kind of store or without a key."""
    scheme, found, rest = location.partition("://")
    if not found or scheme not in SCHEMES.get(store.scheme, ()):
        raise ValueError(
            f"Iceberg file {location!r} is not on this target's store ({store.scheme}://): the table's files "
            "must live in the store the export writes to"
        )
    netloc, _, key = rest.partition("/")
    bucket = netloc.split("@", 1)[0]  # abfss://<container>@<account>.dfs.core.windows.net/...
    if not bucket or not key:
        raise ValueError(f"Iceberg file {location!r} names no object")
    return bucket, key


def io_properties(store: Store, options: WriteOptions | None = None) -> dict[str, str]:
    """The catalog properties that make pyiceberg read and write through ``store`` (written with
    ``options``), for as long as the store object lives."""
    token = f"{store.scheme}-{id(store):x}"
    _STORES[token] = store
    properties = {PY_IO_IMPL: f"{__name__}.{StoreFileIO.__name__}", STORE_PROPERTY: token}
    if options is not None and options.sse:
        properties[SSE_PROPERTY] = options.sse
        if options.kms_key_id:
            properties[KMS_PROPERTY] = options.kms_key_id
    return properties


class StoreFileIO(FileIO):
    """pyiceberg's ``FileIO`` over a :class:`~.storage.Store` (named by :func:`io_properties`)."""

    def __init__(self, properties: Mapping[str, str]) -> None:
        super().__init__(dict(properties))
        store = _STORES.get(properties.get(STORE_PROPERTY, ""))
        if store is None:
            raise ValueError("Iceberg file IO: the export's store is gone (its attempt has ended)")
        self.store = store
        sse = properties.get(SSE_PROPERTY)
        self.options = WriteOptions(sse, properties.get(KMS_PROPERTY)) if sse else None

    def new_input(self, location: str) -> StoreInputFile:
        return StoreInputFile(self.store, location)

    def new_output(self, location: str) -> StoreOutputFile:
        return StoreOutputFile(self.store, location, self.options)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        uri = location if isinstance(location, str) else location.location
        bucket, key = split_location(self.store, uri)
        if self.store.size(bucket, key) is None:
            raise FileNotFoundError(uri)
        self.store.delete(bucket, [key])


class StoreInputFile(InputFile):
    def __init__(self, store: Store, location: str) -> None:
        super().__init__(location)
        self.store = store
        self.bucket, self.key = split_location(store, location)
        self._size: int | None = None

    def _known_size(self) -> int | None:
        if self._size is None:
            self._size = self.store.size(self.bucket, self.key)
        return self._size

    def __len__(self) -> int:
        size = self._known_size()
        if size is None:
            raise FileNotFoundError(self.location)
        return size

    def exists(self) -> bool:
        return self._known_size() is not None

    def open(self, seekable: bool = True) -> InputStream:
        return RangeReader(self.store, self.bucket, self.key, len(self))


class RangeReader(io.RawIOBase):
    """A seekable read-only stream over one object: each read is one ranged request (buffered
    by the callers that read small pieces: pyarrow reads a Parquet file's footer and chunks)."""

    def __init__(self, store: Store, bucket: str, key: str, size: int) -> None:
        self.store, self.bucket, self.key, self.size = store, bucket, key, size
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = SEEK_SET) -> int:
        base = {SEEK_SET: 0, SEEK_CUR: self.position, SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"seek before the start of {self.key}")
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        self._checkClosed()
        left = max(0, self.size - self.position)
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted == 0:
            return b""
        data = self.store.read_range(self.bucket, self.key, self.position, wanted)
        if len(data) != wanted:  # the object changed under the reader, or the store miscounted
            raise OSError(
                f"{self.key}: asked for {wanted} bytes at {self.position} of {self.size}, the store gave {len(data)}"
            )
        self.position += wanted
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __enter__(self) -> RangeReader:
        return self


class StoreOutputFile(OutputFile):
    def __init__(self, store: Store, location: str, options: WriteOptions | None) -> None:
        super().__init__(location)
        self.store, self.options = store, options
        self.bucket, self.key = split_location(store, location)

    def __len__(self) -> int:
        size = self.store.size(self.bucket, self.key)
        if size is None:
            raise FileNotFoundError(self.location)
        return size

    def exists(self) -> bool:
        return self.store.size(self.bucket, self.key) is not None

    def to_input_file(self) -> StoreInputFile:
        return StoreInputFile(self.store, self.location)

    def create(self, overwrite: bool = False) -> OutputStream:
        if not overwrite and self.exists():
            raise FileExistsError(self.location)
        return StoredOnClose(self)


class StoredOnClose(io.BytesIO):
    """The file's bytes in memory, stored when the stream is closed, unless its ``with`` block
    ended with an error."""

    def __init__(self, target: StoreOutputFile) -> None:
        super().__init__()
        self.target = target
        self.failed = False

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.failed = kind is not None
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        body = self.getvalue()
        super().close()
        if not self.failed:
            target = self.target
            target.store.put(target.bucket, target.key, body, options=target.options)
