"""What the core needs from the outside world, resolved once per task: the object store (a
:class:`~.storage.Store`) with its credentials, the source database's connection parameters, and
every form of every secret.

Two places fill a :class:`Connections`:

- the Airflow edge (``edge/resolve.py``), from Airflow connections through Airflow's hooks;
- :func:`from_environment`, without Airflow (the command line): a connection id ``X`` is read from
  ``AIRFLOW_CONN_X`` in Airflow's URI or JSON form, the same variables a deployment already sets.

Either way the S3 credentials fall back to the tutorial's ``ACCESS_KEY_ID`` / ``SECRET_ACCESS_KEY``
variables (optionally ``S3_ENDPOINT_URL`` and ``AWS_REGION``) when the AWS connection does not
exist. The values themselves (keys, libpq parameters, every form of every secret) are
:mod:`.credentials`'.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from cratedb_airflow_export.credentials import (
    AzureCredentials,
    CatalogParams,
    GcsCredentials,
    Redactor,
    S3Credentials,
    SourceParams,
)
from cratedb_airflow_export.errors import CredentialsError
from cratedb_airflow_export.storage import Store
from cratedb_airflow_export.stores.s3 import S3Store

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport

ENV_ACCESS_KEY = "ACCESS_KEY_ID"
ENV_SECRET_KEY = "SECRET_ACCESS_KEY"
ENV_ENDPOINT = "S3_ENDPOINT_URL"


@dataclass(frozen=True)
class Connections:
    """Everything an export of one table needs from outside, resolved once per task."""

    s3: S3Credentials  # an s3:// target's (empty for another store)
    store: Store = field(repr=False)  # the target's object store
    database: SourceParams
    catalog: CatalogParams | None = None  # format iceberg: the table's catalog
    azure: AzureCredentials | None = None  # an az:// target's
    gcs: GcsCredentials | None = None  # a gs:// target's

    @property
    def secrets(self) -> set[str]:
        catalog = self.catalog.secrets() if self.catalog is not None else set()
        azure = self.azure.secrets() if self.azure is not None else set()
        gcs = self.gcs.secrets() if self.gcs is not None else set()
        return self.s3.secrets() | self.database.secrets() | catalog | azure | gcs

    def redactor(self) -> Redactor:
        return Redactor(self.secrets)


# --- Airflow's connection formats, read without Airflow ------------------------------------------


@dataclass(frozen=True)
class ConnectionSpec:
    """The fields of an Airflow connection that the export uses."""

    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    port: int | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict)


def parse_connection(conn_id: str, value: str) -> ConnectionSpec:
    """An ``AIRFLOW_CONN_*`` value, in Airflow's URI form (``postgresql://user:pass@host:5432/doc?sslmode=require``,
    ``aws://KEY:SECRET@/?region_name=...``; user and password percent-encoded) or its JSON form."""
    text = value.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"connection {conn_id!r}: not valid JSON ({exc.msg})") from None
        json_extra = data.get("extra") or {}
        return ConnectionSpec(
            conn_id,
            data.get("conn_type"),
            data.get("host"),
            int(data["port"]) if data.get("port") else None,
            data.get("schema"),
            data.get("login"),
            data.get("password"),
            json.loads(json_extra) if isinstance(json_extra, str) else dict(json_extra),
        )
    problem = uri_problem(conn_id, text)
    if problem:
        raise CredentialsError(problem)
    parts = urlsplit(text)
    if not parts.scheme:
        raise CredentialsError(f"connection {conn_id!r}: expected a URI such as postgresql://... or aws://...")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra: dict[str, Any] = json.loads(query["__extra__"]) if "__extra__" in query else query
    try:
        port = parts.port
    except ValueError:
        raise CredentialsError(f"connection {conn_id!r}: the port is not a number") from None
    return ConnectionSpec(
        conn_id,
        {"postgresql": "postgres"}.get(parts.scheme, parts.scheme.replace("-", "_")),
        unquote(parts.hostname) if parts.hostname else None,
        port,
        unquote(parts.path[1:]) if parts.path[1:] else None,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        extra,
    )


