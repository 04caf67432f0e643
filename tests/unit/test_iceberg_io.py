"""Where pyiceberg's file locations land in a store (iceberg_io.py), and how an Azure table's
location is spelled for lake tools (no server needed: the clients are built, not called)."""

from __future__ import annotations

import gc

import pytest

from cratedb_airflow_export.credentials import AzureCredentials, S3Credentials
from cratedb_airflow_export.iceberg_io import StoreFileIO, io_properties, split_location
from cratedb_airflow_export.storage import Location
from cratedb_airflow_export.stores.azure import AzureStore
from cratedb_airflow_export.stores.s3 import S3Store

KEY = "a2V5a2V5a2V5"


def azure(endpoint: str | None = None) -> AzureStore:
    return AzureStore.from_credentials(AzureCredentials("acct", KEY, endpoint_url=endpoint))


def test_every_spelling_of_an_azure_location_names_the_container_and_key():
    store = azure()
    for uri in (
        "abfss://lake@acct.dfs.core.windows.net/t/data/x.parquet",
        "abfs://lake/t/data/x.parquet",
        "az://lake/t/data/x.parquet",
        "wasbs://lake@acct.blob.core.windows.net/t/data/x.parquet",
    ):
        assert split_location(store, uri) == ("lake", "t/data/x.parquet"), uri
    for uri in ("s3://lake/t/x", "gs://lake/t/x", "abfss://lake@acct.dfs.core.windows.net/", "/tmp/x"):
        with pytest.raises(ValueError):
            split_location(store, uri)


def test_an_azure_tables_location_is_the_one_lake_tools_read():
    folder = Location("lake", "cratedb/doc.metrics", "az")
    assert azure().lake_uri(folder) == "abfss://lake@acct.dfs.core.windows.net/cratedb/doc.metrics"
    sovereign = azure("https://acct.blob.core.chinacloudapi.cn")
    assert sovereign.lake_uri(folder) == "abfss://lake@acct.dfs.core.chinacloudapi.cn/cratedb/doc.metrics"
    emulator = azure("http://127.0.0.1:10000/acct")  # path-style: the account is not in the host
    assert emulator.lake_uri(folder) == "abfs://lake/cratedb/doc.metrics"


def test_an_s3_tables_location_is_its_uri():
    store = S3Store.from_credentials(S3Credentials())
    assert store.lake_uri(Location("b", "p/t")) == "s3://b/p/t"
    assert split_location(store, "s3a://b/p/t/x") == ("b", "p/t/x")


def test_the_file_io_finds_its_store_while_it_lives_and_says_so_when_it_is_gone():
    store = azure()
    properties = io_properties(store)
    assert "acct" not in str(properties) and KEY not in str(properties)  # a token, no credential
    assert StoreFileIO(properties).store is store
    del store
    gc.collect()
    with pytest.raises(ValueError, match="the export's store is gone"):
        StoreFileIO(properties)
