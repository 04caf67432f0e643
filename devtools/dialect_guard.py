"""A CrateDB dialect guard for the local tests: a PostgreSQL wire-protocol proxy on 127.0.0.1.

No CrateDB server runs on our machines, so the end-to-end tests talk to PostgreSQL. PostgreSQL
accepts much that CrateDB refuses (``ROLLBACK``, ``SAVEPOINT``, ``COPY ... TO STDOUT``,
``LISTEN``, PostgreSQL-only syntax). The guard sits between the product and the local PostgreSQL,
reads every statement the client sends (simple ``Query`` and extended ``Parse`` messages), parses
it with ``cratedb-sqlparse`` (CrateDB's own ANTLR grammar) and refuses what CrateDB's grammar
rejects or CrateDB does not support (:data:`UNSUPPORTED`, see docs/cratedb.md). A refused
statement never reaches PostgreSQL: the client gets an ``ErrorResponse`` with SQLSTATE ``0A000``
(feature not supported) and the reason, in the place of that statement's result, exactly as a
server error would arrive, and the connection stays usable.

Everything else is forwarded byte for byte. :attr:`DialectGuard.seen` lists every statement,
:attr:`DialectGuard.refused` the refused ones with the reason, so a test can assert both.

How a refusal keeps the protocol in order: the refused message and everything after it up to the
next ``Sync`` are dropped (what a server does after an error in the extended protocol); a ``Sync``
is forwarded in their place (for a refused simple query too), so PostgreSQL answers with the one
``ReadyForQuery`` the client waits for, and the guard puts its ``ErrorResponse`` right before it.
Every ``Query`` and ``Sync`` forwarded is answered by exactly one ``ReadyForQuery``, so a queue of
"error or nothing" per forwarded message keeps each error with the right one.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field

from devtools.faults import _Listener

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
# Statements CrateDB's grammar parses but CrateDB cannot run (docs/cratedb.md): it has no COPY to
# or from the client, no transactions to roll back, no notifications.
UNSUPPORTED = [
    (re.compile(r"^\s*COPY\b.*\b(TO\s+STDOUT|FROM\s+STDIN)\b", re.I | re.S), "COPY ... TO STDOUT / FROM STDIN"),
    (re.compile(r"^\s*(ROLLBACK|ABORT|SAVEPOINT|RELEASE)\b", re.I), "transaction control other than BEGIN/COMMIT"),
    (re.compile(r"^\s*(LISTEN|UNLISTEN|NOTIFY)\b", re.I), "notifications"),
]


# CrateDB types an untyped parameter (OID 0) as one text value (seen on 5.10.16 and 6.4.3): a list of
# URIs for COPY FROM sent so arrives as the single string '{s3://a,s3://b}' and fails. It must be
# sent typed, as text[] (OID 1009) or text (25).
COPY_FROM_PARAMETER = re.compile(r"^\s*COPY\b.*?\bFROM\s+\$(\d+)", re.I | re.S)
UNTYPED = 0


def refusal(statement: str, parameter_types: tuple[int, ...] | None = None) -> str | None:
    """Why CrateDB would refuse ``statement`` (None: it would take it). ``parameter_types``: the
    OIDs a Parse message declared (None: a simple query, no parameters)."""
    from cratedb_sqlparse import sqlparse

    for pattern, what in UNSUPPORTED:
        if pattern.search(statement):
            return f"CrateDB does not support {what}"
    copy_from = COPY_FROM_PARAMETER.search(statement)
    if copy_from and parameter_types is not None:
        index = int(copy_from.group(1)) - 1
        oid = parameter_types[index] if index < len(parameter_types) else UNTYPED
        if oid == UNTYPED:
            return (
                f"CrateDB reads the untyped parameter ${index + 1} of COPY ... FROM as one string: send the "
                "URIs typed, as text[] (OID 1009)"
            )
    try:
        sqlparse(statement, raise_exception=True)
    except Exception as exc:  # cratedb_sqlparse.ParsingException
        return f"not CrateDB SQL: {str(exc).splitlines()[0][:300]}"
    return None


def error_response(message: str) -> bytes:
    fields = b"".join(
        code + text.encode() + b"\0"
        for code, text in ((b"S", "ERROR"), (b"V", "ERROR"), (b"C", "0A000"), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


SYNC = b"S" + struct.pack("!I", 4)


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One typed protocol message: (type, whole message bytes)."""
    head = _read_exactly(sock, 5)
    (length,) = struct.unpack("!I", head[1:])
    return head[:1], head + _read_exactly(sock, length - 4)


