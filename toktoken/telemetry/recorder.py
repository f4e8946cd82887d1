"""Batches usage records off the request path, and never stops or loses
them silently.

``add()`` only appends to a list. A background thread (a greenlet under
gunicorn's gevent worker) writes the batch every ``flush_interval`` seconds in
one transaction; ``close()`` writes what is left (gunicorn's worker_exit hook
calls it on a graceful stop, so SIGTERM loses nothing). A worker killed with
SIGKILL loses at most the records of the last ``flush_interval`` seconds.

When a batch fails, the store says why (``store.unavailable(exc)``):

- the store itself is down (SQLite read-only or its disk full, PostgreSQL
  stopped): the records wait in a bounded backlog and are written when it
  comes back; past ``backlog`` records the oldest are dropped and counted;
  one log line when it goes down, one when it is back;
- one record cannot be written (a value the database refuses): the batch is
  retried record by record, the bad one is logged once with its request id
  and counted, all the others are written.

Requests are served either way. ``state()`` is what /health shows.
"""

from __future__ import annotations

import logging
import threading
import time

from . import metrics

log = logging.getLogger(__name__)

DEFAULT_BACKLOG = 100_000


class Recorder:
    def __init__(
        self,
        store,
        flush_interval: float = 1.0,
        retention_days: float = 0,
        backlog: int = DEFAULT_BACKLOG,
    ):
        self.store = store
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self.backlog = backlog
        self._pending: list = []
        self._lock = threading.Lock()
        self._flushing = (
            threading.Lock()
        )  # one writer at a time: the thread, close(), the dashboard
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_prune = 0.0
        self._down: str | None = None  # why the store is unavailable, while it is
        self._last_write: float | None = None
        self._dropped: dict[str, int] = {}

    def add(self, record) -> None:
        with self._lock:
            self._pending.append(record)
            overflow = len(self._pending) - self.backlog
            if overflow > 0:
                del self._pending[:overflow]  # the oldest go first
            if self._thread is None:
                # Started lazily: after gunicorn forked this worker.
                self._thread = threading.Thread(
                    target=self._run, name="usage-recorder", daemon=True
                )
                self._thread.start()
        if overflow > 0:
            self._count_dropped("backlog_full", overflow)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def flush(self) -> int:
        """Write what is pending; the number of records written."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self.store.insert(batch)
            except Exception as exc:
                written = self._insert_one_by_one(batch, exc)
            else:
                written = len(batch)
                self._written()
        if written:
            self._prune()
        return written

    def _insert_one_by_one(self, batch: list, first_error: Exception) -> int:
        if self.store.unavailable(first_error):
            self._keep(batch, first_error)
            return 0
        written = 0
        for i, record in enumerate(batch):
            try:
                self.store.insert([record])
            except Exception as exc:
                if self.store.unavailable(exc):
                    self._keep(batch[i:], exc)
                    return written
                log.error(
                    "usage record of request %s cannot be written, dropped: %s: %s",
                    getattr(record, "request_id", "?"),
                    type(exc).__name__,
                    exc,
                )
                self._count_dropped("unwritable", 1)
            else:
                written += 1
        if written:
            self._written()
        return written

    def _keep(self, records: list, exc: Exception) -> None:
        """The store is down: put the records back, oldest first, within the bound."""
        reason = f"{type(exc).__name__}: {exc}"
        if self._down is None:
            log.warning(
                "usage ledger unavailable (%s): keeping records in memory (up to %d)",
                reason,
                self.backlog,
            )
        self._down = reason
        with self._lock:
            self._pending[:0] = records
            overflow = len(self._pending) - self.backlog
            if overflow > 0:
                del self._pending[:overflow]
        if overflow > 0:
            self._count_dropped("backlog_full", overflow)

    def _written(self) -> None:
        self._last_write = time.time()
        if self._down is not None:
            log.warning("usage ledger available again: backlog written")
            self._down = None

    def _count_dropped(self, reason: str, count: int) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + count
        metrics.RECORDS_DROPPED.labels(reason).inc(count)

    def _prune(self) -> None:
        if not self.retention_days or time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        try:
            self.store.prune(time.time() - self.retention_days * 86400)
        except Exception:
            log.exception("could not prune old usage records")

    def state(self) -> dict:
        """This worker's ledger: up or down, last successful write, backlog, drops."""
        return {
            "state": "down" if self._down else "ok",
            "error": self._down,
            "last_write": self._last_write,
            "backlog": len(self._pending),
            "dropped": dict(self._dropped),
        }

    def close(self) -> None:
        self._stop.set()
        self.flush()
        if self._pending:
            log.error(
                "usage ledger unavailable at exit: %d records not written", len(self._pending)
            )
