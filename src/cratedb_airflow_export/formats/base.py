"""What every encoder shares: the interface, the text encoders' chunk protocol, and opening a
written file for reading."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, BinaryIO

import pyarrow as pa

from cratedb_airflow_export.formats.parallel_gzip import GzipMember, deflate


class Forward:
    """An Arrow output stream's target: passes writes on to ``sink``; closing the stream leaves
    ``sink`` open."""

    closed = False

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink

    def write(self, data: Any) -> int:
        self._sink.write(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Encoder(ABC):
    """Encodes batches into one file written to ``sink`` (anything with ``write(bytes)``).
    ``row_group_size`` and ``sample`` (the file's first batch) are for the encoders that use them
    (Parquet); the others ignore them."""

    def __init__(
        self,
        schema: pa.Schema,
        sink: BinaryIO,
        compression: str,
        level: int | None = None,
        *,
        row_group_size: int = 131_072,
        sample: pa.RecordBatch | None = None,
    ) -> None:
        self.schema, self.compression, self.level, self._sink = schema, compression, level, sink
        self.row_group_size, self.sample = row_group_size, sample

    @abstractmethod
    def write(self, batch: pa.RecordBatch) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the file (footer, compressor trailer); ``sink`` stays open."""


class TextEncoder(Encoder):
    """JSON Lines and CSV. :meth:`prepare` turns a batch into a ready chunk (encoded, and deflated
    for gzip); it is pure, so chunks are prepared on worker threads, and :meth:`write_prepared`
    appends them in order. zstd compresses sequentially in the writing thread (it is fast)."""

    @staticmethod
    @abstractmethod
    def encode(schema: pa.Schema, batch: pa.RecordBatch) -> Any:
        """The batch as uncompressed text (bytes or an Arrow buffer)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Encoder's
        super().__init__(*args, **kwargs)
        self._gzip = GzipMember(self._sink) if self.compression == "gzip" else None
        zstd = self.compression == "zstd"
        self._zstd = pa.CompressedOutputStream(pa.PythonFile(Forward(self._sink), mode="w"), "zstd") if zstd else None

    @classmethod
    def prepare(cls, schema: pa.Schema, batch: pa.RecordBatch, compression: str, level: int | None = None) -> Any:
        return cls.compress(cls.encode(schema, batch), compression, level)

    @staticmethod
    def compress(data: Any, compression: str, level: int | None = None) -> Any:
        return deflate(data, level) if compression == "gzip" else data

    def write(self, batch: pa.RecordBatch) -> None:
        self.write_prepared(self.prepare(self.schema, batch, self.compression, self.level))

    def write_prepared(self, chunk: Any) -> None:
        """Append what :meth:`prepare` returned."""
        if self._gzip is not None:
            self._gzip.write(chunk)
        elif not len(chunk):
            return
        elif self._zstd is not None:
            self._zstd.write(chunk)
        else:
            self._sink.write(chunk)

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        if self._zstd is not None:
            self._zstd.close()  # flushes the compressor's trailer into the sink


def open_decompressed(path: str, compression: str) -> BinaryIO:
    """``path`` opened for reading, its whole-file ``compression`` undone."""
    import gzip

    if compression == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if compression == "zstd":
        return pa.CompressedInputStream(pa.OSFile(path), "zstd")  # type: ignore[no-any-return]
    return open(path, "rb")
