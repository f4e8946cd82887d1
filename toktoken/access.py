"""Per-key model access and limits: who may ask for what, and how much.

Counted with ``limits`` (the library Flask-Limiter is built on) in its
storage — in memory by default (exact within one worker), or Redis
(``LIMITS_STORAGE=redis://…``) shared by every worker and instance:

| limit | strategy | when |
|---|---|---|
| ``requests_per_minute`` | moving window (any 60 s) | each request counts when admitted |
| ``tokens_per_hour`` / ``_day`` | fixed windows, charged with a cost | input up front (the gateway's count), the rest when the reply ends: exactly what the client was told in ``usage`` |
| ``concurrent_streams`` | leases (below) | while a stream is open |

Flask-Limiter's decorators are not used: they fix one limit per route when
the app is built, and a token limit is charged after the answer, with the
cost known only then — which is ``limits``' own API (``hit(cost=…)``).

A request is refused (429, ``retry-after``, ``x-should-retry: true``) only
on what was already charged, never cut mid-stream. Concurrent streams are
not a rate, so ``limits`` has no primitive for them: each open stream holds
a lease (an entry in a Redis sorted set, refreshed while it lasts and gone
LEASE_SECONDS after its worker died; a counter in memory) — the one counter
written here.

When the storage is unreachable, requests are served (and a warning
logged): a team keeps working while Redis restarts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid

from limits import RateLimitItemPerDay, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import MemoryStorage, RedisStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from .config import ClientKey, Settings
from .errors import PermissionDenied, RateLimited

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0


class Access:
    def __init__(self, settings: Settings):
        self.enabled = any(
            any(v is not None for v in k.limits.as_dict().values()) for k in settings.keys
        )
        self.storage = storage_from_string(settings.limits_storage)
        self.moving = MovingWindowRateLimiter(self.storage)
        self.fixed = FixedWindowRateLimiter(self.storage)
        self.streams = StreamLeases(self.storage)
        self._warned_at = 0.0
        if self.enabled and isinstance(self.storage, MemoryStorage) and settings.workers > 1:
            log.warning(
                "per-key limits are counted in memory, so per worker: with WORKERS=%d a key "
                "gets up to %d times its limits. Set LIMITS_STORAGE=redis://… to share them.",
                settings.workers,
                settings.workers,
            )

    def admit(self, client: ClientKey, model: str, *, stream: bool, counting: bool = False):
        """Let a request in, or raise PermissionDenied / RateLimited. The
        Admission it returns is settled when the request ends."""
        if not client.may_use(model):
            raise PermissionDenied(f"this API key may not use the model {model!r}")
        admission = Admission(self, client)
        if not self.enabled:
            return admission
        limits = client.limits
        try:
            if limits.requests_per_minute:
                item = RateLimitItemPerMinute(limits.requests_per_minute)
                if not self.moving.hit(item, "requests", client.name):
                    reset = self.moving.get_window_stats(item, "requests", client.name).reset_time
                    raise _refused(f"{limits.requests_per_minute} requests per minute", reset)
            for what, item in token_windows(limits):
                stats = self.fixed.get_window_stats(item, "tokens", client.name)
                if stats.remaining <= 0:
                    raise _refused(f"{item.amount} tokens per {what}", stats.reset_time)
            if stream and not counting and limits.concurrent_streams:
                admission.lease = self.streams.open(client.name, limits.concurrent_streams)
                if admission.lease is None:
                    raise RateLimited(
                        f"this API key's limit of {limits.concurrent_streams} concurrent streams "
                        "is reached; retry when one of them ends",
                        retry_after=5,
                    )
        except RateLimited:
            raise
        except Exception as exc:  # the storage is down: serve, say so
            self.unavailable(exc)
        return admission

    def charge(self, client: ClientKey, tokens: int) -> None:
        if not tokens or not self.enabled:
            return
        try:
            for _, item in token_windows(client.limits):
                self.fixed.hit(item, "tokens", client.name, cost=tokens)
        except Exception as exc:
            self.unavailable(exc)

    def use(self, client: ClientKey) -> dict:
        """The key's use now, against each of its limits (for /stats)."""
        limits = client.limits
        out: dict = {"limits": limits.as_dict()}
        if not self.enabled:
            return out
        try:
            if limits.requests_per_minute:
                item = RateLimitItemPerMinute(limits.requests_per_minute)
                stats = self.moving.get_window_stats(item, "requests", client.name)
                out["requests_this_minute"] = item.amount - stats.remaining
            for what, item in token_windows(limits):
                stats = self.fixed.get_window_stats(item, "tokens", client.name)
                out[f"tokens_this_{what}"] = self.storage.get(item.key_for("tokens", client.name))
                out[f"tokens_{what}_resets_in_s"] = max(0, round(stats.reset_time - time.time()))
            if limits.concurrent_streams:
                out["open_streams"] = self.streams.count(client.name)
        except Exception as exc:
            self.unavailable(exc)
        return out

    def unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning("limits storage unavailable, requests are served unlimited: %s", exc)


