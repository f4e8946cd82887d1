"""BackendAdapter (toktoken/transport.py) against a raw-socket HTTP server:
keep-alive reuse, a backend that hangs up idle connections, cookies, and a
closed adapter."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from toktoken.backends import BackendClient
from toktoken.config import BackendSettings
from toktoken.convert import completion_as_chunks
from toktoken.errors import BackendUnavailable

REPLY = json.dumps({"ok": True}).encode()


class RawServer:
    """HTTP/1.1 on 127.0.0.1 that answers every request with a small JSON body
    and a Set-Cookie header; with ``hang_up`` it closes each connection right
    after answering, without saying so (as an idle timeout would)."""

    def __init__(self, *, hang_up: bool, sse: str | None = None) -> None:
        self.hang_up = hang_up
        self.sse = sse  # None: JSON; "ends": an SSE stream; "no-end": [DONE], then nothing
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head)
                buffer = rest[length:]
                if self.sse == "cut-body":  # not SSE: a JSON body cut short
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n" + REPLY)  # fmt: skip
                    return
                if self.sse:
                    self._send_sse(conn)
                    if self.sse == "no-end":
                        time.sleep(5)
                        return
                    continue
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Set-Cookie: backend=secret; Path=/\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(REPLY), REPLY)
                )
                if self.hang_up:
                    return

    def _send_sse(self, conn: socket.socket) -> None:
        def chunk(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data)

        event = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + chunk(event))  # fmt: skip
        conn.sendall(chunk(b"data: [DONE]\n\n"))
        if self.sse == "ends":
            conn.sendall(b"0\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(request):
    hang_up, sse = request.param if isinstance(request.param, tuple) else (request.param, None)
    srv = RawServer(hang_up=hang_up, sse=sse)
    yield srv
    srv.close()


def client_for(server: RawServer) -> BackendClient:
    settings = BackendSettings(
        name="raw", url=f"http://127.0.0.1:{server.port}", api_key=None, model="m"
    )
    return BackendClient(settings, connect_timeout=2, read_timeout=5)


@pytest.mark.parametrize("server", [False], indirect=True)
def test_keep_alive_connection_is_reused(server):
    client = client_for(server)
    for _ in range(5):
        assert client.post("/v1/chat/completions", {"n": 1}) == {"ok": True}
    assert server.connections == 1


@pytest.mark.parametrize("server", [True], indirect=True)
def test_connection_the_backend_hung_up_is_not_reused(server):
    """No retries are configured (a POST is never resent), so reusing a
    connection the backend closed would fail the request: the liveness check
    must notice the hang-up first."""
    client = client_for(server)
    for _ in range(4):
        assert client.post("/v1/chat/completions", {"n": 1}) == {"ok": True}
        time.sleep(0.05)  # let the server's close arrive
    assert server.connections == 4


@pytest.mark.parametrize("server", [False], indirect=True)
def test_backend_cookies_are_never_sent_back(server):
    client = client_for(server)
    client.post("/v1/chat/completions", {"n": 1})
    client.post("/v1/chat/completions", {"n": 2})
    assert len(server.requests) == 2
    assert b"cookie:" not in server.requests[1].lower()
    assert not client.session.cookies


@pytest.mark.parametrize("server", [False], indirect=True)
def test_requests_work_after_the_adapter_is_closed(server):
    client = client_for(server)
    client.post("/v1/chat/completions", {"n": 1})
    client.adapter.close()
    assert client.post("/v1/chat/completions", {"n": 2}) == {"ok": True}
    assert server.connections == 2


@pytest.mark.parametrize("server", [False], indirect=True)
def test_streamed_response_releases_its_connection(server):
    client = client_for(server)
    for _ in range(3):
        upstream = client.open_stream(
            "/v1/chat/completions", {"stream": True}, json_as_events=completion_as_chunks
        )
        assert list(upstream) == [{"choices": [], "usage": None}]  # JSON replayed as a chunk
        upstream.close()
    assert len(server.requests) == 3


@pytest.mark.parametrize("server", [(False, "ends")], indirect=True)
def test_stream_that_ends_after_done_keeps_its_connection(server):
    client = client_for(server)
    for _ in range(3):
        upstream = client.open_stream("/v1/chat/completions", {"stream": True})
        assert [c["choices"][0]["delta"]["content"] for c in upstream] == ["hi"]
        upstream.close()
    assert server.connections == 1 and len(server.requests) == 3


@pytest.mark.parametrize("server", [(False, "no-end")], indirect=True)
def test_stream_that_never_ends_after_done_is_closed_promptly(server):
    client = client_for(server)
    for _ in range(2):
        upstream = client.open_stream("/v1/chat/completions", {"stream": True})
        assert len(list(upstream)) == 1
        started = time.monotonic()
        upstream.close()
        assert time.monotonic() - started < upstream.DRAIN_SECONDS + 0.5
    assert server.connections == 2


@pytest.mark.parametrize("server", [(False, "cut-body")], indirect=True)
def test_body_cut_short_is_a_clean_backend_error(server):
    client = client_for(server)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        client.post("/v1/chat/completions", {"n": 1})


@pytest.mark.parametrize("server", [False], indirect=True)
def test_request_with_an_empty_body_still_sends_its_headers(server):
    """The header block is held back to go out with the body; with no body
    bytes at all it must still be sent (else the request would hang)."""
    client = client_for(server)
    assert client.post("/v1/chat/completions", b"") == {"ok": True}
    assert b"content-length: 0" in server.requests[0].lower()
