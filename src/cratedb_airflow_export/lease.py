"""One writer per table and day, whatever starts it: a lease in the bucket.

Before an export, a restore or the publish of a sliced export touches a table's day, it creates
``_cratedb_export_leases/<partition>.json`` with the store's conditional write (S3: ``If-None-Match: *``;
only one of two writers can create it), holding who holds it (the attempt, or the run for the tasks of a
sliced export, the host and process) and until when. The holder renews it while it works (a
conditional overwrite, if the object is still at the version it wrote), checks it still holds it right before it
publishes, and deletes it at the end. A second writer meets the lease and waits for it, at most
the lease's duration (the holder finishing, or a killed holder's lease expiring), then fails with
:class:`~cratedb_airflow_export.errors.LeaseHeld` naming the holder (a transient failure: Airflow
retries it later). A lease not renewed past its expiry (a writer killed) is taken over, again by a
conditional overwrite, so that of two writers taking over only one wins.

Holding the lease is what makes it safe to sweep the day's whole staging folder: what is in it
belongs to attempts that no longer hold the lease. The leases folder is at the bucket root, outside
every table folder and '_'-prefixed, so Hive readers never list it; configuration refuses targets
inside it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from cratedb_airflow_export.errors import LeaseHeld, LeaseLost
from cratedb_airflow_export.storage import LEASE_ROOT, Location

if TYPE_CHECKING:
    from cratedb_airflow_export.storage import Store

log = logging.getLogger(__name__)

LEASE_SECONDS_ENV = "CRATEDB_EXPORT_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 120  # a writer killed holds the day this long at most; renewed every third of it
POLL_SECONDS = 2.0  # how often a waiting writer looks at the lease again


def lease_seconds() -> int:
    """How long a lease lasts unless renewed (``CRATEDB_EXPORT_LEASE_SECONDS``, 10 to 86,400; default 120),
    and how long a second writer waits for it."""
    value = os.environ.get(LEASE_SECONDS_ENV)
    if not value:
        return DEFAULT_LEASE_SECONDS
    if not value.isdigit() or not 10 <= int(value) <= 86_400:
        raise ValueError(f"{LEASE_SECONDS_ENV}={value!r}: a number of seconds from 10 to 86400")
    return int(value)


def lease_key(partition: Location) -> Location:
    """Where the lease of ``partition`` lives: ``_cratedb_export_leases/<partition prefix>.json``."""
    return partition.at(f"{LEASE_ROOT}/{partition.prefix}.json")


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Lease:
    """A lease this process holds for ``holder`` (``tag``: the version of the lease object as this
    process last wrote it)."""

    store: Store
    key: Location
    holder: str
    what: str
    seconds: int
    tag: str = ""

    def _body(self) -> bytes:
        now = _now()
        return json.dumps(
            {
                "holder": self.holder,
                "what": self.what,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "renewed_at": now.isoformat(),
                "expires_at": (now + timedelta(seconds=self.seconds)).isoformat(),
            }
        ).encode()

    def _put(self, tag: str | None = None) -> bool:
        """Create the lease (``tag`` None: only if there is none) or overwrite it (only if it is still
        at version ``tag``); False when that condition fails."""
        body, bucket, key = self._body(), self.key.bucket, self.key.prefix
        if tag is None:
            written = self.store.create(bucket, key, body, "application/json")
        else:
            written = self.store.replace_if(bucket, key, body, tag, "application/json")
        if written is None:
            return False
        self.tag = written
        return True

    def _current(self) -> tuple[dict[str, Any], str] | None:
        """The lease object as stored, with its version tag; None when there is none."""
        found = self.store.fetch(self.key.bucket, self.key.prefix)
        if found is None:
            return None
        try:
            content = json.loads(found[0])
        except ValueError:
            content = {}  # unreadable: treated as expired
        return (content if isinstance(content, dict) else {}), found[1]

    def acquire(self, wait: float) -> None:
        """Create the lease, or take it over where it expired (or is already this holder's). While
        another writer holds it, wait up to ``wait`` seconds for it to finish (or its lease to
        expire), then raise :class:`LeaseHeld` naming that writer."""
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            if self._put():
                return
            found = self._current()
            if found is None:
                continue  # released between the write and the read
            content, tag = found
            expires = _parse_time(content.get("expires_at"))
            if content.get("holder") == self.holder or expires is None or expires <= _now():
                if content.get("holder") != self.holder:
                    log.warning("taking over the expired lease %s of %s", self.key.uri, describe(content))
                if self._put(tag):
                    return
                continue  # another writer took it over first: look again
            left = deadline - time.monotonic()
            if left <= 0:
                raise LeaseHeld(
                    f"another writer is at work on this table's day: {describe(content)}; its lease "
                    f"{self.key.uri} expires at {content.get('expires_at')} unless it is renewed"
                )
            if not waiting:
                log.warning("waiting up to %d s for %s to finish (its lease %s)", wait, describe(content), self.key.uri)
                waiting = True
            time.sleep(min(POLL_SECONDS, left))

    def _mine(self) -> tuple[dict[str, Any], str] | None:
        """The lease as stored, when it is this holder's (the slice tasks of one run share a holder,
        and each renewal changes the version tag)."""
        found = self._current()
        return found if found is not None and found[0].get("holder") == self.holder else None

    def renew(self) -> None:
        """Extend the lease; :class:`LeaseLost` when another writer took it over meanwhile."""
        for _ in range(3):
            if self._put(self.tag):
                return
            mine = self._mine()
            if mine is None:
                break
            self.tag = mine[1]  # renewed by another task of the same holder: renew from there
        raise LeaseLost(f"{self.what} lost its lease {self.key.uri} to another writer")

    def check(self) -> None:
        """Whether this holder still holds the lease (right before it publishes)."""
        if self._mine() is None:
            found = self._current()
            holder = describe(found[0]) if found else "nobody"
            raise LeaseLost(f"{self.what} no longer holds its lease {self.key.uri} (held by {holder}): not published")

    def release(self) -> None:
        """Delete the lease if this holder still holds it; best effort (it expires anyway)."""
        try:
            if self._mine() is not None:
                self.store.delete(self.key.bucket, [self.key.prefix])
        except Exception as exc:  # the lease expires by itself
            log.warning("could not release the lease %s: %s", self.key.uri, type(exc).__name__)


def describe(content: dict[str, Any]) -> str:
    """``export of doc.metrics for ... (holder manual-try0-1a2b3c4d, host worker-1, pid 4242)``."""
    return (
        f"{content.get('what', 'a writer')} (holder {content.get('holder')}, host {content.get('host')}, "
        f"pid {content.get('pid')})"
    )


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


@contextmanager
def held(
    store: Store,
    partition: Location,
    holder: str,
    what: str,
    *,
    release: bool = True,
    seconds: int | None = None,
) -> Iterator[Lease]:
    """Hold the lease of ``partition`` for ``holder`` while the block runs, renewed every third of
    its duration on a thread of its own. ``release=False`` leaves it to expire or to a later holder
    of the same name (the slice tasks of a sliced export leave it to their publish task)."""
    lease = Lease(store, lease_key(partition), holder, what, seconds or lease_seconds())
    lease.acquire(wait=lease.seconds)
    log.info("holding the lease %s for %s", lease.key.uri, what)
    stop = threading.Event()
    lost: list[BaseException] = []

    def keep() -> None:
        while not stop.wait(lease.seconds / 3):
            try:
                lease.renew()
            except BaseException as exc:
                lost.append(exc)
                return

    renewer = threading.Thread(target=keep, name="lease", daemon=True)
    renewer.start()
    try:
        yield lease
        if lost:
            raise lost[0]
    finally:
        stop.set()
        renewer.join(timeout=30)
        if release:
            lease.release()
