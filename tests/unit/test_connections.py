"""Connections: Airflow's connection formats read without Airflow, resolution through Airflow (the
edge), CrateDB's s3:// URI form, percent-encoding, redaction."""

from __future__ import annotations

import json

import pytest

from cratedb_airflow_export.config import TableExport
from cratedb_airflow_export.connections import (
    ConnectionSpec,
    environment_lookup,
    from_environment,
    parse_connection,
    s3_credentials,
    source_params,
)
from cratedb_airflow_export.credentials import Redactor, S3Credentials
from cratedb_airflow_export.edge.resolve import resolve, s3_access
from cratedb_airflow_export.engines.copy import cratedb_s3_uri
from cratedb_airflow_export.errors import CredentialsError
from cratedb_airflow_export.storage import Location


def resolve_credentials(aws_conn_id: str) -> S3Credentials:
    return s3_access(aws_conn_id)[0]


SECRET = "wJalr/K7MDENG+bPxRfiCY=EXAMPLEKEY"
ENCODED = "wJalr%2FK7MDENG%2BbPxRfiCY%3DEXAMPLEKEY"
LOC = Location("my-bucket", "metrics-2024-01-04")


def test_aws_uri_percent_encodes_keys():
    uri, protocol = cratedb_s3_uri(S3Credentials("AK/IA", SECRET, origin="t"), LOC)
    assert uri.value == f"s3://AK%2FIA:{ENCODED}@my-bucket/metrics-2024-01-04"
    assert uri.shown == "s3://AK%2FIA:***@my-bucket/metrics-2024-01-04"
    assert repr(uri) == str(uri) == uri.shown
    assert protocol is None


def test_region_gives_portable_aws_endpoint_with_port():
    uri, protocol = cratedb_s3_uri(S3Credentials("AKIA", SECRET, region="eu-central-1", origin="t"), LOC)
    assert uri.value == f"s3://AKIA:{ENCODED}@s3.eu-central-1.amazonaws.com:443/my-bucket/metrics-2024-01-04"
    assert protocol is None


@pytest.mark.parametrize(
    ("endpoint", "authority", "protocol"),
    [
        ("http://127.0.0.1:9000", "127.0.0.1:9000", "http"),
        ("http://minio.local", "minio.local:80", "http"),
        ("https://minio.example.com", "minio.example.com:443", "https"),
        ("HTTPS://Storage.Example.com:8443/", "storage.example.com:8443", "https"),
        ("minio.example.com:9000", "minio.example.com:9000", "https"),
    ],
)
def test_custom_endpoint_always_has_an_explicit_port(endpoint, authority, protocol):
    uri, proto = cratedb_s3_uri(S3Credentials("minio", "pw", endpoint_url=endpoint, origin="t"), LOC)
    assert uri.value == f"s3://minio:pw@{authority}/my-bucket/metrics-2024-01-04"
    assert proto == protocol


def test_bad_endpoint_and_session_tokens_are_refused():
    with pytest.raises(CredentialsError, match="must be http"):
        cratedb_s3_uri(S3Credentials("a", "b", endpoint_url="ftp://x:21", origin="t"), LOC)
    with pytest.raises(CredentialsError, match=r"temporary credentials .* CrateDB's COPY TO cannot use them"):
        cratedb_s3_uri(S3Credentials("a", "b", session_token="tok", origin="t"), LOC)


def test_placeholders_without_keys():
    uri, _ = cratedb_s3_uri(None, LOC)
    assert uri.value == uri.shown == "s3://<access_key>:<secret_key>@my-bucket/metrics-2024-01-04"


def test_secrets_and_redactor_cover_raw_and_encoded_forms():
    creds = S3Credentials("AKIA", SECRET, session_token="to/ken", origin="t")
    assert set(creds.secrets()) >= {SECRET, ENCODED, "to/ken", "to%2Fken"}
    redact = Redactor(creds.secrets())
    text = f"failed for s3://AKIA:{ENCODED}@b/p and {SECRET} and to/ken"
    assert redact(text) == "failed for s3://AKIA:***@b/p and *** and ***"
    assert "secret_key" not in repr(creds) and SECRET not in repr(creds)


