"""S3 credentials: resolution order, CrateDB's s3:// URI form, percent-encoding, redaction."""

from __future__ import annotations

import json

import pytest

from cratedb_airflow_export.credentials import (
    CredentialsError,
    Redactor,
    S3Credentials,
    cratedb_s3_uri,
    resolve_credentials,
)
from cratedb_airflow_export.layout import Location

SECRET = "wJalr/K7MDENG+bPxRfiCY=EXAMPLEKEY"
ENCODED = "wJalr%2FK7MDENG%2BbPxRfiCY%3DEXAMPLEKEY"
LOC = Location("my-bucket", "metrics-2024-01-04")


def test_aws_uri_percent_encodes_keys():
    uri, protocol = cratedb_s3_uri(S3Credentials("AK/IA", SECRET, source="t"), LOC)
    assert uri.value == f"s3://AK%2FIA:{ENCODED}@my-bucket/metrics-2024-01-04"
    assert uri.shown == "s3://AK%2FIA:***@my-bucket/metrics-2024-01-04"
    assert repr(uri) == str(uri) == uri.shown
    assert protocol is None


def test_region_gives_portable_aws_endpoint_with_port():
    uri, protocol = cratedb_s3_uri(S3Credentials("AKIA", SECRET, region="eu-central-1", source="t"), LOC)
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
    uri, proto = cratedb_s3_uri(S3Credentials("minio", "pw", endpoint_url=endpoint, source="t"), LOC)
    assert uri.value == f"s3://minio:pw@{authority}/my-bucket/metrics-2024-01-04"
    assert proto == protocol


def test_bad_endpoint_and_session_tokens_are_refused():
    with pytest.raises(CredentialsError, match="must be http"):
        cratedb_s3_uri(S3Credentials("a", "b", endpoint_url="ftp://x:21", source="t"), LOC)
    with pytest.raises(CredentialsError, match=r"temporary credentials .* CrateDB's COPY TO cannot use them"):
        cratedb_s3_uri(S3Credentials("a", "b", session_token="tok", source="t"), LOC)


def test_placeholders_without_keys():
    uri, _ = cratedb_s3_uri(None, LOC)
    assert uri.value == uri.shown == "s3://<access_key>:<secret_key>@my-bucket/metrics-2024-01-04"


def test_secrets_and_redactor_cover_raw_and_encoded_forms():
    creds = S3Credentials("AKIA", SECRET, session_token="to/ken", source="t")
    assert set(creds.secrets()) >= {SECRET, ENCODED, "to/ken", "to%2Fken"}
    redact = Redactor(*creds.secrets())
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
    assert (creds.endpoint_url, creds.region, creds.conn_id) == ("http://127.0.0.1:9000", "eu-west-1", "aws_lake")


def test_resolve_falls_back_to_the_seeds_environment_variables(monkeypatch):
    monkeypatch.setenv("ACCESS_KEY_ID", "AKIAENV")
    monkeypatch.setenv("SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    creds = resolve_credentials("aws_nowhere")
    assert (creds.access_key, creds.secret_key, creds.endpoint_url, creds.conn_id) == (
        "AKIAENV",
        SECRET,
        "http://127.0.0.1:9000",
        None,
    )
    assert "environment variables" in creds.source


def test_resolve_without_anything_names_both_options(monkeypatch):
    with pytest.raises(CredentialsError, match=r"no Airflow connection 'aws_nowhere' .*AIRFLOW_CONN_AWS_NOWHERE"):
        resolve_credentials("aws_nowhere")
