"""Failures, as Airflow should treat them: the one place where the core's errors meet Airflow's.

A failure that no retry can heal (:class:`~cratedb_airflow_export.errors.PermanentError`, also as the
:class:`~cratedb_airflow_export.errors.ExportError` that names it) fails the task at once
(``AirflowFailException``: no retries); any other failure is raised as it is, and Airflow retries it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cratedb_airflow_export.errors import ExportError, is_retryable


@contextmanager
def airflow_failures() -> Iterator[None]:
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except ExportError as exc:
        if not is_retryable(exc):
            raise AirflowFailException(f"{exc} (not retried: this cannot heal by itself)") from None
        raise
