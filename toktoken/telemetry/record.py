"""What is recorded about each request, and the draft that collects it."""

from __future__ import annotations

import functools
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from ..logs import log_request
from . import metrics

if TYPE_CHECKING:
    from ..convert import Usage


_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_INT = 2**63 - 1  # the ledgers' INTEGER / BIGINT


def _text(value: str | None) -> str | None:
    """A string every ledger can encode: lone UTF-16 surrogates become U+FFFD."""
    if value is None or value.isascii():
        return value
    return _SURROGATE.sub("\ufffd", value)


def _count(value: int | None) -> int:
    return min(max(value or 0, 0), _MAX_INT)


@functools.lru_cache(maxsize=256)  # a handful of keys, presented on every request
def key_fingerprint(key: str | None) -> str | None:
    """Who used the gateway, without storing the key: 12 hex chars of SHA-256."""
    if not key:
        return None
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class UsageRecord(NamedTuple):
    """One finished request. A named tuple: built once per request, and
    cheaper to build than a frozen dataclass (16 fields)."""

    ts: float  # unix seconds, when the request arrived
    request_id: str
    route: str
    key_fp: str | None
    model: str | None
    backend: str | None
    backend_model: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    tokens_exact: bool
    latency_ms: float
    ttft_ms: float | None
    stream: bool
    status: int
    error_type: str | None
    session_id: str | None = None
    # Share of the upstream prompt repeating the session's previous request
    # (sessions.PrefixTracker); None for a session's first request.
    prefix_reuse: float | None = None
    # Tool calls the backend left in the text and the gateway turned into calls.
    text_tool_calls: int = 0
    # The backend replica (its URL) that served the request, and whether
    # another failed it first (backends/replicas.py).
    replica: str | None = None
    failover: bool = False
    key_name: str | None = None  # the client key's name (never the key)

    def row(self) -> tuple:
        """Column values; booleans as 0/1 (INTEGER columns in both SQLite and PostgreSQL)."""
        return tuple(int(v) if isinstance(v, bool) else v for v in self)


@dataclass(slots=True)
class RequestRecord:
    """Filled in while a request is handled; ``finish()`` — called exactly
    once however the request ends (reply, error, stream end, disconnect) —
    logs the request line and hands a UsageRecord to the recorder."""

    request_id: str
    route: str
    recorder: object | None = None
    started: float = field(default_factory=time.monotonic)
    ts: float = field(default_factory=time.time)
    key_fp: str | None = None
    model: str | None = None
    backend: str | None = None
    backend_model: str | None = None
    stream: bool = False
    session_id: str | None = None
    prefix_reuse: float | None = None
    text_tool_calls: int = 0
    replica: str | None = None
    failover_from: str | None = None
    key_name: str | None = None
    done: bool = False

    def finish(
        self,
        *,
        status: int,
        usage: Usage | None = None,
        first_token_at: float | None = None,
        error_type: str | None = None,
        outcome: str | None = None,
    ) -> None:
        if self.done:
            return
        self.done = True
        now = time.monotonic()
        latency_ms = round((now - self.started) * 1000, 1)
        ttft_ms = round((first_token_at - self.started) * 1000, 1) if first_token_at else None
        input_tokens = usage.input_tokens if usage else None
        output_tokens = usage.output_tokens if usage else None
        log_request(
            request_id=self.request_id,
            route=self.route,
            key=self.key_name,
            backend=self.backend,
            model=self.model,
            backend_model=self.backend_model,
            stream=str(self.stream).lower(),
            status=status,
            outcome=outcome,
            error=error_type,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=(usage.cache_read_tokens or None) if usage else None,
            prefix_reuse=self.prefix_reuse,
            text_tool_calls=self.text_tool_calls or None,
            replica=self.replica,
            failover_from=self.failover_from,
            ms=round(latency_ms),
            ttft_ms=ttft_ms,
        )
        record = UsageRecord(
            ts=self.ts,
            request_id=self.request_id,
            route=_text(self.route),
            key_fp=self.key_fp,
            model=_text(self.model),
            backend=self.backend,
            backend_model=_text(self.backend_model),
            input_tokens=_count(input_tokens),
            output_tokens=_count(output_tokens),
            cache_read_tokens=_count(usage.cache_read_tokens if usage else 0),
            tokens_exact=bool(usage and usage.exact),
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            stream=self.stream,
            status=status,
            error_type=_text(error_type),
            session_id=_text(self.session_id),
            prefix_reuse=self.prefix_reuse,
            text_tool_calls=self.text_tool_calls,
            replica=_text(self.replica),
            failover=self.failover_from is not None,
            key_name=self.key_name,
        )
        metrics.observe(record)
        if self.recorder is not None:
            self.recorder.add(record)