NOT_IN_USERINFO = "/?#[]@"  # what ends or breaks a URI's user name or password unless percent-encoded
PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def uri_problem(conn_id: str, text: str) -> str | None:
    """What makes ``text`` (a connection URI) misread: a character in its user name or password
    that a URI does not allow there, named with its percent-encoding; the value itself is never
    in the message. None when there is nothing to say (or ``text`` is no URI)."""
    if "://" not in text or text.lstrip().startswith("{"):
        return None
    rest = text.split("://", 1)[1]
    head = rest.split("?", 1)[0]
    if "@" in head:  # the query may hold an '@' of its own; the userinfo ends at the last '@' before it
        rest = head
    if "@" not in rest:
        return None
    user, _, password = rest.rsplit("@", 1)[0].partition(":")
    for part, value in (("user name (login, access key)", user), ("password (secret)", password)):
        bad = sorted({c for c in value if c in NOT_IN_USERINFO})
        if "%" in PERCENT_ESCAPE.sub("", value):
            bad.append("%")
        if bad:
            codes = ", ".join(f"'{c}' is %{ord(c):02X}" for c in bad)
            return (
                f"connection {conn_id!r}: the {part} in its URI holds {' and '.join(repr(c) for c in bad)}, "
                f"which a URI does not allow there: percent-encode that part ({codes}; "
                "python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=\"\"))' <value>)"
            )
    return None


def environment_problem(conn_id: str, environ: Mapping[str, str] | None = None) -> str | None:
    """:func:`uri_problem` of ``AIRFLOW_CONN_<ID>``: why Airflow may have found no connection
    ``conn_id`` although the variable is set (it drops a URI it cannot parse)."""
    value = (os.environ if environ is None else environ).get(f"AIRFLOW_CONN_{conn_id.upper()}")
    return uri_problem(conn_id, value) if value else None


Lookup = Callable[[str], "ConnectionSpec | None"]


def environment_lookup(environ: Mapping[str, str] | None = None) -> Lookup:
    """A lookup of connection ids in ``AIRFLOW_CONN_<ID>`` variables."""
    env = os.environ if environ is None else environ

    def from_variable(conn_id: str) -> ConnectionSpec | None:
        value = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
        return parse_connection(conn_id, value) if value else None

    return from_variable


def s3_credentials(spec: ConnectionSpec) -> S3Credentials:
    """An AWS connection's keys, endpoint (``endpoint_url``, also per service) and region."""
    extra = spec.extra
    unsupported = sorted(set(extra) & {"role_arn", "profile_name", "assume_role_method", "aws_iam_role"})
    if unsupported:
        raise CredentialsError(
            f"AWS connection {spec.conn_id!r} uses {', '.join(unsupported)}, which only Airflow's AWS hook "
            "resolves: run this inside Airflow, or give the connection a key pair"
        )
    service = extra.get("service_config", {}).get("s3", {}) if isinstance(extra.get("service_config"), dict) else {}
    return S3Credentials(
        access_key=spec.login or extra.get("aws_access_key_id"),
        secret_key=spec.password or extra.get("aws_secret_access_key"),
        session_token=extra.get("aws_session_token"),
        endpoint_url=service.get("endpoint_url") or extra.get("endpoint_url") or None,
        region=extra.get("region_name") or None,
        origin=f"connection {spec.conn_id!r}",
    )


ENV_AZURE_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"  # the Azure SDKs' and CLI's own variable


def azure_credentials(spec: ConnectionSpec) -> AzureCredentials:
    """An Azure Blob Storage connection (Airflow's ``wasb`` type, its fields as Airflow's WasbHook
    reads them): the account name (login), its key (password, or ``shared_access_key``), a
    ``sas_token`` (alone, or a whole URL carrying it) or a ``connection_string`` in the extra; the
    host, when it is a URL, is the Blob endpoint (Azurite, sovereign clouds)."""
    extra = spec.extra
    unsupported = sorted(set(extra) & {"tenant_id", "client_secret_auth_config", "managed_identity_client_id"})
    if unsupported or (extra.get("client_id") and not spec.password):
        raise CredentialsError(
            f"Azure connection {spec.conn_id!r} uses {', '.join(unsupported) or 'client_id'} (Entra ID): give it the "
            "account key, a SAS token or a connection string"
        )
    sas = str(extra.get("sas_token") or "") or None
    endpoint = spec.host if spec.host and spec.host.startswith(("http://", "https://")) else None
    if sas and sas.startswith(("http://", "https://")):
        endpoint, _, sas = sas.partition("?")
    creds = AzureCredentials(
        account=spec.login or None,
        key=spec.password or str(extra.get("shared_access_key") or "") or None,
        sas_token=sas or None,
        connection_string=str(extra.get("connection_string") or "") or None,
        endpoint_url=endpoint.rstrip("/") if endpoint else None,
        origin=f"connection {spec.conn_id!r}",
    )
    if not (creds.connection_string or ((creds.account or creds.endpoint_url) and (creds.key or creds.sas_token))):
        raise CredentialsError(
            f"Azure connection {spec.conn_id!r} needs the account name (login) with its key (password) or a "
            "sas_token, or a connection_string in its extra"
        )
    return creds