class Admission:
    """One admitted request: the tokens charged so far, and its stream's
    lease. ``settle`` once, when the request ends."""

    __slots__ = ("access", "client", "charged", "lease")

    def __init__(self, access: Access, client: ClientKey):
        self.access, self.client = access, client
        self.charged = 0
        self.lease: str | None = None

    def charge(self, tokens: int) -> None:
        self.access.charge(self.client, tokens)
        self.charged += tokens

    def settle(self, tokens: int | None) -> None:
        """The request is over: ``tokens`` (input + output, as the client
        was told) is what it costs in all; None for nothing (an error)."""
        self.charge((tokens or 0) - self.charged)
        if self.lease is not None:
            self.access.streams.close(self.client.name, self.lease)
            self.lease = None


def token_windows(limits) -> list[tuple[str, object]]:
    windows = []
    if limits.tokens_per_hour:
        windows.append(("hour", RateLimitItemPerHour(limits.tokens_per_hour)))
    if limits.tokens_per_day:
        windows.append(("day", RateLimitItemPerDay(limits.tokens_per_day)))
    return windows


def _refused(what: str, reset_time: float) -> RateLimited:
    wait = max(1, math.ceil(reset_time - time.time()))
    return RateLimited(
        f"this API key's limit of {what} is reached; retry in {wait} s", retry_after=wait
    )


# Open streams ---------------------------------------------------------------------

_OPEN_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class StreamLeases:
    """How many streams a key has open: atomically checked and taken."""

    def __init__(self, storage):
        self.redis = storage.get_connection() if isinstance(storage, RedisStorage) else None
        self.prefix = f"{storage.key_prefix}:streams:" if self.redis is not None else ""
        self._open = self.redis.register_script(_OPEN_LEASE) if self.redis is not None else None
        self._local: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._refresher: threading.Thread | None = None

    def open(self, name: str, limit: int) -> str | None:
        lease = uuid.uuid4().hex
        if self.redis is None:
            with self._lock:
                held = self._local.setdefault(name, set())
                if len(held) >= limit:
                    return None
                held.add(lease)
            return lease
        now = time.time()
        key = self.prefix + name
        if not self._open(
            keys=[key], args=[now, limit, now + LEASE_SECONDS, lease, int(LEASE_SECONDS * 2)]
        ):
            return None
        with self._lock:
            self._local.setdefault(name, set()).add(lease)
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh, name="stream-leases", daemon=True
                )
                self._refresher.start()
        return lease

    def close(self, name: str, lease: str) -> None:
        with self._lock:
            self._local.get(name, set()).discard(lease)
        if self.redis is not None:
            try:
                self.redis.zrem(self.prefix + name, lease)
            except Exception as exc:  # it lapses on its own
                log.warning("could not release a stream lease: %s", exc)

    def count(self, name: str) -> int:
        if self.redis is None:
            return len(self._local.get(name, ()))
        key = self.prefix + name
        self.redis.zremrangebyscore(key, "-inf", time.time())
        return int(self.redis.zcard(key))

    def _refresh(self) -> None:
        """Keep this process's open leases alive (they lapse when it dies)."""
        while True:
            time.sleep(LEASE_SECONDS / 3)
            with self._lock:
                held = {name: list(leases) for name, leases in self._local.items() if leases}
            try:
                until = time.time() + LEASE_SECONDS
                for name, leases in held.items():
                    self.redis.zadd(self.prefix + name, {lease: until for lease in leases}, xx=True)
                    self.redis.expire(self.prefix + name, int(LEASE_SECONDS * 2))
            except Exception as exc:
                log.warning("could not refresh stream leases: %s", exc)
