"""Which failures another attempt can heal (errors.py): a store that refuses the credentials or
what they may do (HTTP 401/403, from each store's SDK) is not one of them; a server error is."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.errors import is_retryable, store_status


def s3_error(status: int, code: str) -> BaseException:
    from botocore.exceptions import ClientError

    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")  # type: ignore[arg-type]


def azure_error(status: int) -> BaseException:
    from azure.core.exceptions import HttpResponseError

    error = HttpResponseError(message="AuthorizationPermissionMismatch")
    error.status_code = status
    return error


def gcs_error(status: int) -> BaseException:
    from google.api_core.exceptions import from_http_status

    return from_http_status(status, "denied")


@pytest.mark.parametrize("make", [lambda s: s3_error(s, "AccessDenied"), azure_error, gcs_error])
def test_a_store_refusing_the_credentials_is_not_retried_and_a_server_error_is(make):
    for status in (401, 403):
        assert store_status(make(status)) == status
        assert not is_retryable(make(status))
    assert is_retryable(make(503)) and is_retryable(make(500))


def test_exceptions_without_a_store_status_keep_their_class():
    assert store_status(OSError("connection reset")) is None and is_retryable(OSError("connection reset"))
    assert store_status(KeyError("x")) is None and not is_retryable(KeyError("x"))
