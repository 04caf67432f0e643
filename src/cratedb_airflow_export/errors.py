"""Errors, and whether trying again can help.

Every failure of an export reaches the caller as an :class:`ExportError` whose message names the
table, the interval and the cause, with every secret scrubbed. Its :attr:`~ExportError.retryable`
tells the Airflow edge whether to keep the task's retries (network, S3 or database unavailable, a
row count that may settle) or to fail at once (a missing table or column, a wrong column type,
invalid configuration, credentials CrateDB cannot use): retrying those costs minutes and cannot
heal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

# SQLSTATE classes that no retry can heal: 0A feature not supported, 22 data exception,
# 28 invalid authorization, 42 syntax error or access rule violation (undefined table/column,
# insufficient privilege). CrateDB reports these classes over the PostgreSQL wire protocol too.
PERMANENT_SQLSTATE_CLASSES = frozenset({"0A", "22", "28", "42"})


class PermanentError(RuntimeError):
    """A failure that the same attempt would meet again: fix the cause, then rerun."""

    retryable = False


class ConfigError(PermanentError, ValueError):
    """A configuration entry is invalid. The message names the entry and the field."""


class ExportError(RuntimeError):
    """An export (or verification, or publish) failed. The message names the table, the interval
    and the cause, and holds no secret."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt can succeed where ``exc`` ended this one."""
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg errors carry the server's SQLSTATE
    if isinstance(sqlstate, str) and sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES:
        return False
    return not isinstance(exc, (ValueError, TypeError, LookupError))


@contextmanager
def failures_named(subject: str, redact: Callable[[str], str] = str) -> Iterator[None]:
    """Turn any failure inside into an :class:`ExportError` saying ``<subject> failed: <cause>``,
    with ``redact`` applied to the cause and whether a retry can help kept."""
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:
        cause = redact(f"{type(exc).__name__}: {exc}".strip())
        raise ExportError(f"{subject} failed: {cause}", retryable=is_retryable(exc)) from None
