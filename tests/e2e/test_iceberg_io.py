"""pyiceberg's file IO through the package's store (iceberg_io.py), on each store's real server:
ranged reads give exact bytes wherever a reader seeks, pyarrow reads a Parquet file through it, a
written file appears on close and not at all when its writer failed, an existing file is not
overwritten unless asked, and a location on another store is refused."""

from __future__ import annotations

import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cratedb_airflow_export.iceberg_io import StoreFileIO, io_properties
from tests.helpers import Lake

pytestmark = pytest.mark.e2e


def file_io(lake: Lake) -> StoreFileIO:
    return StoreFileIO(io_properties(lake.store))


def test_reads_are_exact_wherever_the_reader_seeks(lake):
    payload = os.urandom(300_001)
    lake.store.put(lake.bucket, "ice/x.bin", payload)
    source = file_io(lake).new_input(lake.uri("ice/x.bin"))
    assert (len(source), source.exists()) == (len(payload), True)
    with source.open() as stream:
        assert stream.read(10) == payload[:10]
        assert stream.seek(-7, io.SEEK_END) == len(payload) - 7
        assert stream.read() == payload[-7:]
        assert stream.read(5) == b""  # at the end
        stream.seek(150_000)
        stream.seek(3, io.SEEK_CUR)
        assert (stream.tell(), stream.read(1000)) == (150_003, payload[150_003:151_003])
    assert not file_io(lake).new_input(lake.uri("ice/none.bin")).exists()
    with pytest.raises(FileNotFoundError):
        file_io(lake).new_input(lake.uri("ice/none.bin")).open()


def test_pyarrow_reads_a_parquet_file_through_it(lake):
    table = pa.table({"n": list(range(50_000)), "s": [f"row {i}" for i in range(50_000)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=10_000)
    lake.store.put(lake.bucket, "ice/t.parquet", sink.getvalue())
    with file_io(lake).new_input(lake.uri("ice/t.parquet")).open() as stream:
        assert pq.read_metadata(stream).num_rows == 50_000
        stream.seek(0)
        assert pq.read_table(stream, columns=["s"]).column("s").to_pylist()[-2:] == ["row 49998", "row 49999"]


def test_a_written_file_appears_on_close_and_not_when_its_writer_failed(lake):
    fio = file_io(lake)
    target = fio.new_output(lake.uri("ice/meta.json"))
    with target.create() as stream:
        stream.write(b'{"a": 1}')
        assert lake.keys("ice") == []  # nothing before close
    assert lake.store.read(lake.bucket, "ice/meta.json") == b'{"a": 1}'
    with pytest.raises(FileExistsError):
        target.create()
    with target.create(overwrite=True) as stream:
        stream.write(b"{}")
    assert target.to_input_file().open().read() == b"{}"
    with pytest.raises(RuntimeError), fio.new_output(lake.uri("ice/half.avro")).create() as stream:
        stream.write(b"half")
        raise RuntimeError("the writer failed")
    assert lake.keys("ice") == ["ice/meta.json"]
    fio.delete(lake.uri("ice/meta.json"))
    assert lake.keys("ice") == []
    with pytest.raises(FileNotFoundError):
        fio.delete(lake.uri("ice/meta.json"))


def test_a_location_on_another_store_is_refused(lake):
    other = {"s3": "gs", "azure": "s3", "gcs": "abfss"}[lake.kind]
    with pytest.raises(ValueError, match="is not on this target's store"):
        file_io(lake).new_input(f"{other}://{lake.bucket}/ice/x.bin")
