"""An open upstream SSE response, read event by event (sseclient-py).

``UpstreamStream`` knows the response, the backend's URL and its read timeout
— not the client that opened it — so the relay can judge silence and name
the backend without reaching back into the client.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Iterator

import requests
import sseclient

from .. import jsonio
from ..errors import BackendTimeout, GatewayError
from .failures import translate

log = logging.getLogger(__name__)

# A server that ignores ``stream: true`` (or reports an error with a 200)
# answers with one JSON document; this turns it into stream items.
JsonAsEvents = Callable[[dict], Iterable[dict]]


class UpstreamStream:
    """Iterate for parsed JSON events; always ``close()`` it (closing is what
    makes vLLM and llama.cpp stop generating)."""

    # After ``[DONE]`` at most this much more body, read within this long, to
    # reach the end of the response and keep the connection.
    DRAIN_BYTES = 65536
    DRAIN_SECONDS = 1.0

    def __init__(
        self,
        response: requests.Response,
        *,
        url: str,
        read_timeout: float,
        json_as_events: JsonAsEvents | None = None,
    ):
        self.response = response
        self.url = url
        self.read_timeout = read_timeout
        self._json_as_events = json_as_events
        self._closed = False
        self._source: Iterator[bytes] | None = None
        self._saw_done = False
        # Called once, at close(), with the failure that ended the stream (or
        # None): the replica's bookkeeping (replicas.py).
        self.on_close: Callable[[GatewayError | None], None] | None = None
        self.error: GatewayError | None = None

    def __iter__(self) -> Iterator[dict]:
        content_type = self.response.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            yield from self._whole_document()
            return
        self._source = _raw_chunks(self.response)
        try:
            for event in sseclient.SSEClient(self._source).events():
                data = event.data.strip()
                if not data:
                    continue
                if data == "[DONE]":
                    self._saw_done = True
                    return
                try:
                    yield jsonio.loads(data)
                except ValueError:
                    log.warning("%s sent a non-JSON stream event: %.200s", self.url, data)
        except Exception as exc:
            if self._closed:
                return  # we closed it ourselves (the client left)
            self.error = self.failure(exc)
            raise self.error from None

    def failure(self, exc: BaseException) -> GatewayError:
        return translate(
            exc, self.url, connect_timeout=0, read_timeout=self.read_timeout, streaming=True
        )

    def silence_error(self) -> BackendTimeout:
        """For a relay that judges silence itself (see clear_read_timeout)."""
        return self.failure(TimeoutError())

    def _whole_document(self) -> Iterator[dict]:
        try:
            body = jsonio.loads(self.response.content)
        except (ValueError, requests.RequestException):
            return
        if not isinstance(body, dict):
            return
        if "error" in body or self._json_as_events is None:
            yield body
            return
        yield from self._json_as_events(body)

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
        try:
            self._close()
        finally:
            if self.on_close is not None:
                self.on_close(self.error)

    def _close(self) -> None:
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