def test_resolve_from_airflow_connection(monkeypatch):
    extra = {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_LAKE", json.dumps({"conn_type": "aws", "login": "AKIA", "password": SECRET, "extra": extra})
    )
    creds = resolve_credentials("aws_lake")
    assert (creds.access_key, creds.secret_key, creds.session_token) == ("AKIA", SECRET, None)
    assert (creds.endpoint_url, creds.region) == ("http://127.0.0.1:9000", "eu-west-1")
    assert creds.origin == "Airflow connection 'aws_lake'"


def test_resolve_falls_back_to_the_tutorials_environment_variables(monkeypatch):
    monkeypatch.setenv("ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    creds = resolve_credentials("aws_nowhere")
    assert (creds.access_key, creds.secret_key, creds.endpoint_url) == ("AKIAENV", SECRET, "http://127.0.0.1:9000")
    assert "environment variables" in creds.origin


def test_resolve_without_anything_names_both_options(monkeypatch):
    with pytest.raises(CredentialsError, match=r"no Airflow connection 'aws_nowhere' .*AIRFLOW_CONN_AWS_NOWHERE"):
        resolve_credentials("aws_nowhere")


def test_airflow_uri_and_json_forms_are_read_without_airflow():
    uri = parse_connection("db", "postgresql://cr%40te:p%2Fw%2B%3D@db.example.com:5433/doc?sslmode=require&cursor=x")
    assert (uri.conn_type, uri.host, uri.port, uri.schema, uri.login, uri.password) == (
        "postgres",
        "db.example.com",
        5433,
        "doc",
        "cr@te",
        "p/w+=",
    )
    params = source_params(uri)
    assert params.kwargs() == {
        "host": "db.example.com",
        "port": 5433,
        "dbname": "doc",
        "user": "cr@te",
        "password": "p/w+=",
        "sslmode": "require",  # a libpq keyword; Airflow's 'cursor' extra is not one and is left out
    }
    aws = parse_connection("aws", f"aws://AKIA:{ENCODED}@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000&region_name=eu")
    creds = s3_credentials(aws)
    assert (creds.access_key, creds.secret_key, creds.endpoint_url, creds.region) == (
        "AKIA",
        SECRET,
        "http://127.0.0.1:9000",
        "eu",
    )
    as_json = parse_connection(
        "aws",
        json.dumps({"conn_type": "aws", "login": "AKIA", "password": SECRET, "extra": {"aws_session_token": "tok"}}),
    )
    assert s3_credentials(as_json).session_token == "tok"


def test_connection_forms_airflow_cannot_be_bypassed_for_are_refused():
    spec = parse_connection("aws", "aws://@/?role_arn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx")
    with pytest.raises(CredentialsError, match=r"uses role_arn, which only Airflow's AWS hook resolves"):
        s3_credentials(spec)
    with pytest.raises(CredentialsError, match="not valid JSON"):
        parse_connection("aws", "{nope")


def test_from_environment_resolves_both_connections_or_names_the_missing_one(monkeypatch):
    cfg = TableExport.model_validate({"table": "doc.t", "timestamp_column": "ts", "target": "s3://lake/x"})
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", f"aws://AKIA:{ENCODED}@/?region_name=eu-west-1")
    monkeypatch.delenv("AIRFLOW_CONN_CRATEDB_CONNECTION", raising=False)
    with pytest.raises(
        CredentialsError, match=r"no connection 'cratedb_connection': set AIRFLOW_CONN_CRATEDB_CONNECTION"
    ):
        from_environment(cfg)
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", "postgresql://crate:Pg%2Fsecret@localhost:5432/doc")
    connections = from_environment(cfg)
    assert connections.s3.secret_key == SECRET and connections.database.password == "Pg/secret"
    assert {SECRET, ENCODED, "Pg/secret", "Pg%2Fsecret"} <= connections.secrets
    assert environment_lookup({})("cratedb_connection") is None


def test_the_edge_resolves_once_and_masks_every_form(monkeypatch):
    from airflow.sdk.log import redact

    cfg = TableExport.model_validate({"table": "doc.t", "timestamp_column": "ts", "target": "s3://lake/x"})
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", f"aws://AKIA:{ENCODED}@/?region_name=eu-west-1")
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", "postgresql://crate:Pg%2Fmask%2Bme@localhost:5432/doc")
    connections = resolve(cfg)
    assert connections.database.password == "Pg/mask+me"
    masked = redact(f"{SECRET} {ENCODED} Pg/mask+me Pg%2Fmask%2Bme")
    assert SECRET not in masked and ENCODED not in masked and "mask" not in masked


# --- Iceberg catalogs ------------------------------------------------------------------------


def test_a_catalog_connection_gives_pyiceberg_its_properties_and_nothing_of_the_store():
    from cratedb_airflow_export.connections import ConnectionSpec, catalog_params

    sql = ConnectionSpec(
        "iceberg_default", "generic", extra={"type": "sql", "uri": "postgresql+psycopg://u:p%40ss@h/db"}
    )
    params = catalog_params(sql, "iceberg_default")
    assert params.name == "iceberg_default"
    # the files go through the target's store (iceberg_io.py): no copy of its credentials here
    assert dict(params.properties) == {"type": "sql", "uri": "postgresql+psycopg://u:p%40ss@h/db"}
    assert {"p@ss", "p%40ss"} <= params.secrets()
    assert "p@ss" not in repr(params) and "secret" not in repr(params)

    rest = ConnectionSpec("lake", "http", host="https://catalog.example.com/api", login="client", password="s3cr3t")
    params = catalog_params(rest, "lake")
    assert (params.properties["type"], params.properties["uri"]) == ("rest", "https://catalog.example.com/api")
    assert params.properties["credential"] == "client:s3cr3t"
    assert "client:s3cr3t" in params.secrets()

    glue = ConnectionSpec("glue", "aws", extra={"type": "glue", "glue.region": "eu-central-1"})
    assert dict(catalog_params(glue, "glue").properties) == {"type": "glue", "glue.region": "eu-central-1"}


def test_a_missing_or_typeless_catalog_connection_says_what_to_set():
    from cratedb_airflow_export.connections import ConnectionSpec, catalog_params

    with pytest.raises(CredentialsError, match="no connection 'iceberg_default' for the Iceberg catalog"):
        catalog_params(None, "iceberg_default")
    with pytest.raises(CredentialsError, match="say the catalog's type in its extra"):
        catalog_params(ConnectionSpec("c", "generic", extra={}), "c")


def test_every_catalog_secret_is_in_the_connections_secrets(monkeypatch):
    from cratedb_airflow_export.connections import from_environment

    cfg = TableExport(table="doc.m", timestamp_column="ts", engine="stream", format="iceberg", target="s3://bkt/p")
    monkeypatch.setenv("AIRFLOW_CONN_CRATEDB_CONNECTION", "postgresql://crate:db-pass@127.0.0.1:5432/doc")
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", "aws://AKIAX:aws%2Fsecret@/?region_name=eu-1")
    extra = {"type": "rest", "uri": "https://c.example", "credential": "id:rest-secret", "token": "tok-123"}
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", json.dumps({"conn_type": "generic", "extra": extra}))
    connections = from_environment(cfg)
    assert connections.catalog is not None
    redact = connections.redactor()
    assert redact("id:rest-secret tok-123 aws/secret db-pass") == "*** *** *** ***"


@pytest.mark.parametrize(
    ("uri", "part", "chars"),
    [
        ("aws://AKIA:ab/c+d@/?region_name=eu-central-1", "password (secret)", "'/'"),
        ("postgresql://crate:pa/ss@db.example:5432/doc", "password (secret)", "'/'"),
        ("postgresql://cr@te:pass@db.example/doc", "user name (login, access key)", "'@'"),
        ("postgresql://u:p?w#x@db.example/doc?sslmode=require", "password (secret)", "'#' and '?'"),
        ("postgresql://u:100%@db.example/doc", "password (secret)", "'%'"),
    ],
)
def test_a_malformed_uri_names_the_part_to_percent_encode_and_never_the_value(uri, part, chars):
    from cratedb_airflow_export.connections import environment_lookup
    from cratedb_airflow_export.errors import CredentialsError

    with pytest.raises(CredentialsError) as raised:
        environment_lookup({"AIRFLOW_CONN_C": uri})("c")
    message = str(raised.value)
    assert f"connection 'c': the {part} in its URI holds {chars}, which a URI does not allow there" in message
    secret = uri.split("://", 1)[1].rsplit("@", 1)[0].partition(":")[2]
    assert secret not in message


@pytest.mark.parametrize(
    "uri",
    [
        "aws://AK:se%2Fc%2Bd@/?endpoint_url=http%3A%2F%2F127.0.0.1%3A9000&region_name=eu-central-1",
        "aws://AK:se%2Fc@/?endpoint_url=http://user@host",  # an '@' in the query is not the userinfo's
        "postgresql://crate@db.example:5432/doc",
        "postgresql://db.example:5432/doc",
    ],
)
def test_a_well_formed_uri_has_no_problem(uri):
    from cratedb_airflow_export.connections import uri_problem

    assert uri_problem("c", uri) is None


# --- Azure Blob Storage (az:// targets) ------------------------------------------------------------

AZ_KEY = "Az/Canary+Key==9q"
AZ_SAS = "sv=2024-11-04&ss=b&srt=co&sp=rwdlac&se=2030-01-01T00:00:00Z&sig=Ab%2Fcd%2Bef%3D"


def test_an_azure_connection_takes_the_fields_airflow_wasb_hook_reads():
    from cratedb_airflow_export.connections import azure_credentials

    with_key = azure_credentials(ConnectionSpec("wasb_default", "wasb", login="lake", password=AZ_KEY))
    assert (with_key.account, with_key.key, with_key.blob_endpoint) == (
        "lake",
        AZ_KEY,
        "https://lake.blob.core.windows.net",
    )
    emulator = azure_credentials(
        ConnectionSpec(
            "w", "wasb", host="http://127.0.0.1:10000/devstoreaccount1/", login="devstoreaccount1", password=AZ_KEY
        )
    )
    assert emulator.blob_endpoint == "http://127.0.0.1:10000/devstoreaccount1"
    sas = azure_credentials(ConnectionSpec("w", "wasb", login="lake", extra={"sas_token": AZ_SAS}))
    assert (sas.key, sas.sas_token) == (None, AZ_SAS)
    sas_url = azure_credentials(
        ConnectionSpec("w", "wasb", extra={"sas_token": f"https://lake.blob.core.windows.net/?{AZ_SAS}"})
    )
    assert (sas_url.endpoint_url, sas_url.sas_token) == ("https://lake.blob.core.windows.net", AZ_SAS)
    string = f"DefaultEndpointsProtocol=https;AccountName=lake;AccountKey={AZ_KEY};EndpointSuffix=core.windows.net"
    assert (
        azure_credentials(ConnectionSpec("w", "wasb", extra={"connection_string": string})).connection_string == string
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ConnectionSpec("w", "wasb", login="lake"), "needs the account name"),
        (ConnectionSpec("w", "wasb", password=AZ_KEY), "needs the account name"),
        (ConnectionSpec("w", "wasb", login="lake", extra={"tenant_id": "t", "client_id": "c"}), "Entra ID"),
    ],
)
def test_an_azure_connection_without_usable_credentials_is_refused_without_its_values(spec, message):
    from cratedb_airflow_export.connections import azure_credentials

    with pytest.raises(CredentialsError, match=message) as raised:
        azure_credentials(spec)
    assert AZ_KEY not in str(raised.value)