def azure_environment(wasb_conn_id: str, environ: Mapping[str, str] | None = None) -> AzureCredentials:
    """``AZURE_STORAGE_CONNECTION_STRING``, for when the connection ``wasb_conn_id`` does not exist."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_AZURE_CONNECTION_STRING)
    if not value:
        problem = environment_problem(wasb_conn_id, env)
        if problem:
            raise CredentialsError(problem)
        raise CredentialsError(
            f"no Airflow connection {wasb_conn_id!r} and no {ENV_AZURE_CONNECTION_STRING} in the environment: define "
            f"the connection (AIRFLOW_CONN_{wasb_conn_id.upper()}, type wasb) or set the variable"
        )
    return AzureCredentials(connection_string=value, origin=f"environment ({ENV_AZURE_CONNECTION_STRING})")


ENV_GCS_EMULATOR = "STORAGE_EMULATOR_HOST"  # google-cloud-storage's own variable for another endpoint


def gcs_credentials(spec: ConnectionSpec) -> GcsCredentials:
    """A Google Cloud connection (Airflow's ``google_cloud_platform`` type, its extra as Airflow's
    Google hooks read it, with or without the ``extra__google_cloud_platform__`` prefix): the
    service account's key as ``keyfile_dict`` (JSON) or ``key_path``, and ``project``; without a
    key, Application Default Credentials. ``endpoint_url`` in the extra: another endpoint."""
    prefix = "extra__google_cloud_platform__"
    extra = {key.removeprefix(prefix): value for key, value in spec.extra.items()}
    if extra.get("key_secret_name") or extra.get("credential_config_file") or extra.get("impersonation_chain"):
        raise CredentialsError(
            f"Google Cloud connection {spec.conn_id!r} uses Secret Manager, a credential configuration file or "
            "impersonation, which only Airflow's Google hooks resolve: give it a keyfile_dict or key_path"
        )
    keyfile = extra.get("keyfile_dict")
    if isinstance(keyfile, str) and keyfile.strip():
        try:
            keyfile = json.loads(keyfile)
        except ValueError:
            raise CredentialsError(f"Google Cloud connection {spec.conn_id!r}: keyfile_dict is not JSON") from None
    if keyfile is not None and not (isinstance(keyfile, dict) and keyfile.get("private_key")):
        raise CredentialsError(
            f"Google Cloud connection {spec.conn_id!r}: keyfile_dict is not a service account key (no private_key)"
        )
    return GcsCredentials(
        project=str(extra.get("project") or "") or None,
        keyfile_dict=keyfile or None,
        key_path=str(extra.get("key_path") or "") or None,
        endpoint_url=str(extra.get("endpoint_url") or "") or None,
        origin=f"connection {spec.conn_id!r}",
    )


def gcs_environment(environ: Mapping[str, str] | None = None) -> GcsCredentials:
    """Without a connection: Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the
    metadata server), or ``STORAGE_EMULATOR_HOST``'s endpoint."""
    env = os.environ if environ is None else environ
    endpoint = env.get(ENV_GCS_EMULATOR) or None
    return GcsCredentials(endpoint_url=endpoint, origin="environment (Application Default Credentials)")


def tutorial_credentials(aws_conn_id: str, environ: Mapping[str, str] | None = None) -> S3Credentials:
    """The tutorial's ``ACCESS_KEY_ID`` / ``SECRET_ACCESS_KEY`` variables, for when the AWS
    connection ``aws_conn_id`` does not exist."""
    env = os.environ if environ is None else environ
    if not (env.get(ENV_ACCESS_KEY) and env.get(ENV_SECRET_KEY)):
        problem = environment_problem(aws_conn_id, env)
        if problem:
            raise CredentialsError(problem)
        raise CredentialsError(
            f"no Airflow connection {aws_conn_id!r} and no {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} in the environment: "
            f"define the connection (AIRFLOW_CONN_{aws_conn_id.upper()}) or set both variables"
        )
    return S3Credentials(
        access_key=env[ENV_ACCESS_KEY],
        secret_key=env[ENV_SECRET_KEY],
        endpoint_url=env.get(ENV_ENDPOINT) or None,
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        origin=f"environment variables {ENV_ACCESS_KEY}/{ENV_SECRET_KEY}",
    )


