"""The requests transport adapter every BackendClient sends through.

A gateway sends thousands of requests a second to the same one or two
backends, so the per-call work requests' stock ``HTTPAdapter`` does for a
general-purpose client costs more than everything else we do (measured in
docs/performance.md). ``BackendAdapter`` is an ``HTTPAdapter`` — requests'
documented extension point — that skips what a gateway never needs:

- the connection pool is looked up once per (origin, TLS settings, proxy), not
  rebuilt from a fresh pool key on every call (the stock lookup normalises the
  key and checks the CA path on disk each time), and the request target once
  per URL (the stock one parses the URL three times per call);
- a pooled keep-alive connection is checked for a hang-up with one
  non-blocking ``poll()`` system call: urllib3 uses ``select.poll``, which under
  gevent is the cooperative poll (a timer, watchers, a hub switch) even with a
  zero timeout;
- a request's header block and body leave in one ``send()`` (http.client
  writes them separately: two system calls and two cooperative writes), and
  without gevent's ``sendall``, which asks the kernel for the socket's buffer
  size on every call;
- responses carry no cookie jar filled from the backend's Set-Cookie headers
  (a gateway never sends backend cookies anywhere).

Everything else — timeouts, TLS, proxies, retries off, requests' exception
types — is requests' own code.
"""

from __future__ import annotations

import select

from requests.adapters import HTTPAdapter
from requests.models import Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

try:  # the operating system's poll(), even when gevent has patched select
    from gevent.monkey import get_original

    _poll = get_original("select", "poll")
except ImportError:  # pragma: no cover - gevent is a dependency
    _poll = select.poll


def _peer_hung_up(sock) -> bool:
    """An idle pooled connection that is readable has been closed by the peer
    (or holds stray bytes): either way it must not be reused."""
    fd = sock.fileno()
    if fd < 0:
        return True
    poller = _poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _send_all(sock, data: bytes) -> None:
    """socket.sendall without gevent's per-call SO_SNDBUF lookup (a system
    call, for a PyPy workaround): send() until everything is out."""
    view = memoryview(data)
    while view:
        view = view[sock.send(view) :]


class _GatewayConnection:
    """Mixed into urllib3's connection classes."""

    _hold_headers = False
    _held: bytes | None = None

    @property
    def is_connected(self) -> bool:
        return self.sock is not None and not _peer_hung_up(self.sock)

    def request(self, method, url, body=None, headers=None, **kwargs) -> None:
        # Hold the header block back and send it with the first body chunk.
        self._hold_headers = body is not None
        try:
            super().request(method, url, body, headers, **kwargs)
            if self._held is not None:  # the body was empty
                super().send(self._held)
        finally:
            self._hold_headers, self._held = False, None

    def send(self, data) -> None:
        if self._hold_headers:
            if self._held is None:  # http.client's first send: the header block
                self._held = data
                return
            if isinstance(data, bytes | bytearray | memoryview):
                data, self._held, self._hold_headers = self._held + data, None, False
            else:  # a file-like body: leave it to http.client
                super().send(self._held)
                self._held, self._hold_headers = None, False
        if self.sock is not None and isinstance(data, bytes):
            _send_all(self.sock, data)
        else:  # not connected yet, or not bytes: http.client knows what to do
            super().send(data)


class _Connection(_GatewayConnection, HTTPConnection):
    pass


class _HTTPSConnection(_GatewayConnection, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class BackendAdapter(HTTPAdapter):
    """``HTTPAdapter`` with a remembered pool, a cheap liveness check and no
    cookie extraction (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        self._pools: dict[tuple, HTTPConnectionPool] = {}
        self._targets: dict[tuple, str] = {}
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _HTTPSPool}

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        origin = "/".join(request.url.split("/", 3)[:3])  # scheme://host:port
        key = (origin, str(verify), str(cert), tuple(sorted(proxies.items())) if proxies else ())
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # new, or closed (evicted, adapter closed)
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            if len(self._pools) >= 32:  # a client that varies its TLS/proxy settings
                self._pools.clear()
            self._pools[key] = pool
        return pool

    def request_url(self, request, proxies) -> str:
        key = (request.url, tuple(sorted(proxies.items())) if proxies else ())
        target = self._targets.get(key)
        if target is None:
            target = super().request_url(request, proxies)
            if len(self._targets) < 256:  # a backend has a handful of paths
                self._targets[key] = target
        return target

    def build_response(self, req, resp) -> Response:
        response = Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url.decode("utf-8") if isinstance(req.url, bytes) else req.url
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()
