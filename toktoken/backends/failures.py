"""What went wrong with a backend, as the GatewayError a client should see. Pure.

Two sources, two functions:

- ``translate(exc, ...)``: an exception raised by requests, urllib3 or the
  socket while talking to a backend. One ladder, in the manner of requests'
  own ``HTTPAdapter.send`` (which maps urllib3's exceptions to requests'):
  timeouts first (a connect timeout is also a ConnectionError in requests),
  then connection failures, whose reason is read off the root ``OSError``'s
  errno rather than off the message text.
- ``status_error(status, content, url)``: a backend that answered, with an
  HTTP error status; a context overflow in any server's wording becomes
  ``PromptTooLong`` carrying the numbers (see ``parse_context_overflow``).

Nothing here does I/O, so every row of both tables is a unit test
(tests/test_failures.py).
"""

from __future__ import annotations

import errno
import json
import re
import socket

import requests
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError

from ..errors import (
    ApiError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    InvalidRequest,
    Overloaded,
    PromptTooLong,
    RateLimited,
)

# errno -> the few words a person needs (the rest is "connection failed").
# Python raises the errno's own subclass (ConnectionRefusedError, ...), but
# http.client's RemoteDisconnected is a ConnectionResetError without an errno.
_REASONS = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError | ConnectionAbortedError | BrokenPipeError, "connection reset"),
    (socket.gaierror, "host name not found"),
    (TimeoutError | ReadTimeoutError | ConnectTimeoutError, "timed out"),
)
_ERRNO_REASONS = {
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def translate(
    exc: BaseException,
    url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    streaming: bool = False,
) -> GatewayError:
    """The GatewayError for an exception raised while talking to the backend
    at ``url``. ``streaming``: the failure came after the response started
    (a silent or cut stream), not while sending the request."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, requests.exceptions.ConnectTimeout | ConnectTimeoutError):
        return _fault(
            BackendTimeout(
                f"backend {url} did not accept a connection within {connect_timeout:g}s"
            ),
            "connect timeout",
            failover=True,
            unreachable=True,
        )
    if isinstance(exc, requests.exceptions.Timeout | ReadTimeoutError | TimeoutError):
        if streaming:
            return BackendTimeout(
                f"backend {url} went silent for more than {read_timeout:g}s mid-stream"
            )
        return BackendTimeout(f"backend {url} did not answer within {read_timeout:g}s")
    if streaming:
        # Whatever urllib3/http.client raise mid-body (a reset, a chunk cut
        # short, a protocol error): the stream was broken off.
        why = reason(exc)
        return _fault(BackendUnavailable(f"backend {url} broke the stream ({why})"), why)
    if isinstance(exc, requests.exceptions.ConnectionError | HTTPError | OSError):
        why = reason(exc)
        return _fault(
            BackendUnavailable(f"backend {url} is unreachable ({why})"),
            why,
            failover=True,
            unreachable=True,
        )
    return _fault(BackendUnavailable(f"backend {url} failed: {type(exc).__name__}"), "failed")


def _fault(
    error: GatewayError, fault: str, *, failover: bool = False, unreachable: bool = False
) -> GatewayError:
    """Mark what ``error`` says of the replica (see GatewayError.replica_fault)."""
    error.replica_fault = fault
    error.failover = failover
    error.unreachable = unreachable
    return error


def reason(exc: BaseException) -> str:
    """ "connection refused", "host name not found", ...: why a connection
    failed, from the root cause requests and urllib3 wrap it in."""
    root = _root_cause(exc)
    for kinds, words in _REASONS:
        if isinstance(root, kinds):
            return words
    return _ERRNO_REASONS.get(getattr(root, "errno", None), "connection failed")


def _root_cause(exc: BaseException) -> BaseException:
    """Follow requests' and urllib3's wrapping — ``reason`` (MaxRetryError),
    an exception among ``args`` (ConnectionError, ProtocolError), then
    ``__cause__`` / ``__context__`` — to the innermost exception."""
    seen = exc
    for _ in range(8):  # the deepest real chain is four levels
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException):
            inner = next((a for a in seen.args if isinstance(a, BaseException)), None)
        if inner is None:
            inner = seen.__cause__ or seen.__context__
        if inner is None or inner is seen:
            return seen
        seen = inner
    return seen


def status_error(status: int, content: bytes, url: str) -> GatewayError:
    """Map a backend's HTTP error answer to the error our client should see."""
    detail = error_message(content)
    where = f"backend {url} returned {status}"
    if status in (400, 413, 422):
        overflow = parse_context_overflow(detail, content)
        if overflow is not None:
            return PromptTooLong(*overflow)
    if status == 429:
        return RateLimited(f"{where}: {detail}")
    if status in (503, 529):
        return _fault(Overloaded(f"{where} (overloaded): {detail}"), str(status), failover=True)
    if status in (400, 422):
        # The backend refused this request: its own words say why.
        return InvalidRequest(detail or where)
    if 400 <= status < 500:
        return InvalidRequest(f"{where}: {detail}" if detail else where)
    if status == 504:
        return _fault(BackendTimeout(f"{where}: {detail}"), "504")
    if status >= 500:
        return _fault(BackendUnavailable(f"{where}: {detail}"), str(status), failover=status == 502)
    return BackendUnavailable(f"{where}: {detail}")


def not_json(content: bytes, url: str) -> ApiError:
    text = content[:200].decode("utf-8", "replace")
    error = ApiError(f"backend {url} returned a non-JSON response: {text!r}")
    return _fault(error, "not JSON")


def error_message(content: bytes) -> str:
    """The human part of a backend's error body, whatever its dialect."""
    text = content.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:2000]
        if isinstance(err, str):
            return err[:2000]
        for key in ("message", "detail"):
            if body.get(key):
                value = body[key]
                return (value if isinstance(value, str) else json.dumps(value))[:2000]
    return text[:500]


_OVERFLOW_MARKERS = (
    "maximum context length",
    "context length",
    "exceeds the available context size",
    "context window",
    "too many tokens",
)
_CONTEXT_RE = re.compile(r"maximum context length is (\d+)")
_PROMPT_RES = (
    re.compile(r"\((\d+) in the messages"),  # OpenAI / llama-cpp-python / older vLLM
    re.compile(r"prompt contains at least (\d+) input tokens"),  # newer vLLM
    re.compile(r"your prompt \(?(\d+) tokens"),
    re.compile(r"has (\d+) input tokens"),
    re.compile(r"requested (\d+) tokens"),  # the total: prompt + completion
)


def parse_context_overflow(message: str, content: bytes) -> tuple[int | None, int | None] | None:
    """(prompt_tokens, context) when a backend's error says the prompt does not
    fit its context window, in any of the wordings of vLLM, OpenAI,
    llama.cpp server and llama-cpp-python; None for other errors."""
    lowered = message.lower()
    if not any(marker in lowered for marker in _OVERFLOW_MARKERS):
        return None
    context = prompt = None
    match = _CONTEXT_RE.search(message)
    if match:
        context = int(match.group(1))
    for pattern in _PROMPT_RES:
        match = pattern.search(message)
        if match:
            prompt = int(match.group(1))
            break
    try:  # llama.cpp server: {"error": {"n_prompt_tokens": N, "n_ctx": M, ...}}
        err = json.loads(content).get("error", {})
        prompt = int(err.get("n_prompt_tokens") or 0) or prompt
        context = int(err.get("n_ctx") or 0) or context
    except (ValueError, AttributeError, TypeError):
        pass
    return prompt, context