def test_every_form_of_an_azure_secret_is_redacted():
    from urllib.parse import quote

    from cratedb_airflow_export.credentials import AzureCredentials, Redactor

    string = f"AccountName=lake;AccountKey={AZ_KEY};BlobEndpoint=https://lake.blob.core.windows.net"
    creds = AzureCredentials("lake", AZ_KEY, sas_token="?" + AZ_SAS, connection_string=string)
    redact = Redactor(creds.secrets())
    for text in (AZ_KEY, quote(AZ_KEY, safe=""), AZ_SAS, "Ab%2Fcd%2Bef%3D", "Ab/cd+ef=", string):
        assert "***" in redact(f"x {text} y") and text not in redact(f"x {text} y"), text


def test_the_environment_gives_the_cli_an_azure_connection_string():
    from cratedb_airflow_export.connections import azure_environment

    string = f"AccountName=lake;AccountKey={AZ_KEY}"
    assert azure_environment("wasb_default", {"AZURE_STORAGE_CONNECTION_STRING": string}).connection_string == string
    with pytest.raises(CredentialsError, match="AIRFLOW_CONN_WASB_DEFAULT, type wasb"):
        azure_environment("wasb_default", {})


def test_cratedb_addresses_an_azure_account_by_host_name_with_the_key_as_a_bind_parameter():
    from cratedb_airflow_export.credentials import AzureCredentials
    from cratedb_airflow_export.engines.copy import cratedb_target

    folder = Location("lake", "_cratedb_export_staging/x", "az")
    public = cratedb_target(AzureCredentials("acct", AZ_KEY), folder)
    assert (public.uri.value, public.protocol) == (
        "az://acct.blob.core.windows.net/lake/_cratedb_export_staging/x",
        "https",
    )
    assert {k: (v.value, v.shown) for k, v in public.secrets.items()} == {"key": (AZ_KEY, "***")}
    sas = cratedb_target(AzureCredentials("acct", sas_token="?" + AZ_SAS), folder)
    assert {k: v.value for k, v in sas.secrets.items()} == {"sas_token": AZ_SAS}
    string = (
        f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={AZ_KEY};BlobEndpoint=http://acct.localhost:10000"
    )
    emulator = cratedb_target(AzureCredentials(connection_string=string), folder)
    assert (emulator.uri.value, emulator.protocol) == (
        "az://acct.localhost:10000/lake/_cratedb_export_staging/x",
        "http",
    )
    placeholder = cratedb_target(None, folder)  # plan, without credentials
    assert placeholder.uri.shown.startswith("az://<account>.") and placeholder.secrets["key"].shown == "<key>"
    path_style = AzureCredentials("devstoreaccount1", AZ_KEY, endpoint_url="http://127.0.0.1:10000/devstoreaccount1")
    with pytest.raises(CredentialsError, match="addresses an Azure account by host name") as raised:
        cratedb_target(path_style, folder)
    assert AZ_KEY not in str(raised.value)


