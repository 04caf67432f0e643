"""Servers that misbehave for real, on 127.0.0.1, for the fault tests:

- :class:`FreezingProxy`: a TCP proxy in front of a real server that stops forwarding (both
  directions, every connection) once it has carried a given number of bytes from the server, as a
  database that stalls mid-read or a network path that goes dead; :meth:`thaw` resumes;
- :class:`BlackHole`: accepts TCP connections and never answers;
- :class:`NotS3`: an HTTP server that answers everything with one status and an HTML page.

Each runs in daemon threads of the calling process; :meth:`stop` closes its listening socket.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Listener:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()

    def start(self) -> Any:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._stopped.is_set():  # accepted as stop() ran: refused like every later one
                conn.close()
                return
            self._open.append(conn)
            self.handle(conn)

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop listening and end every connection: the peers see them closed at once (a shutdown
        first, as a plain close leaves a connection open while a thread still waits on it)."""
        self._stopped.set()
        try:  # wakes the thread blocked in accept() (a close alone leaves it accepting one more)
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        for conn in self._open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass


class BlackHole(_Listener):
    """Accepts connections, reads nothing, answers nothing."""

    def handle(self, conn: socket.socket) -> None:
        pass  # kept open (in self._open) until stop()


class FreezingProxy(_Listener):
    """Forwards to ``target_port`` on 127.0.0.1 until ``freeze_after`` bytes came back from the
    server (None: never), then holds every byte in both directions until :meth:`thaw`."""

    def __init__(self, target_port: int, freeze_after: int | None = None) -> None:
        super().__init__()
        self.target_port = target_port
        self.freeze_after = freeze_after
        self.from_server = 0
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self.frozen = threading.Event()

    def handle(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        self._open.append(upstream)
        threading.Thread(target=self._pump, args=(conn, upstream, False), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, conn, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                if from_server:
                    with self._lock:
                        self.from_server += len(data)
                        if self.freeze_after is not None and self.from_server >= self.freeze_after:
                            self.freeze_after = None
                            self._flowing.clear()
                            self.frozen.set()
                    self._flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for side in (source, sink):
                try:
                    side.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def thaw(self) -> None:
        self._flowing.set()


class NotS3(_Listener):
    """An HTTP server that is not S3: every request gets ``status`` and an HTML page."""

    def __init__(self, status: int = 404) -> None:
        super().__init__()
        self._sock.close()
        answer = status

        class Page(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                body = b"<html><body><h1>Not here</h1></body></html>"
                self.send_response(answer)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = _reply

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.port = int(self._server.server_address[1])

    def start(self) -> NotS3:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
