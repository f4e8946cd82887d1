"""Relay an upstream stream to the client: the I/O loop around a translator.

The loop is a plain generator of bytes, so Flask can serve it and gunicorn's
gevent worker writes every item the moment it is yielded.

A reader (a greenlet under gevent, a thread elsewhere) pulls upstream chunks
into a queue, and the generator waits on that queue. While the backend is
silent the generator still wakes once per tick (under gevent a repeating
timer drops a tick into the queue; with threads the wait has a timeout), which
gives us, without any busy loop:
- a ``ping`` event whenever the backend has been silent for ``ping_interval``
  (prefill of a long prompt can take minutes), so clients and proxies wait;
- a check, once a second while silent, that the client is still connected,
  so a silent backend is abandoned promptly when the client goes away;
- under gevent, the backend read timeout (an error event after that long
  without a byte), so no socket read needs a timer of its own.
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
from .convert import Phase, StreamMachine
from .errors import GatewayError

log = logging.getLogger(__name__)

_END = object()
_PING = object()
_TICK = object()


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
    if _cooperative():
        return _pump_greenlet(upstream, ping_interval, client_gone)
    return _pump_thread(upstream, ping_interval, client_gone)


def _cooperative() -> bool:
    """Running under gevent (gunicorn's gevent worker patches the socket module)."""
    try:
        from gevent.monkey import is_module_patched
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return is_module_patched("socket")


def _read_all(upstream: UpstreamStream, put: Callable[[object], None]) -> None:
    """The reader: every upstream chunk, then _END or the GatewayError."""
    try:
        for chunk in upstream:
            put(chunk)
        put(_END)
    except GatewayError as exc:
        put(exc)
    except Exception as exc:  # a bug below us: never let the reader die silently
        log.exception("upstream reader failed")
        put(upstream.failure(exc))


def _is_last(item: object) -> bool:
    return item is _END or isinstance(item, GatewayError)


def _pump_greenlet(
    upstream: UpstreamStream, ping_interval: float, client_gone: Callable[[], bool]
) -> Iterator[object]:
    """gevent: a reader greenlet, a gevent queue, and one repeating timer per
    stream that drops a _TICK into the queue. No wait has a timeout of its
    own: in gevent every timed wait arms and disarms a timer, and with
    thousands of chunks a second those timers (one per socket read, one per
    queue get) cost more than the chunks. Silence — pings, the client-gone
    check, the backend read timeout — is judged on the ticks instead."""
    import gevent
    from gevent.queue import SimpleQueue

    items: SimpleQueue = SimpleQueue()
    read_timeout = upstream.read_timeout
    upstream.clear_read_timeout()  # enforced below, from the ticks
    gevent.spawn(_read_all, upstream, items.put)
    tick = min(1.0, ping_interval)
    slack = tick / 4
    last_data = last_sent = time.monotonic()
    seen = [last_data]  # when the last batch came, for the timer

    def on_tick() -> None:
        if time.monotonic() - seen[0] + slack >= tick:  # no wake-up while data flows
            items.put(_TICK)

    timer = gevent.get_hub().loop.timer(tick, tick)
    timer.start(on_tick)
    try:
        while True:
            item = items.get()
            if item is _TICK:
                # Ticks are not aligned with the data: allow a quarter tick
                # of slack so a 1 s ping interval pings every second.
                silent = time.monotonic() - last_data + slack
                if silent < tick:
                    continue  # data is flowing
                if client_gone():
                    raise ClientGone()
                if silent >= read_timeout:
                    yield [upstream.silence_error()]
                    return
                if time.monotonic() - last_sent + slack >= ping_interval:
                    last_sent = time.monotonic()
                    yield _PING
                continue
            batch = [item]
            while not _is_last(item) and items.qsize():
                item = items.get()
                if item is not _TICK:
                    batch.append(item)
            last_data = last_sent = seen[0] = time.monotonic()
            yield batch
            if _is_last(item):
                return
    finally:
        timer.close()


def _pump_thread(
    upstream: UpstreamStream, ping_interval: float, client_gone: Callable[[], bool]
) -> Iterator[object]:
    """Threads (no gevent): a reader thread and timed queue waits; the
    backend read timeout stays on the socket."""
    items: queue.Queue = queue.Queue()
    threading.Thread(target=_read_all, args=(upstream, items.put), daemon=True).start()
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
        while not _is_last(item):
            try:
                item = items.get_nowait()
            except queue.Empty:
                break
            batch.append(item)
        yield batch
        if _is_last(item):
            return


def relay(
    upstream: UpstreamStream,
    machine: StreamMachine,
    *,
    encode: Callable[[list], bytes],
    ping: bytes,
    done: bytes = b"",
    ping_interval: float,
    client_gone: Callable[[], bool],
    on_done: Callable[..., None],
) -> Iterator[bytes]:
    """Generate the client's SSE bytes from a sans-I/O StreamMachine
    (convert/protocol.py). ``done`` is written after a clean end (OpenAI's
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
                    outcome = "ok" if machine.phase is Phase.FINISHED else "error"
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
                    if machine.phase is Phase.FAILED:
                        outcome = "error"
                        break
            data = b"".join(out)
            if data:
                yield data
            if machine.phase is Phase.FAILED:
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


def relay_anthropic(upstream: UpstreamStream, machine: StreamMachine, **kwargs) -> Iterator[bytes]:
    return relay(upstream, machine, encode=sse.encode, ping=sse.PING, **kwargs)


def relay_openai(upstream: UpstreamStream, machine: StreamMachine, **kwargs) -> Iterator[bytes]:
    return relay(
        upstream,
        machine,
        encode=sse.encode_chunks,
        ping=sse.OPENAI_PING,
        done=sse.OPENAI_DONE,
        **kwargs,
    )