def source_params(spec: ConnectionSpec) -> SourceParams:
    """A database connection's libpq parameters; extras that are not libpq keywords (Airflow's
    ``cursor``, ``iam``, ``sqlalchemy_*``, ...) are left out, as Airflow's PostgresHook does."""
    from psycopg import pq

    keywords = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
    fixed = {"host", "port", "dbname", "user", "password"}
    options = {k: str(v) for k, v in spec.extra.items() if k in keywords and k not in fixed}
    return SourceParams(
        host=spec.host,
        port=spec.port,
        dbname=spec.schema,
        user=spec.login,
        password=spec.password,
        options=options,
        origin=f"connection {spec.conn_id!r}",
    )


def catalog_params(spec: ConnectionSpec | None, conn_id: str) -> CatalogParams:
    """An Iceberg catalog from a connection: its ``extra`` holds pyiceberg's catalog properties
    (``{"type": "sql", "uri": "postgresql+psycopg://..."}``, ``{"type": "rest", "uri": "https://..."}``,
    ``{"type": "glue"}``); ``host`` stands for a missing ``uri``, ``login``/``password`` for a REST
    catalog's ``credential``. The table's files are read and written through the target's store, with
    its credentials (``iceberg_io.py``): file system properties (``s3.*``, ``adls.*``, ``gcs.*``)
    here are not used."""
    if spec is None:
        raise CredentialsError(
            f"no connection {conn_id!r} for the Iceberg catalog: define it with the catalog's properties in "
            f'its extra, e.g. AIRFLOW_CONN_{conn_id.upper()}=\'{{"conn_type": "generic", "extra": {{"type": "sql", '
            '"uri": "sqlite:////path/catalog.db"}}\''
        )
    properties = {str(k): str(v) for k, v in spec.extra.items() if v is not None}
    if "uri" not in properties and spec.host:
        properties["uri"] = spec.host
    uri = properties.get("uri", "")
    kind = properties.setdefault("type", "rest" if uri.startswith(("http://", "https://")) else "sql" if uri else "")
    if not kind:
        raise CredentialsError(f"connection {conn_id!r}: say the catalog's type in its extra (sql, rest, glue, ...)")
    if kind == "rest" and spec.password and "credential" not in properties:
        properties["credential"] = f"{spec.login}:{spec.password}" if spec.login else spec.password
    return CatalogParams(conn_id, properties, f"connection {conn_id!r} ({kind} catalog)")


def from_environment(cfg: TableExport, lookup: Lookup | None = None) -> Connections:
    """``cfg``'s connections without Airflow: ``lookup`` finds a connection id (default: the
    ``AIRFLOW_CONN_*`` variables). Builds the store from plain credentials."""
    find = lookup or environment_lookup()
    database = find(cfg.cratedb_conn_id)
    if database is None:
        raise CredentialsError(
            f"no connection {cfg.cratedb_conn_id!r}: set AIRFLOW_CONN_{cfg.cratedb_conn_id.upper()}="
            "postgresql://<user>:<password>@<host>:5432/doc"
        )
    source = source_params(database)
    catalog = catalog_params(find(cfg.iceberg_conn_id), cfg.iceberg_conn_id) if cfg.format == "iceberg" else None
    if cfg.store != "s3":
        return other_store(cfg, source, catalog, find)
    aws = find(cfg.aws_conn_id)
    creds = s3_credentials(aws) if aws is not None else tutorial_credentials(cfg.aws_conn_id)
    return Connections(creds, S3Store.from_credentials(creds), source, catalog)


def other_store(cfg: TableExport, source: SourceParams, catalog: CatalogParams | None, find: Lookup) -> Connections:
    """``cfg``'s connections on Azure or GCS: the store's credentials from its connection
    (``wasb_conn_id``, ``gcp_conn_id``), else from the environment."""
    store, creds = cloud_store(cfg.store, cfg.store_conn_id, find)
    if isinstance(creds, AzureCredentials):
        return Connections(S3Credentials(), store, source, catalog, azure=creds)
    return Connections(S3Credentials(), store, source, catalog, gcs=creds)


def cloud_store(scheme: str, conn_id: str, find: Lookup) -> tuple[Store, AzureCredentials | GcsCredentials]:
    """The Azure (``az``) or GCS (``gs``) store of connection ``conn_id`` and its credentials; without
    such a connection, from the environment."""
    if scheme == "az":
        from cratedb_airflow_export.stores.azure import AzureStore

        wasb = find(conn_id)
        azure = azure_credentials(wasb) if wasb is not None else azure_environment(conn_id)
        return AzureStore.from_credentials(azure), azure
    if scheme == "gs":
        from cratedb_airflow_export.stores.gcs import GcsStore

        gcp = find(conn_id)
        gcs = gcs_credentials(gcp) if gcp is not None else gcs_environment()
        return GcsStore.from_credentials(gcs), gcs
    raise ValueError(f"no cloud store for {scheme}://")
