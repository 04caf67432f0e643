"""Credentials and secrets, as plain values: the S3 keys and endpoint, the source database's libpq
parameters, and every form each secret can take, so that :class:`Redactor` scrubs them all.

Nothing here talks to a service; :mod:`.connections` fills these from Airflow's connection formats or
the environment, the Airflow edge from Airflow's hooks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "***"


def secret_forms(*values: str | None) -> set[str]:
    """Every form a secret can take in text we or our libraries produce: raw and percent-encoded."""
    forms: set[str] = set()
    for value in values:
        if value:
            forms.update({value, quote(value, safe=""), quote(value), quote_plus(value)})
    return forms


class Redactor:
    """Replaces every known secret form in a text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets) | {s for s in secrets if s and len(s) >= 3}
        self._secrets = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


@dataclass(frozen=True)
class S3Credentials:
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region: str | None = None
    origin: str = ""  # where they came from, for messages

    def secrets(self) -> set[str]:
        return secret_forms(self.secret_key, self.session_token)

    def without_keys(self) -> S3Credentials:
        """Endpoint and region only (``plan`` shows placeholders for the keys)."""
        return S3Credentials(endpoint_url=self.endpoint_url, region=self.region, origin=self.origin)


@dataclass(frozen=True)
class AzureCredentials:
    """An Azure storage account: its name and one of an account key, a SAS token or a connection
    string (which may carry either, and the endpoint); ``endpoint_url``: the Blob service's URL
    when it is not ``https://<account>.blob.core.windows.net`` (Azurite, sovereign clouds)."""

    account: str | None = None
    key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    origin: str = ""  # where they came from, for messages

    def secrets(self) -> set[str]:
        """The key, the SAS token and its signature, the connection string and the key in it."""
        parts = dict(item.split("=", 1) for item in (self.connection_string or "").split(";") if "=" in item)
        signature = next(
            (
                value
                for name, value in (p.split("=", 1) for p in (self.sas_token or "").lstrip("?").split("&") if "=" in p)
                if name == "sig"
            ),
            None,
        )
        from urllib.parse import unquote

        return secret_forms(
            self.key,
            self.sas_token,
            (self.sas_token or "").lstrip("?") or None,
            signature,
            unquote(signature) if signature else None,
            self.connection_string,
            parts.get("AccountKey"),
            parts.get("SharedAccessSignature"),
        )

    def _string(self) -> dict[str, str]:
        """The connection string's ``Name=value`` parts."""
        return dict(item.split("=", 1) for item in (self.connection_string or "").split(";") if "=" in item)

    @property
    def blob_endpoint(self) -> str:
        """The Blob service's URL: the endpoint given, the connection string's, or Azure's public one."""
        parts = self._string()
        if self.endpoint_url:
            return self.endpoint_url.rstrip("/")
        if parts.get("BlobEndpoint"):
            return parts["BlobEndpoint"].rstrip("/")
        protocol = parts.get("DefaultEndpointsProtocol", "https")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        return f"{protocol}://{self.account_name}.blob.{suffix}"

    @property
    def account_name(self) -> str | None:
        return self.account or self._string().get("AccountName")

    @property
    def account_key(self) -> str | None:
        return self.key or self._string().get("AccountKey")

    @property
    def signature(self) -> str | None:
        """The SAS token (without a leading '?'), given or in the connection string."""
        token = self.sas_token or self._string().get("SharedAccessSignature")
        return token.lstrip("?") if token else None


@dataclass(frozen=True)
class GcsCredentials:
    """A Google Cloud project's storage access: a service account's key (its JSON, or a file), or
    Application Default Credentials when neither is given; ``endpoint_url``: another endpoint than
    Google's (fake-gcs-server, a private endpoint)."""

    project: str | None = None
    keyfile_dict: dict[str, Any] | None = field(default=None, repr=False)
    key_path: str | None = None
    endpoint_url: str | None = None
    origin: str = ""  # where they came from, for messages

    def secrets(self) -> set[str]:
        """The private key (also as it appears JSON-escaped), its id, and the key's JSON."""
        import json

        info = self.keyfile_dict or {}
        key = info.get("private_key")
        return secret_forms(
            key,
            json.dumps(key)[1:-1] if key else None,
            info.get("private_key_id"),
            json.dumps(info) if info else None,
        )


StoreCredentials = S3Credentials | AzureCredentials | GcsCredentials  # what a target's store was reached with


@dataclass(frozen=True)
class SourceParams:
    """libpq connection parameters of the source database (CrateDB or PostgreSQL)."""

    host: str | None = None
    port: int | None = None
    dbname: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    options: Mapping[str, str] = field(default_factory=dict)  # other libpq keywords (sslmode, ...)
    origin: str = ""  # where they came from, for messages

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``."""
        base = {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}
        return {**{k: v for k, v in base.items() if v is not None}, "password": self.password, **self.options}

    def conninfo(self) -> str:
        """A libpq connection string (for drivers that take one, such as ADBC's)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(**{k: v for k, v in self.kwargs().items() if v is not None})

    def secrets(self) -> set[str]:
        return secret_forms(self.password)


# Iceberg catalog properties that hold secrets (pyiceberg's names), besides a password in a "uri"
CATALOG_SECRETS = (
    "credential",
    "token",
    "password",
    "s3.secret-access-key",
    "s3.session-token",
    "client.secret-access-key",
    "client.session-token",
    "glue.secret-access-key",
    "glue.session-token",
    "adls.account-key",
    "gcs.oauth2.token",
)


@dataclass(frozen=True)
class CatalogParams:
    """An Iceberg catalog as pyiceberg's ``load_catalog`` properties (``type``: sql, rest, glue, ...)."""

    name: str
    properties: Mapping[str, str] = field(default_factory=dict, repr=False)
    origin: str = ""  # where they came from, for messages

    def secrets(self) -> set[str]:
        from urllib.parse import unquote, urlsplit

        values = [self.properties.get(key) for key in CATALOG_SECRETS]
        uri = self.properties.get("uri") or ""
        try:
            password = urlsplit(uri).password
        except ValueError:
            password = None
        values += [password, unquote(password) if password else None]
        return secret_forms(*values)
