"""Every failure the package raises, and whether trying again can help.

Each exception class sits under one of two bases, and its base alone decides:

- :class:`PermanentError`: the same attempt would meet it again (a missing table or column, a wrong
  column type, invalid configuration, a bucket that does not exist, credentials CrateDB cannot use):
  fix the cause, then rerun. Retrying costs minutes and cannot heal.
- :class:`TransientError`: another attempt may succeed (S3 or the database unreachable or stalled,
  a row count that may settle, a file that could not be read).

Failures from libraries are decided by :func:`is_retryable` (psycopg's SQLSTATE; a ``ValueError``,
``TypeError`` or ``LookupError`` is a bug or bad input, not an outage). Every failure of a job reaches
the caller as an :class:`ExportError` (permanent or transient, as its cause) whose message names the
table, the interval and the cause, with every secret scrubbed; the Airflow edge maps it in one place
(``edge/failures.py``).
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


class TransientError(RuntimeError):
    """A failure another attempt may not meet: an outage, a stall, a count still settling."""

    retryable = True


# --- what a caller sees ----------------------------------------------------------------------------


class ExportError(RuntimeError):
    """An export, verification, restore or publish failed. The message names the table, the interval
    and the cause, and holds no secret. Always one of :class:`PermanentExportError` and
    :class:`TransientExportError`, as its cause: :func:`export_error` chooses."""

    retryable: bool


class PermanentExportError(ExportError, PermanentError):
    """An :class:`ExportError` that no retry can heal."""


class TransientExportError(ExportError, TransientError):
    """An :class:`ExportError` that another attempt may not meet."""


def export_error(message: str, *, retryable: bool) -> ExportError:
    return TransientExportError(message) if retryable else PermanentExportError(message)


# --- permanent -------------------------------------------------------------------------------------


class ConfigError(PermanentError, ValueError):
    """A configuration entry is invalid. The message names the entry and the field."""


class WindowError(PermanentError, ValueError):
    """The run's data interval is not a whole UTC day, or requested days are not days."""


class FilterError(PermanentError, ValueError):
    """The filter is refused; the message says which part and why."""


class CredentialsError(PermanentError):
    """No usable credentials, or credentials the chosen path cannot use."""


class TargetUnusable(PermanentError):
    """The target cannot be used as configured: the bucket does not exist or the credentials may not
    use it, the endpoint is no S3, or CrateDB's S3 client could not reach it."""


class SourceError(PermanentError):
    """The source table or a column is missing, of the wrong type, or the source cannot do what
    the configuration asks."""


class WindowViolation(PermanentError):
    """Rows outside the window reached the export: nothing may be published."""


class RestoreRefused(PermanentError):
    """The restore would be wrong as asked: an incomplete partition, rows already in the target,
    a column the target lacks, a method that cannot apply."""


class RestoreFailed(PermanentError):
    """Rows failed to load, or the target's count disagrees with the manifest."""


class PartitionPurged(PermanentError):
    """The day's rows were purged from the source after they were archived: exporting it again would
    replace the archive with what the source still holds."""


class RetentionRefused(PermanentError):
    """Retention deleted nothing of a partition or day: its archive did not check out (which, and
    why, in the message); the next run checks again."""


# --- transient -------------------------------------------------------------------------------------


class SchemaChanged(PermanentError):
    """The partition's schema differs from the nearest complete partition's in a way the table's
    ``schema_change`` policy refuses (or that breaks readers of the folder): nothing was published."""


class TargetError(TransientError):
    """The target could not be reached or written this time."""


class SourceStalled(TransientError):
    """The source stopped answering (the attempt starts over)."""


class VerificationError(TransientError):
    """Exported data and source disagree (rows may still be arriving)."""


class SchemaMoved(TransientError):
    """The rows read do not fit the schema the export read from the source when it started (a key
    added to a dynamic object meanwhile): the next attempt reads the new schema."""


class LeaseHeld(TransientError):
    """Another writer holds the table's day (its lease in the bucket has not expired)."""


class LeaseLost(TransientError):
    """Another writer took over this writer's lease (it was not renewed in time): nothing is published."""


class RestoreUnreadable(TransientError):
    """A file of the partition could not be read by the target (it may be readable later)."""


def store_status(exc: BaseException) -> int | None:
    """The HTTP status an object store's SDK error carries (read without importing the SDKs):
    azure-core's ``status_code``, botocore's ``response["ResponseMetadata"]["HTTPStatusCode"]``,
    google-api-core's ``code``; None for any other exception."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(status, int):
            return status
    code = getattr(exc, "code", None)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return code
    return None


# A store that refuses the credentials or what they may do (401, 403) refuses every retry the same way
REFUSED_STATUSES = frozenset({401, 403})


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt can succeed where ``exc`` ended this one."""
    if isinstance(exc, (PermanentError, TransientError)):
        return exc.retryable
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg errors carry the server's SQLSTATE
    if isinstance(sqlstate, str) and sqlstate[:2] in PERMANENT_SQLSTATE_CLASSES:
        return False
    if store_status(exc) in REFUSED_STATUSES:
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
        raise export_error(f"{subject} failed: {cause}", retryable=is_retryable(exc)) from None
