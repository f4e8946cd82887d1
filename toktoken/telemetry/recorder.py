"""Batches usage records off the request path.

``add()`` only appends to a list. A background thread (a greenlet under
gunicorn's gevent worker) writes the batch every ``flush_interval`` seconds in
one transaction; ``close()`` writes what is left (gunicorn's worker_exit hook
calls it on a graceful stop, so SIGTERM loses nothing). A worker killed with
SIGKILL loses at most the records of the last ``flush_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, store, flush_interval: float = 1.0, retention_days: float = 0):
        self.store = store
        self.flush_interval = flush_interval
        self.retention_days = retention_days
        self._pending: list = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_prune = 0.0

    def add(self, record) -> None:
        with self._lock:
            self._pending.append(record)
            if self._thread is None:
                # Started lazily: after gunicorn forked this worker.
                self._thread = threading.Thread(
                    target=self._run, name="usage-recorder", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def flush(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return 0
        try:
            self.store.insert(batch)
        except Exception:
            # Keep the records for the next attempt rather than lose them.
            log.exception("could not write %d usage records; will retry", len(batch))
            with self._lock:
                self._pending[:0] = batch
            return 0
        self._prune()
        return len(batch)

    def _prune(self) -> None:
        if not self.retention_days or time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        try:
            self.store.prune(time.time() - self.retention_days * 86400)
        except Exception:
            log.exception("could not prune old usage records")

    def close(self) -> None:
        self._stop.set()
        self.flush()
