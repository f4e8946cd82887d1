"""Relay an upstream stream to the client: the I/O loop around a translator.

The loop is a plain generator of bytes, so Flask can serve it and gunicorn's
gevent worker writes every item the moment it is yielded.

A reader (a greenlet under gevent, a thread elsewhere) pulls upstream chunks
into a queue; the generator waits on that queue with a short timeout. That
gives us, without any busy loop:
- a ``ping`` event whenever the backend has been silent for ``ping_interval``
  (prefill of a long prompt can take minutes), so clients and proxies wait;
- a check, once a second while silent, that the client is still connected,
  so a silent backend is abandoned promptly when the client goes away.
When the client disconnects while data flows, the write fails, the server
closes this generator, and ``finally`` closes the upstream response.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

from . import sse
from .backends import UpstreamStream
from .errors import BackendUnavailable, GatewayError

log = logging.getLogger(__name__)

_END = object()
_PING = object()


class ClientGone(Exception):
    pass


def client_gone_check(environ: dict) -> Callable[[], bool]:
    """A cheap "has the client hung up?" test for the request's socket.

    gunicorn exposes the socket as ``gunicorn.socket``. A readable socket whose
    peek returns b"" has been closed by the peer. (Other servers: we rely on the
    failed write instead.)
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return lambda: False

    def gone() -> bool:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    return gone


def _pump(
    upstream: UpstreamStream, ping_interval: float, client_gone: Callable[[], bool]
) -> Iterator[object]:
    """Yield batches of upstream items — every chunk that has arrived since
    the last batch, so a fast upstream is written out in few, larger writes —
    or _PING while silent; the last batch ends with _END or a GatewayError."""
    items: queue.Queue = queue.Queue()

    def reader() -> None:
        try:
            for chunk in upstream:
                items.put(chunk)
            items.put(_END)
        except GatewayError as exc:
            items.put(exc)
        except Exception as exc:  # never let the reader die silently
            log.exception("upstream reader failed")
            items.put(BackendUnavailable(f"backend stream failed: {type(exc).__name__}"))

    threading.Thread(target=reader, name="upstream-reader", daemon=True).start()
    tick = min(1.0, ping_interval)
    silent = 0.0
    while True:
        try:
            item = items.get(timeout=tick)
        except queue.Empty:
            silent += tick
            if client_gone():
                raise ClientGone() from None
            if silent >= ping_interval:
                silent = 0.0
                yield _PING
            continue
        silent = 0.0
        batch = [item]
        while not (item is _END or isinstance(item, GatewayError)):
            try:
                item = items.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
        yield batch
        if item is _END or isinstance(item, GatewayError):
            return


def relay(
    upstream: UpstreamStream,
    machine,
    *,
    encode: Callable[[list], bytes],
    ping: bytes,
    done: bytes = b"",
    ping_interval: float,
    client_gone: Callable[[], bool],
    on_done: Callable[..., None],
) -> Iterator[bytes]:
    """Generate the client's SSE bytes from a sans-I/O stream machine
    (start/feed/finish/fail). ``done`` is written after a clean end (OpenAI's
    ``[DONE]``). ``on_done(outcome, first_output_at, error_type)`` runs
    exactly once however the stream ends; outcome is "ok", "error", or
    "client_gone"; first_output_at is when the first upstream output was
    relayed (time to first token)."""
    outcome = "client_gone"
    first_output_at = None
    error_type = None
    try:
        first = machine.start()
        if first:
            yield encode(first)
        for batch in _pump(upstream, ping_interval, client_gone):
            if batch is _PING:
                yield ping
                continue
            out: list[bytes] = []
            for item in batch:
                if item is _END:
                    events = machine.finish()
                    outcome = "ok" if machine.phase == "finished" else "error"
                    if first_output_at is None and outcome == "ok":
                        first_output_at = time.monotonic()
                    out.append(encode(events) + (done if outcome == "ok" else b""))
                elif isinstance(item, GatewayError):
                    outcome, error_type = "error", item.type
                    out.append(encode(machine.fail(item)))
                else:
                    events = machine.feed(item)
                    if events:
                        if first_output_at is None:
                            first_output_at = time.monotonic()
                        out.append(encode(events))
                    if machine.phase == "failed":
                        outcome = "error"
                        break
            data = b"".join(out)
            if data:
                yield data
            if machine.phase == "failed":
                return
    except ClientGone:
        pass
    finally:
        try:
            upstream.close()
        finally:
            if outcome == "error" and error_type is None:
                error_type = "api_error"
            on_done(outcome, first_output_at, error_type)


def relay_anthropic(upstream: UpstreamStream, machine, **kwargs) -> Iterator[bytes]:
    return relay(upstream, machine, encode=sse.encode, ping=sse.PING, **kwargs)


def relay_openai(upstream: UpstreamStream, machine, **kwargs) -> Iterator[bytes]:
    return relay(
        upstream,
        machine,
        encode=sse.encode_chunks,
        ping=sse.OPENAI_PING,
        done=sse.OPENAI_DONE,
        **kwargs,
    )
