"""The gunicorn worker Toktoken runs (``worker_class`` in gunicorn.conf.py):
gunicorn's gevent worker, with two things a gateway needs that it lacks.

**A prompt graceful stop.** At SIGTERM (and for the old workers of a SIGHUP
reload) gunicorn's gevent worker stops accepting, then waits for every
connection's handler — including the idle keep-alive ones every SDK, Claude
Code and nginx keep open — until ``graceful_timeout`` (120 s here, 300 s in
the Kubernetes manifest), although nothing is in flight. Here idle
connections are closed at once, a connection whose request is in flight is
closed as soon as that response (a stream included) is complete, and the
worker exits as soon as the last one ends, checked every 50 ms.

**Its own errors in JSON.** A request gunicorn cannot parse (a request line
over ``limit_request_line``: 414, a header block over the limits: 431, a
malformed Content-Length: 400) is answered by gunicorn itself, with an HTML
page. Here the body is the API's error shape (OpenAI's on /v1/chat/, else
Anthropic's), built by errors.py like every other error, with the status and
message gunicorn chose.
"""

from __future__ import annotations

import socket
import time
from functools import partial

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn import util
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from . import jsonio
from .errors import GatewayError, error_for_status

# How often a stopping worker looks whether its last connection has ended.
_STOP_POLL = 0.05


class Worker(GeventWorker):
    def init_process(self) -> None:
        self._busy: dict[socket.socket, bool] = {}  # each open connection: a request in flight?
        self._stopping = Event()
        self._error_paths: dict[socket.socket, str] = {}
        util.write_error = self._write_error  # gunicorn's error page, in this worker process
        super().init_process()

    # Lifecycle ----------------------------------------------------------------

    def run(self) -> None:
        servers = []
        tls = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        for listener in self.sockets:
            listener.setblocking(1)
            server = StreamServer(
                listener,
                handle=partial(self.handle, listener),
                spawn=Pool(self.worker_connections),
                **tls,
            )
            if self.cfg.workers > 1:
                server.max_accept = 1  # spread new connections over the workers
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            self._stopping.wait(1.0)
        for server in servers:
            server.close()  # stop accepting
        self._close_idle()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while any(server.pool.free_count() != server.pool.size for server in servers):
            if time.monotonic() > deadline:
                self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                for server in servers:
                    server.stop(timeout=1)
                return
            self.notify()
            gevent.sleep(_STOP_POLL)

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)  # alive = False
        gevent.spawn(self._stopping.set)

    def _close_idle(self) -> None:
        """Wake every connection that waits for its next request: its reader
        sees the end of the stream and the handler ends."""
        for conn, busy in list(self._busy.items()):
            if not busy:
                try:
                    # The operating system's shutdown, not gevent's: gevent's
                    # cancels the waiting read with EBADF ("closed in another
                    # greenlet"), which gunicorn logs as a socket error; the
                    # plain one lets that read end cleanly with EOF.
                    getattr(conn, "_sock", conn).shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # Connections ----------------------------------------------------------------

    def handle(self, listener, client, addr) -> None:
        self._busy[client] = False
        try:
            super().handle(listener, client, addr)
        finally:
            self._busy.pop(client, None)
            self._error_paths.pop(client, None)

    def handle_request(self, listener_name, req, sock, addr):
        self._busy[sock] = True
        try:
            result = super().handle_request(listener_name, req, sock, addr)
        finally:
            if sock in self._busy:
                self._busy[sock] = False
        if not self.alive:
            raise StopIteration()  # stopping: no next request on this connection
        return result

    # gunicorn's own errors, in JSON ------------------------------------------------

    def handle_error(self, req, client, addr, exc) -> None:
        self._error_paths[client] = _request_path(req, exc)
        super().handle_error(req, client, addr, exc)

    def _write_error(self, sock, status_int: int, reason: str, mesg: str) -> None:
        path = self._error_paths.pop(sock, "")
        err: GatewayError = error_for_status(status_int, mesg or reason)
        if path.startswith("/v1/chat/"):
            body, status = err.openai_body(), err.openai_status
        else:
            body, status = err.anthropic_body(), status_int
        data = jsonio.dumps(body)
        head = (
            f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nx-should-retry: false\r\n\r\n"
        )
        util.write_nonblock(sock, head.encode("latin-1") + data)
        _linger(sock)


def _linger(sock, limit: int = 256 * 1024, seconds: float = 0.5) -> None:
    """Read what is left of a refused request (a header block over the limit
    is still arriving) before gunicorn closes the socket: closing with unread
    bytes makes the kernel reset the connection, and the client then loses
    the answer it was sent. Bounded, like nginx's lingering close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(seconds)
        deadline = time.monotonic() + seconds
        while limit > 0 and time.monotonic() < deadline:
            data = sock.recv(min(limit, 65536))
            if not data:
                return
            limit -= len(data)
    except OSError:
        pass


def _request_path(req, exc: BaseException) -> str:
    """The path of the request that failed, when gunicorn got as far as its
    request line: from the request, or from the parser's frame (a header
    error is raised while the request object is still being built)."""
    path = getattr(req, "path", None) or getattr(getattr(exc, "req", None), "path", None)
    if isinstance(path, str):
        return path
    tb = exc.__traceback__
    while tb is not None:
        candidate = getattr(tb.tb_frame.f_locals.get("self"), "path", None)
        if isinstance(candidate, str):
            return candidate
        tb = tb.tb_next
    return ""
