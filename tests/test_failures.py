"""backends/failures.py: what each failure talking to a backend becomes. Pure
functions, fed real exceptions (from real sockets on 127.0.0.1) and the
error bodies real servers send."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
import requests

from toktoken.backends.failures import (
    parse_context_overflow,
    reason,
    status_error,
    translate,
)
from toktoken.errors import (
    BackendTimeout,
    BackendUnavailable,
    InvalidRequest,
    Overloaded,
    PromptTooLong,
    RateLimited,
)

from .conftest import free_port

URL = "http://gpu-box:8000"


def _serve_once(behaviour) -> int:
    """A one-connection server on 127.0.0.1 that does ``behaviour(conn)``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def run():
        conn, _ = listener.accept()
        try:
            behaviour(conn)
        finally:
            listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1]


def _raised(port: int, timeout: float = 2.0) -> BaseException:
    try:
        requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={}, timeout=timeout)
    except requests.RequestException as exc:
        return exc
    raise AssertionError("the request did not fail")


def _reset(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()  # RST


def _hang_up(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.close()  # FIN before any status line


def _silent(conn: socket.socket) -> None:
    conn.recv(65536)
    threading.Event().wait(3)


def _t(exc, **kw):
    return translate(exc, URL, connect_timeout=10, read_timeout=600, **kw)


def test_refused_connection():
    err = _t(_raised(free_port()))
    assert isinstance(err, BackendUnavailable) and err.status == 502
    assert err.message == f"backend {URL} is unreachable (connection refused)"


def test_reset_and_hang_up_before_the_status_line():
    assert reason(_raised(_serve_once(_reset))) == "connection reset"
    # http.client's RemoteDisconnected: a ConnectionResetError without an errno
    assert reason(_raised(_serve_once(_hang_up))) == "connection reset"


def test_unknown_host():
    try:
        requests.get("http://nonexistent.invalid/", timeout=5)
    except requests.RequestException as exc:
        assert _t(exc).message.endswith("is unreachable (host name not found)")


def test_read_timeout_names_the_limit():
    err = _t(_raised(_serve_once(_silent), timeout=0.3))
    assert isinstance(err, BackendTimeout) and err.status == 504
    assert err.message == f"backend {URL} did not answer within 600s"


def test_connect_timeout_is_not_a_connection_error():
    # requests' ConnectTimeout is also a ConnectionError: the ladder's order matters
    err = _t(requests.exceptions.ConnectTimeout("connect timed out"))
    assert isinstance(err, BackendTimeout)
    assert err.message == f"backend {URL} did not accept a connection within 10s"


def test_mid_stream_failures_say_the_stream_broke():
    err = _t(requests.exceptions.ChunkedEncodingError(ConnectionResetError(104, "reset")),
             streaming=True)  # fmt: skip
    assert isinstance(err, BackendUnavailable)
    assert err.message == f"backend {URL} broke the stream (connection reset)"
    silent = _t(TimeoutError(), streaming=True)
    assert silent.message == f"backend {URL} went silent for more than 600s mid-stream"


def test_gateway_errors_pass_through():
    original = RateLimited("slow down")
    assert _t(original) is original


@pytest.mark.parametrize(
    "status, body, kind, client_status, words",
    [
        (429, b'{"error": {"message": "slow down"}}', RateLimited, 429, "slow down"),
        (503, b"Service Unavailable", Overloaded, 529, "overloaded"),
        (529, b"{}", Overloaded, 529, "overloaded"),
        (400, b'{"error": {"message": "bad tool_choice"}}', InvalidRequest, 400, "bad tool_choice"),
        (422, b'{"detail": [{"msg": "field required"}]}', InvalidRequest, 400, "field required"),
        (404, b'{"detail": "Not Found"}', InvalidRequest, 400, "returned 404: Not Found"),
        (500, b"Internal Server Error", BackendUnavailable, 502, "returned 500"),
        (504, b"Gateway Timeout", BackendTimeout, 504, "returned 504"),
    ],
)  # fmt: skip
def test_status_table(status, body, kind, client_status, words):
    err = status_error(status, body, URL)
    assert type(err) is kind and err.status == client_status and words in err.message


@pytest.mark.parametrize(
    "body, numbers",
    [
        # OpenAI / llama-cpp-python / older vLLM
        (b'{"error": {"message": "This model\'s maximum context length is 2048 tokens. However, you '
         b'requested 3034 tokens (3024 in the messages, 10 in the completion)."}}', (3024, 2048)),
        # newer vLLM
        (b'{"error": {"message": "This model\'s maximum context length is 32768 tokens. However, your '
         b'request has 40000 input tokens."}}', (40000, 32768)),
        (b'{"message": "maximum context length is 4096 tokens; your prompt contains at least 5000 '
         b'input tokens"}', (5000, 4096)),
        # llama.cpp server: the numbers are fields of the error object
        (b'{"error": {"code": 400, "message": "the request exceeds the available context size, try '
         b'increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}',
         (5000, 4096)),
        (b'{"error": {"message": "too many tokens"}}', (None, None)),
    ],
)  # fmt: skip
def test_context_overflow_in_every_servers_words(body, numbers):
    err = status_error(400, body, URL)
    assert isinstance(err, PromptTooLong) and (err.prompt_tokens, err.context) == numbers
    if None not in numbers:
        assert err.message == f"prompt is too long: {numbers[0]} tokens > {numbers[1]} maximum"


def test_other_400s_are_not_overflow():
    assert parse_context_overflow("tool_choice must be auto", b"{}") is None
