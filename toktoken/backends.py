"""I/O with upstream model servers: one BackendClient per backend.

Everything that can go wrong talking to a backend becomes a typed
GatewayError here, so views never see a requests exception.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests
import sseclient
from urllib3.exceptions import HTTPError, ReadTimeoutError

from . import jsonio
from .config import BackendSettings
from .convert.quirks import quirks_for
from .errors import (
    ApiError,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
    InvalidRequest,
    Overloaded,
    PromptTooLong,
    RateLimited,
)
from .transport import BackendAdapter

log = logging.getLogger(__name__)


@dataclass
class Health:
    name: str
    url: str
    reachable: bool
    latency_ms: float | None
    detail: str | None = None
    models: list[str] | None = None

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "url": self.url,
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
        }


class UpstreamStream:
    """An open upstream SSE response. Iterate for parsed JSON chunks; always
    ``close()`` it (closing is what makes vLLM stop generating)."""

    # After ``[DONE]`` at most this much more body, read within this long, to
    # reach the end of the response and keep the connection.
    DRAIN_BYTES = 65536
    DRAIN_SECONDS = 1.0

    def __init__(self, response: requests.Response, backend: BackendClient):
        self.response = response
        self.backend = backend
        self._closed = False
        self._source: Iterator[bytes] | None = None
        self._saw_done = False

    def __iter__(self) -> Iterator[dict]:
        content_type = self.response.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            # A server that ignores stream: true (or reports an error with a
            # 200) answers with one JSON document: replay it as one chunk.
            yield from self._json_as_chunks()
            return
        self._source = _raw_chunks(self.response)
        client = sseclient.SSEClient(self._source)
        try:
            for event in client.events():
                data = event.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    self._saw_done = True
                    return
                try:
                    chunk = jsonio.loads(data)
                except ValueError:
                    log.warning("%s sent a non-JSON stream event: %.200s", self.backend.name, data)
                    continue
                yield chunk
        except requests.exceptions.ConnectionError as exc:
            if self._closed:
                return
            raise self.backend.connection_error(exc) from None
        except (requests.exceptions.Timeout, ReadTimeoutError, TimeoutError) as exc:
            raise self.backend.silence_error() from exc
        except Exception as exc:  # urllib3 protocol errors: a cut connection
            if self._closed:
                return
            raise BackendUnavailable(
                f"backend {self.backend.url} broke the stream: {type(exc).__name__}"
            ) from exc

    def _json_as_chunks(self) -> Iterator[dict]:
        try:
            body = json.loads(self.response.content)
        except (ValueError, requests.RequestException):
            return
        if not isinstance(body, dict):
            return
        if "error" in body:
            yield body
            return
        chunk = {"choices": [], "usage": body.get("usage")}
        for choice in body.get("choices") or []:
            message = dict(choice.get("message") or {})
            calls = message.get("tool_calls")
            if calls:
                message["tool_calls"] = [dict(c, index=i) for i, c in enumerate(calls)]
            chunk["choices"].append(
                {
                    "index": choice.get("index", 0),
                    "delta": message,
                    "finish_reason": choice.get("finish_reason"),
                    "stop_reason": choice.get("stop_reason"),
                }
            )
        yield chunk

    def clear_read_timeout(self) -> None:
        """Let reads wait without a timeout: for a relay that judges silence
        itself (relay.py under gevent, where a timed socket wait costs a
        timer per read)."""
        sock = self._socket()
        if sock is not None:
            sock.settimeout(None)

    def _finish_body(self) -> bool:
        """After ``[DONE]``, read the rest of the body — normally just the end
        of the chunked encoding, already received — so that urllib3 returns
        the connection to the pool and the next stream skips a new TCP
        connection. False when the end does not come soon enough."""
        sock = self._socket()
        try:
            if sock is not None:
                sock.settimeout(self.DRAIN_SECONDS)
            extra = 0
            for data in self._source or ():
                extra += len(data)
                if extra > self.DRAIN_BYTES:
                    return False
            return True
        except Exception:  # timed out, cut: close it the hard way
            return False

    def _socket(self):
        return getattr(getattr(self.response.raw, "connection", None), "sock", None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._saw_done and self._finish_body():
            self.response.close()  # the connection is back in the pool
            return
        # Shut the socket down first: that wakes a reader blocked in recv()
        # (a thread or greenlet) and tells the backend at once that nobody is
        # listening, which is what makes vLLM/llama.cpp stop generating.
        sock = self._socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.response.close()
        except RuntimeError:
            # A reader greenlet is blocked inside this response's buffered
            # reader ("reentrant call"): the shutdown above wakes it, and the
            # dead connection is discarded with it.
            pass


def _raw_chunks(response: requests.Response) -> Iterator[bytes]:
    """Yield upstream bytes as soon as they arrive.

    ``iter_content`` would block until its buffer is full on a response that is
    not chunked; reading chunk by chunk (or read1 otherwise) relays every byte
    at once, whatever the server's framing.
    """
    raw = response.raw
    if raw.chunked and raw.supports_chunked_reads():
        yield from raw.read_chunked(decode_content=True)
        return
    while True:
        data = raw.read1(65536, decode_content=True)
        if not data:
            return
        yield data


class BackendClient:
    """POSTs OpenAI-style (or Anthropic-style) requests to one backend."""

    def __init__(
        self,
        settings: BackendSettings,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        pool_size: int = 1000,
    ):
        self.settings = settings
        self.name = settings.name
        self.url = settings.url
        self.model = settings.model
        self.quirks = quirks_for(settings.model, settings.quirks)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.session = requests.Session()
        # Under gevent each in-flight request holds one connection: size the
        # pool for the worker's concurrency, and never retry a POST silently.
        self.adapter = BackendAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", self.adapter)
        self.session.mount("https://", self.adapter)
        # requests' defaults minus "Accept: */*" and "Connection: keep-alive"
        # (HTTP/1.1's default): two header lines less to format per call.
        self.session.headers = requests.structures.CaseInsensitiveDict(
            {"User-Agent": "toktoken", "Accept-Encoding": self.session.headers["Accept-Encoding"]}
        )
        # requests re-reads proxy and CA settings from the environment on every
        # call (a scan of os.environ: ~0.3 ms per request here). Read them once.
        self.session.proxies.update(requests.utils.get_environ_proxies(settings.url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self.session.verify = ca_bundle
        self.session.trust_env = False
        # A context window read off the backend's own overflow error, for
        # servers that do not report it anywhere else (llama-cpp-python).
        self.learned_context: int | None = None
        if settings.api_key:
            self.session.headers["Authorization"] = f"Bearer {settings.api_key}"
            if settings.anthropic_native:
                self.session.headers["x-api-key"] = settings.api_key
        if settings.anthropic_native:
            self.session.headers["anthropic-version"] = "2023-06-01"

    # Requests ---------------------------------------------------------------

    def post_json(self, path: str, body: dict | bytes, headers: dict | None = None) -> dict:
        """POST and return the parsed JSON answer (non-streaming)."""
        response = self._post(path, body, headers=headers)
        try:
            content = self._read_body(response)
            if response.status_code >= 300:
                raise self.status_error(response.status_code, content)
            try:
                return jsonio.loads(content)
            except ValueError:
                text = content[:200].decode("utf-8", "replace")
                raise ApiError(
                    f"backend {self.url} returned a non-JSON response: {text!r}"
                ) from None
        finally:
            response.close()

    def _read_body(self, response: requests.Response) -> bytes:
        """The whole body, read in one call on the raw response (requests'
        ``.content`` reads it in 10 KB pieces through two generators)."""
        try:
            return response.raw.read(decode_content=True)
        except (ReadTimeoutError, TimeoutError):
            raise self.read_timeout_error() from None
        except (HTTPError, OSError) as exc:  # a connection cut mid-body, a bad encoding
            raise self.connection_error(exc) from None

    def open_stream(
        self, path: str, body: dict | bytes, headers: dict | None = None
    ) -> UpstreamStream:
        """POST with ``stream: true``; errors before the first byte raise here,
        while the client can still be given a proper HTTP status."""
        response = self._post(path, body, headers=headers)
        if response.status_code >= 300:
            try:
                content = self._read_body(response)
            except GatewayError:
                content = b""
            finally:
                response.close()
            raise self.status_error(response.status_code, content)
        return UpstreamStream(response, self)

    def _post(
        self, path: str, body: dict | bytes, headers: dict | None = None
    ) -> requests.Response:
        """Send; the answer's status and headers are read, its body is not."""
        data = body if isinstance(body, bytes) else jsonio.dumps(body)
        # A ready PreparedRequest goes straight to the transport adapter: the
        # body is already bytes and the session's headers are fixed, so
        # requests' per-call preparation and settings merging (~0.2 ms) buy
        # nothing, nor do Session.send's hooks, cookie jar and redirect
        # bookkeeping (~0.04 ms; redirects are never followed for a POST).
        prepared = requests.PreparedRequest()
        prepared.method = "POST"
        prepared.url = self.url + path
        prepared.headers = requests.structures.CaseInsensitiveDict(self.session.headers)
        prepared.headers["Content-Type"] = "application/json"
        prepared.headers["Content-Length"] = str(len(data))
        if headers:
            prepared.headers.update(headers)
        prepared.body = data
        prepared.hooks = {"response": []}
        prepared._cookies = None
        try:
            return self.adapter.send(
                prepared,
                stream=True,
                timeout=(self.connect_timeout, self.read_timeout),
                proxies=self.session.proxies,
                verify=self.session.verify,
            )
        except requests.exceptions.ConnectTimeout:
            raise BackendTimeout(
                f"backend {self.url} did not accept a connection within {self.connect_timeout:g}s"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise self.read_timeout_error() from None
        except requests.exceptions.ConnectionError as exc:
            raise self.connection_error(exc) from None
        except requests.RequestException as exc:
            raise BackendUnavailable(f"backend {self.url} failed: {type(exc).__name__}") from None

    # Errors -------------------------------------------------------------------

    def read_timeout_error(self) -> BackendTimeout:
        return BackendTimeout(f"backend {self.url} did not answer within {self.read_timeout:g}s")

    def silence_error(self) -> BackendTimeout:
        """A stream that stopped sending for longer than the read timeout."""
        return BackendTimeout(
            f"backend {self.url} went silent for more than {self.read_timeout:g}s mid-stream"
        )

    def connection_error(self, exc: Exception) -> GatewayError:
        text = str(exc)
        if "Connection refused" in text:
            reason = "connection refused"
        elif "Name or service not known" in text or "nodename nor servname" in text:
            reason = "host name not found"
        elif "reset" in text.lower() or "aborted" in text.lower():
            reason = "connection reset"
        else:
            reason = "connection failed"
        return BackendUnavailable(f"backend {self.url} is unreachable ({reason})")

    def status_error(self, status: int, content: bytes) -> GatewayError:
        """Map a backend's HTTP error to the error our client should see."""
        detail = _error_message(content)
        where = f"backend {self.url} returned {status}"
        if status in (400, 413, 422):
            overflow = parse_context_overflow(detail, content)
            if overflow is not None:
                prompt_tokens, context = overflow
                if context:
                    self.learned_context = context
                return PromptTooLong(prompt_tokens, context)
        if status == 429:
            return RateLimited(f"{where}: {detail}")
        if status in (503, 529):
            return Overloaded(f"{where} (overloaded): {detail}")
        if status in (400, 422):
            # The backend refused this request: its own words say why.
            return InvalidRequest(detail or where)
        if 400 <= status < 500:
            return InvalidRequest(f"{where}: {detail}" if detail else where)
        if status == 504:
            return BackendTimeout(f"{where}: {detail}")
        return BackendUnavailable(f"{where}: {detail}")

    # Soft calls (discovery): (status, json) or (None, None) when unreachable --

    def get_json(self, path: str, timeout: float = 3.0) -> tuple[int | None, object]:
        return self._soft("GET", path, None, timeout)

    def post_json_soft(
        self, path: str, body: dict, timeout: float = 3.0
    ) -> tuple[int | None, object]:
        return self._soft("POST", path, body, timeout)

    def _soft(self, method: str, path: str, body, timeout: float):
        try:
            response = self.session.request(
                method, self.url + path, json=body, stream=True,
                timeout=(min(self.connect_timeout, timeout), timeout),
            )  # fmt: skip
        except requests.RequestException:
            return None, None
        with response:
            try:
                # Discovery answers are small: never read more than 1 MB
                # (an endpoint that streams forever must not hold us).
                data = response.raw.read(1_000_000, decode_content=True)
                return response.status_code, json.loads(data)
            except Exception:  # not JSON, cut, timed out: no answer
                return response.status_code, None

    # Token counting -------------------------------------------------------------

    def count_prompt_tokens(self, method: str, body: dict) -> int:
        """Exact prompt tokens of a chat request, by ``method`` (see
        capabilities.py). Raises GatewayError when the backend cannot say."""
        if method == "vllm-tokenize":
            request = {
                "model": body["model"],
                "messages": body["messages"],
                "add_generation_prompt": True,
            }
            for key in ("tools", "chat_template_kwargs"):
                if body.get(key):
                    request[key] = body[key]
            return int(self.post_json("/tokenize", request)["count"])
        if method == "llamacpp-template":
            template = {
                k: v for k, v in body.items() if k in ("messages", "tools", "chat_template_kwargs")
            }
            prompt = self.post_json("/apply-template", template)["prompt"]
            tokens = self.post_json("/tokenize", {"content": prompt, "add_special": True})["tokens"]
            return len(tokens)
        if method == "llamacpp-python-text":
            return int(
                self.post_json("/extras/tokenize/count", {"input": _rendered_text(body)})["count"]
            )
        if method == "probe":
            # Ask the server itself: one token of generation, read its usage.
            # Exact whatever the chat template; costs one prefill.
            probe = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
            probe["max_tokens"] = 1
            try:
                answer = self.post_json("/v1/chat/completions", probe)
            except PromptTooLong as exc:
                if exc.prompt_tokens is not None:
                    return exc.prompt_tokens
                raise
            return int(answer["usage"]["prompt_tokens"])
        raise ValueError(f"unknown token counting method {method!r}")

    # Operations -----------------------------------------------------------------

    def probe(self, timeout: float = 3.0) -> Health:
        """Is the backend there? GET /v1/models, timed.

        llama.cpp-based servers block /v1/models while generating; a read
        timeout after a successful connect therefore counts as reachable (busy).
        """
        started = time.monotonic()
        try:
            response = self.session.get(
                self.url + "/v1/models", timeout=(min(self.connect_timeout, timeout), timeout)
            )
        except requests.exceptions.ReadTimeout:
            return Health(self.name, self.url, True, _ms(started), "busy: /v1/models timed out")
        except requests.RequestException as exc:
            reason = self.connection_error(exc).message.split("(", 1)[-1].rstrip(")")
            return Health(self.name, self.url, False, None, reason)
        latency = _ms(started)
        with response:
            if response.status_code >= 400:
                return Health(
                    self.name,
                    self.url,
                    True,
                    latency,
                    f"/v1/models returned {response.status_code}",
                )
            try:
                models = [m["id"] for m in response.json().get("data", []) if m.get("id")]
            except (ValueError, AttributeError, TypeError, KeyError):
                models = []
        return Health(self.name, self.url, True, latency, None, models)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _error_message(content: bytes) -> str:
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


def _rendered_text(body: dict) -> str:
    """The text a chat template would wrap: every message's content, tool
    calls and tool definitions (approximate: the template's own tokens are
    not included)."""
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            parts.append(f"{function.get('name', '')} {function.get('arguments', '')}")
    if body.get("tools"):
        parts.append(json.dumps(body["tools"], ensure_ascii=False))
    return "\n".join(parts)
