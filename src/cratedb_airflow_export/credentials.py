"""S3 credentials: where they come from, how they reach CrateDB, and how they stay out of logs.

Resolution order for a table's ``aws_conn_id`` (default ``aws_default``):
1. the Airflow AWS connection of that id (``endpoint_url`` in its extra for MinIO and others);
2. the seed's ``ACCESS_KEY_ID`` / ``SECRET_ACCESS_KEY`` environment variables (plus optional
   ``S3_ENDPOINT_URL`` and ``AWS_REGION``), when no such connection exists.

Every secret is registered with Airflow's masker in its raw and its percent-encoded form (the
form it takes inside an ``s3://`` URI), and :class:`Redactor` scrubs both from exception texts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from cratedb_airflow_export.layout import Location
from cratedb_airflow_export.sql import Secret

log = logging.getLogger(__name__)

ENV_ACCESS_KEY = "ACCESS_KEY_ID"
ENV_SECRET_KEY = "SECRET_ACCESS_KEY"
ENV_ENDPOINT = "S3_ENDPOINT_URL"
REDACTED = "***"


class CredentialsError(RuntimeError):
    """No usable S3 credentials."""


@dataclass(frozen=True)
class S3Credentials:
    access_key: str | None = field(repr=False)
    secret_key: str | None = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region: str | None = None
    conn_id: str | None = None  # set when they come from an Airflow connection
    source: str = ""

    def secrets(self) -> list[str]:
        """Every form a secret can take in text we produce: raw and percent-encoded."""
        forms: set[str] = set()
        for value in (self.secret_key, self.session_token):
            if value:
                forms.update({value, quote(value, safe=""), quote(value)})
        return sorted(forms, key=len, reverse=True)

    def mask(self) -> None:
        """Register the secrets with Airflow's log masker (no-op outside Airflow)."""
        mask(*self.secrets())


def mask(*values: str) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow is a dependency
        return
    for value in values:
        if value:
            mask_secret(value)


class Redactor:
    """Replaces every known secret form in a text with ``***``."""

    def __init__(self, *secrets: str) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def add(self, *secrets: str) -> None:
        self._secrets = sorted(set(self._secrets) | {s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def resolve_credentials(aws_conn_id: str) -> S3Credentials:
    """The S3 credentials for ``aws_conn_id``; see the module docstring for the order."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(aws_conn_id)
        found = True
    except AirflowNotFoundException:
        found = False
    if found:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        hook = S3Hook(aws_conn_id=aws_conn_id)
        frozen = hook.get_credentials()
        creds = S3Credentials(
            access_key=frozen.access_key,
            secret_key=frozen.secret_key,
            session_token=frozen.token,
            endpoint_url=hook.conn_config.get_service_endpoint_url("s3"),
            region=hook.conn_config.region_name,
            conn_id=aws_conn_id,
            source=f"Airflow connection {aws_conn_id!r}",
        )
    elif os.environ.get(ENV_ACCESS_KEY) and os.environ.get(ENV_SECRET_KEY):
        creds = S3Credentials(
            access_key=os.environ[ENV_ACCESS_KEY],
            secret_key=os.environ[ENV_SECRET_KEY],
            endpoint_url=os.environ.get(ENV_ENDPOINT) or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
            source=f"environment variables {ENV_ACCESS_KEY}/{ENV_SECRET_KEY}",
        )
    else:
        raise CredentialsError(
            f"no Airflow connection {aws_conn_id!r} and no {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} "
            "in the environment: define the connection (AIRFLOW_CONN_"
            f"{aws_conn_id.upper()}) or set both variables"
        )
    creds.mask()
    log.info("S3 credentials from %s%s", creds.source, f", endpoint {creds.endpoint_url}" if creds.endpoint_url else "")
    return creds


def plan_credentials(aws_conn_id: str) -> S3Credentials | None:
    """Endpoint and region of ``aws_conn_id`` without any key and without network access (for ``plan``)."""
    try:
        from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper
        from airflow.sdk import BaseHook

        wrapper = AwsConnectionWrapper(conn=BaseHook.get_connection(aws_conn_id))
        endpoint, region = wrapper.get_service_endpoint_url("s3"), wrapper.region_name
    except Exception:  # no such connection, or no Airflow configuration: fall back to the environment
        endpoint, region = os.environ.get(ENV_ENDPOINT), os.environ.get("AWS_REGION")
    return S3Credentials(None, None, endpoint_url=endpoint or None, region=region or None, source="plan")


def cratedb_s3_uri(creds: S3Credentials | None, location: Location) -> tuple[Secret, str | None]:
    """The ``s3://`` URI CrateDB's COPY TO writes to, and the ``protocol`` option it needs.

    Form: ``s3://<access>:<secret>@[<host>:<port>/]<bucket>/<prefix>``. Keys are percent-encoded
    (AWS secrets contain '/', '+', '='). CrateDB treats the authority as an endpoint only with an
    explicit port, so custom endpoints always get one. Without keys (``plan``) it shows placeholders.
    """
    if creds is not None and creds.session_token:
        raise CredentialsError(
            f"{creds.source} yields temporary credentials (a session token); CrateDB's COPY TO cannot "
            "use them. Use an access key pair, or the 'stream' engine"
        )
    protocol = None
    endpoint = ""
    endpoint_url = creds.endpoint_url if creds else None
    if endpoint_url:
        parts = urlsplit(endpoint_url if "://" in endpoint_url else f"https://{endpoint_url}")
        protocol = parts.scheme.lower()
        if protocol not in {"http", "https"} or not parts.hostname:
            raise CredentialsError(f"endpoint_url {endpoint_url!r} must be http(s)://host[:port]")
        port = parts.port or (443 if protocol == "https" else 80)
        endpoint = f"{parts.hostname}:{port}/"
    elif creds is not None and creds.region:
        endpoint = f"s3.{creds.region}.amazonaws.com:443/"
    path = f"{endpoint}{location.bucket}/{location.prefix}"
    if creds is None or creds.access_key is None or creds.secret_key is None:
        shown = f"s3://<access_key>:<secret_key>@{path}"
        return Secret(shown, shown), protocol
    userinfo = f"{quote(creds.access_key, safe='')}:{quote(creds.secret_key, safe='')}"
    secret = Secret(f"s3://{userinfo}@{path}", f"s3://{quote(creds.access_key, safe='')}:{REDACTED}@{path}")
    mask(secret.value)
    return secret, protocol