@dataclass
class _Session:
    client: socket.socket
    upstream: socket.socket
    # one entry per forwarded Query/Sync (and the startup), in order: the error to put before its
    # ReadyForQuery, or None
    pending: deque[str | None] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DialectGuard(_Listener):
    """``DialectGuard(upstream_port).start()``; connect to ``127.0.0.1:<port>`` instead."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.seen: list[str] = []
        self.parameter_types: list[tuple[str, tuple[int, ...]]] = []  # (statement, OIDs) of each Parse
        self.refused: list[tuple[str, str]] = []

    def route(self, url: str) -> str:
        """``url`` (a libpq URL of the upstream server) through the guard."""
        return re.sub(r"@[^/@]+/", f"@127.0.0.1:{self.port}/", url, count=1)

    def reset(self) -> None:
        self.seen.clear()
        self.parameter_types.clear()
        self.refused.clear()

    def handle(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True, name="dialect-guard").start()

    def _check(self, statement: str, parameter_types: tuple[int, ...] | None = None) -> str | None:
        self.seen.append(statement)
        if parameter_types is not None:
            self.parameter_types.append((statement, parameter_types))
        reason = refusal(statement, parameter_types)
        if reason is not None:
            self.refused.append((statement, reason))
        return reason

    def _serve(self, client: socket.socket) -> None:
        try:
            startup = self._startup(client)
            if startup is None:
                client.close()
                return
            upstream = socket.create_connection(self.upstream, timeout=30)
            upstream.settimeout(None)
            self._open.append(upstream)
            session = _Session(client, upstream)
            session.pending.append(None)  # the ReadyForQuery that ends the startup
            upstream.sendall(startup)
            threading.Thread(target=self._to_client, args=(session,), daemon=True).start()
            self._to_server(session)
        except (ConnectionError, OSError):
            pass
        finally:
            for sock in (client,):
                try:
                    sock.close()
                except OSError:
                    pass

    def _startup(self, client: socket.socket) -> bytes | None:
        """Answer SSL/GSS requests with 'N' (plain text on loopback); return the startup packet."""
        while True:
            (length,) = struct.unpack("!I", _read_exactly(client, 4))
            body = _read_exactly(client, length - 4)
            (code,) = struct.unpack("!I", body[:4])
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                client.sendall(b"N")
                continue
            if code == CANCEL_REQUEST:
                with socket.create_connection(self.upstream, timeout=10) as cancel:
                    cancel.sendall(struct.pack("!I", length) + body)
                return None
            return struct.pack("!I", length) + body

    def _to_server(self, s: _Session) -> None:
        discarding = False  # after a refused Parse: drop messages until the next Sync
        error: str | None = None
        while True:
            kind, message = _read_message(s.client)
            if kind == b"X":  # Terminate
                s.upstream.sendall(message)
                return
            if discarding:
                if kind == b"S":
                    self._forward_sync(s, error)
                    discarding, error = False, None
                continue
            if kind == b"Q":
                statement = message[5:-1].decode("utf-8", "replace")
                reason = self._check(statement)
                if reason is not None:
                    self._forward_sync(s, f"{reason} (statement: {statement[:200]})")
                    continue
                with s.lock:
                    s.pending.append(None)
                s.upstream.sendall(message)
                continue
            if kind == b"P":
                body = message[5:]
                name_end = body.index(b"\0")
                query_end = body.index(b"\0", name_end + 1)
                statement = body[name_end + 1 : query_end].decode("utf-8", "replace")
                (count,) = struct.unpack("!h", body[query_end + 1 : query_end + 3])
                types = struct.unpack(f"!{count}I", body[query_end + 3 : query_end + 3 + 4 * count])
                reason = self._check(statement, types)
                if reason is not None:
                    discarding, error = True, f"{reason} (statement: {statement[:200]})"
                    continue
            if kind == b"S":
                with s.lock:
                    s.pending.append(None)
            s.upstream.sendall(message)

    @staticmethod
    def _forward_sync(s: _Session, error: str | None) -> None:
        with s.lock:
            s.pending.append(error)
        s.upstream.sendall(SYNC)

    @staticmethod
    def _to_client(s: _Session) -> None:
        try:
            while True:
                kind, message = _read_message(s.upstream)
                if kind == b"Z":
                    with s.lock:
                        error = s.pending.popleft() if s.pending else None
                    if error is not None:
                        s.client.sendall(error_response(error))
                        status = message[5:6]
                        message = message[:5] + (b"E" if status == b"T" else status)
                s.client.sendall(message)
        except (ConnectionError, OSError):
            try:
                s.client.close()
            except OSError:
                pass
