"""HTTP to one backend: ``BackendClient``, one requests.Session each.

Every failure leaves as a typed GatewayError (failures.py), so callers never
see a requests exception.
"""

from __future__ import annotations

import os

import requests
from urllib3.exceptions import HTTPError, ReadTimeoutError

from .. import jsonio
from ..config import BackendSettings
from ..errors import GatewayError
from .failures import not_json, status_error, translate
from .stream import JsonAsEvents, UpstreamStream
from .transport import BackendAdapter

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"

# Discovery answers are small: never read more than this (an endpoint that
# streams forever must not hold a discovery call).
_LOOKUP_LIMIT = 1_000_000


class BackendClient:
    """POSTs OpenAI-style (or Anthropic-style) requests to one backend — one
    replica of it (``url``, by default the backend's first)."""

    def __init__(
        self,
        settings: BackendSettings,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int = 1000,
        url: str | None = None,
    ):
        self.settings = settings
        self.name = settings.name
        self.url = url or settings.url
        self.key = f"{self.name} {self.url}"  # one replica of one backend
        self.model = settings.model
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
        self.session.proxies.update(requests.utils.get_environ_proxies(self.url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            self.session.verify = ca_bundle
        self.session.trust_env = False
        if settings.api_key:
            self.session.headers["Authorization"] = f"Bearer {settings.api_key}"
            if settings.anthropic_native:
                self.session.headers["x-api-key"] = settings.api_key
        if settings.anthropic_native:
            self.session.headers["anthropic-version"] = "2023-06-01"

    def failure(self, exc: BaseException) -> GatewayError:
        return translate(
            exc, self.url, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
        )

    # Requests ---------------------------------------------------------------

    def post(self, path: str, body: dict | bytes, headers: dict | None = None) -> dict:
        """POST and return the parsed JSON answer (non-streaming)."""
        response = self._send(path, body, headers)
        try:
            content = self._read_body(response)
            if response.status_code >= 300:
                raise status_error(response.status_code, content, self.url)
            try:
                return jsonio.loads(content)
            except ValueError:
                raise not_json(content, self.url) from None
        finally:
            response.close()

    def open_stream(
        self,
        path: str,
        body: dict | bytes,
        headers: dict | None = None,
        *,
        json_as_events: JsonAsEvents | None = None,
    ) -> UpstreamStream:
        """POST with ``stream: true``; errors before the first byte raise here,
        while the client can still be given a proper HTTP status."""
        response = self._send(path, body, headers)
        if response.status_code >= 300:
            try:
                content = self._read_body(response)
            except GatewayError:
                content = b""
            finally:
                response.close()
            raise status_error(response.status_code, content, self.url)
        return UpstreamStream(
            response, url=self.url, read_timeout=self.read_timeout, json_as_events=json_as_events
        )

    def _read_body(self, response: requests.Response) -> bytes:
        """The whole body, read in one call on the raw response (requests'
        ``.content`` reads it in 10 KB pieces through two generators)."""
        try:
            return response.raw.read(decode_content=True)
        except (ReadTimeoutError, TimeoutError, HTTPError, OSError) as exc:
            raise self.failure(exc) from None  # timed out, cut mid-body, a bad encoding

    def _send(self, path: str, body: dict | bytes, headers: dict | None) -> requests.Response:
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
        except requests.RequestException as exc:
            raise self.failure(exc) from None

    # Discovery: answers or nothing, never an error -------------------------------

    def lookup(
        self, method: str, path: str, body: dict | None = None, timeout: float = 3.0
    ) -> tuple[int | None, object]:
        """(status, parsed JSON) — (status, None) when the answer is not
        JSON, (None, None) when the backend is unreachable. For discovery and
        health, which must never fail a request."""
        try:
            response = self.session.request(
                method,
                self.url + path,
                json=body,
                stream=True,
                timeout=(min(self.connect_timeout, timeout), timeout),
            )
        except requests.RequestException:
            return None, None
        with response:
            try:
                data = response.raw.read(_LOOKUP_LIMIT, decode_content=True)
                return response.status_code, jsonio.loads(data)
            except Exception:  # not JSON, cut, timed out: no answer
                return response.status_code, None
