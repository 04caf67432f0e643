"""Airflow connections -> :class:`~cratedb_airflow_export.connections.Connections`, once per task.

- S3: the table's ``aws_conn_id`` through Airflow's S3Hook (its credentials, endpoint, region and
  client, so everything an Airflow AWS connection can express works: keys, session tokens, assumed
  roles, ``endpoint_url``); when no such connection exists, the tutorial's ``ACCESS_KEY_ID`` /
  ``SECRET_ACCESS_KEY`` variables.
- Azure Blob Storage (an ``az://`` target): the table's ``wasb_conn_id`` (Airflow's ``wasb``
  connection type: account and key, SAS token or connection string); when no such connection
  exists, ``AZURE_STORAGE_CONNECTION_STRING``.
- Google Cloud Storage (a ``gs://`` target): the table's ``gcp_conn_id`` (Airflow's
  ``google_cloud_platform`` type: a service account's key and the project); without such a
  connection, Application Default Credentials.
- Source: the table's ``cratedb_conn_id`` (the tutorial's ``cratedb_connection``, a postgresql://
  URI) as libpq parameters.
- Iceberg (``format: iceberg``): the table's ``iceberg_conn_id``, pyiceberg's catalog properties.

Every form of every secret (raw and percent-encoded) is registered with Airflow's log masker.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cratedb_airflow_export.connections import (
    Connections,
    ConnectionSpec,
    catalog_params,
    cloud_store,
    environment_problem,
    other_store,
    source_params,
    tutorial_credentials,
)
from cratedb_airflow_export.credentials import S3Credentials
from cratedb_airflow_export.errors import CredentialsError
from cratedb_airflow_export.stores.s3 import S3Store, client_config

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.storage import Store

log = logging.getLogger(__name__)


def airflow_connection(conn_id: str) -> ConnectionSpec | None:
    """Airflow's connection ``conn_id`` (any secrets backend), or None when it does not exist."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        problem = environment_problem(conn_id)  # Airflow drops a variable whose URI it cannot read
        if problem:
            raise CredentialsError(problem) from None
        return None
    return ConnectionSpec(
        conn_id=conn_id,
        conn_type=conn.conn_type,
        host=conn.host,
        port=conn.port,
        schema=conn.schema,
        login=conn.login,
        password=conn.password,
        extra=conn.extra_dejson,
    )


def s3_access(aws_conn_id: str) -> tuple[S3Credentials, S3Store]:
    """The S3 credentials and the store (S3Hook's clients: one for data, one with short bounds for
    the bucket check) of ``aws_conn_id`` (see the module docstring for the order). The connection is
    read once, by the hook."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    if not hook.conn_config:  # no such connection: S3Hook would fall back to boto3's own chain
        creds = tutorial_credentials(aws_conn_id)
        return creds, S3Store.from_credentials(creds)
    frozen = hook.get_credentials()
    if frozen is None or frozen.access_key is None:
        raise CredentialsError(f"Airflow connection {aws_conn_id!r} resolves to no AWS credentials")
    creds = S3Credentials(
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        session_token=frozen.token,
        endpoint_url=hook.conn_config.get_service_endpoint_url("s3"),
        region=hook.conn_config.region_name,
        origin=f"Airflow connection {aws_conn_id!r}",
    )
    configured = hook.config  # the connection's botocore config (config_kwargs), or botocore's default
    data = hook.get_client_type(config=client_config(configured=configured))
    return creds, S3Store(data, hook.get_client_type(config=client_config(probe=True, configured=configured)))


def store_of(scheme: str, conn_id: str) -> Store:
    """The store of ``scheme`` through the Airflow connection ``conn_id`` (its secrets masked)."""
    from airflow.sdk.log import mask_secret

    store: Store
    if scheme == "s3":
        creds, store = s3_access(conn_id)
        secrets = creds.secrets()
    else:
        store, other = cloud_store(scheme, conn_id, airflow_connection)
        secrets = other.secrets()
    for form in secrets:
        mask_secret(form)
    return store


def resolve(cfg: TableExport) -> Connections:
    """``cfg``'s connections from Airflow, with every secret form masked in the task log."""
    from airflow.sdk.log import mask_secret

    database = airflow_connection(cfg.cratedb_conn_id)
    if database is None:
        raise CredentialsError(
            f"no Airflow connection {cfg.cratedb_conn_id!r}: define it, e.g. AIRFLOW_CONN_"
            f"{cfg.cratedb_conn_id.upper()}=postgresql://<user>:<password>@<host>:5432/doc"
        )
    source = source_params(database)
    for form in source.secrets():  # masked at once: the S3 lookup below may log or fail
        mask_secret(form)
    catalog = None
    if cfg.format == "iceberg":
        catalog = catalog_params(airflow_connection(cfg.iceberg_conn_id), cfg.iceberg_conn_id)
        for form in catalog.secrets():
            mask_secret(form)
    if cfg.store != "s3":
        connections = other_store(cfg, source, catalog, airflow_connection)
        for form in connections.secrets:
            mask_secret(form)
        azure, gcs = connections.azure, connections.gcs
        if azure is not None:
            account = azure.account or "-"
            log.info("Azure credentials from %s, account %s; source %s", azure.origin, account, source.origin)
        elif gcs is not None:
            log.info("GCS credentials from %s, project %s; source %s", gcs.origin, gcs.project or "-", source.origin)
        return connections
    creds, store = s3_access(cfg.aws_conn_id)
    for form in creds.secrets():
        mask_secret(form)
    connections = Connections(creds, store, source, catalog)
    log.info(
        "S3 credentials from %s%s; source %s",
        creds.origin,
        f", endpoint {creds.endpoint_url}" if creds.endpoint_url else "",
        source.origin,
    )
    return connections