# --- Google Cloud Storage (gs:// targets) -----------------------------------------------------------

GCS_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEv/Canary+Key==\n-----END PRIVATE KEY-----\n"
KEYFILE = {"type": "service_account", "project_id": "lake-1", "private_key_id": "abc123def456", "private_key": GCS_KEY}


def test_a_google_cloud_connection_takes_the_fields_airflow_google_hooks_read():
    from cratedb_airflow_export.connections import gcs_credentials

    plain = gcs_credentials(
        ConnectionSpec("g", "google_cloud_platform", extra={"keyfile_dict": json.dumps(KEYFILE), "project": "p"})
    )
    assert (plain.keyfile_dict, plain.project) == (KEYFILE, "p")
    prefixed = gcs_credentials(
        ConnectionSpec("g", "google_cloud_platform", extra={"extra__google_cloud_platform__key_path": "/k.json"})
    )
    assert (prefixed.key_path, prefixed.keyfile_dict) == ("/k.json", None)
    emulator = gcs_credentials(
        ConnectionSpec("g", "google_cloud_platform", extra={"endpoint_url": "http://127.0.0.1:4443"})
    )
    assert emulator.endpoint_url == "http://127.0.0.1:4443"
    for extra, message in (
        ({"keyfile_dict": "{not json"}, "keyfile_dict is not JSON"),
        ({"keyfile_dict": json.dumps({"type": "x"})}, "not a service account key"),
        ({"impersonation_chain": "sa@p.iam.gserviceaccount.com"}, "only Airflow's Google hooks resolve"),
    ):
        with pytest.raises(CredentialsError, match=message):
            gcs_credentials(ConnectionSpec("g", "google_cloud_platform", extra=extra))


def test_every_form_of_a_service_account_key_is_redacted():
    from cratedb_airflow_export.credentials import GcsCredentials, Redactor

    redact = Redactor(GcsCredentials(keyfile_dict=KEYFILE).secrets())
    for text in (GCS_KEY, json.dumps(GCS_KEY)[1:-1], "abc123def456", json.dumps(KEYFILE)):
        assert text not in redact(f"x {text} y"), text


def test_a_gcs_target_streams_and_refuses_the_copy_engine_with_the_reason():
    base = {"table": "doc.metrics", "timestamp_column": "ts", "target": "gs://lake_1/cratedb", "engine": "stream"}
    cfg = TableExport.model_validate(base)
    assert (cfg.store, cfg.gcp_conn_id) == ("gs", "google_cloud_default")
    with pytest.raises(ValueError, match="CrateDB's COPY TO writes s3:// and az:// only"):
        TableExport.model_validate({**base, "engine": "copy"})
    with pytest.raises(ValueError, match="not a valid GCS bucket name"):
        TableExport.model_validate({**base, "target": "gs://-lake/x"})
