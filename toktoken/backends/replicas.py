"""Several replicas of one backend: which one serves a request, and which
are fit to.

A backend configured with several URLs (``urls = [...]``, or a
comma-separated ``VLLM_URL``) is a ``ReplicaSet``: the same model, kind and
key on each replica, one ``BackendClient`` per URL.

Choice (``choose``):

- A request with a session identity goes where the session's previous
  requests went: rendezvous hashing (highest random weight) of the session id
  with each admitted replica's URL. When a replica leaves, only its own
  sessions move; when it comes back, they return. The choice depends on
  nothing but the session id and the set of admitted URLs, so several
  gateway instances agree without talking to each other.
- A request without one goes to the replica with the fewest requests in
  flight from this worker (ties at random).
- An ejected replica is never chosen while an admitted one exists; with none
  admitted, every replica is a candidate again, so the request gets the
  backend's own error (today's 502/529) — or succeeds and re-admits it.

Health, passively: a replica that refuses connections, times out
connecting, breaks a stream, or answers 5xx or garbage ``failures`` times in
a row is ejected for a back-off period (doubling while it keeps failing, up
to ``MAX_BACKOFF``), and re-admitted when a probe succeeds after it. A probe
that fails ejects at once. Any other answer, 4xx included, is a success.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable

from ..config import BackendSettings
from ..errors import GatewayError
from ..telemetry.metrics import (
    REPLICA_EJECTIONS,
    REPLICA_ERRORS,
    REPLICA_IN_FLIGHT,
    REPLICA_REQUESTS,
    REPLICA_UP,
)
from .client import BackendClient
from .health import Health

log = logging.getLogger(__name__)

MAX_BACKOFF = 300.0


def weight(session: str, url: str) -> int:
    """Rendezvous weight of ``url`` for ``session``: stable across processes
    and machines (never Python's salted ``hash``)."""
    digest = hashlib.blake2b(f"{session}\n{url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Replica:
    def __init__(self, client: BackendClient, backend: str, index: int = 0):
        self.client = client
        self.index = index  # its place in the backend's list
        self.url = client.url
        self.in_flight = 0
        self.failures = 0  # in a row
        self.ejected_until: float | None = None  # None: admitted
        self.backoff = 0.0  # the next ejection's length, once ejected
        self.last_error: str | None = None
        self.probing = False
        labels = (backend, self.url)
        self._requests = REPLICA_REQUESTS.labels(*labels)
        self._errors = REPLICA_ERRORS.labels(*labels)
        self._ejections = REPLICA_EJECTIONS.labels(*labels)
        self._in_flight = REPLICA_IN_FLIGHT.labels(*labels)
        self._up = REPLICA_UP.labels(*labels)
        self._up.set(1)

    @property
    def admitted(self) -> bool:
        return self.ejected_until is None

    def status(self, now: float) -> dict:
        return {
            "url": self.url,
            "state": "up" if self.admitted else "ejected",
            "in_flight": self.in_flight,
            "failures_in_a_row": self.failures,
            "ejected_for_s": None
            if self.admitted
            else max(0.0, round(self.ejected_until - now, 1)),
            "last_error": self.last_error,
        }


class ReplicaSet:
    """One backend and its replicas. ``name``, ``settings``, ``model`` and
    ``url`` (the first replica's) stand for the backend as a whole."""

    def __init__(
        self,
        settings: BackendSettings,
        clients: list[BackendClient],
        *,
        failures: int = 3,
        backoff: float = 10.0,
        probe: Callable[[BackendClient], Health] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self.name = settings.name
        self.model = settings.model
        self.url = clients[0].url
        self.replicas = [Replica(c, settings.name, i) for i, c in enumerate(clients)]
        self.clients = clients
        self.threshold = failures
        self.base_backoff = backoff
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        # Told what a request learned of a replica's reachability: (this set,
        # the replica, reachable, why) — the registry keeps /health current.
        self.observe: Callable[[ReplicaSet, Replica, bool, str | None], None] | None = None

    # Choosing ------------------------------------------------------------------

    def choose(
        self, session: str | None, exclude: Iterable[Replica] = (), *, admitted_only=False
    ) -> Replica | None:
        """The replica for a request (see the module's docstring); None when
        nothing is left (every replica excluded, or none admitted when
        ``admitted_only``: a failover goes only to a healthy replica)."""
        replicas = self.replicas
        if len(replicas) == 1 and not exclude:
            only = replicas[0]
            return None if admitted_only and not only.admitted else only
        candidates = [r for r in replicas if r not in exclude] if exclude else replicas
        pool = [r for r in candidates if r.admitted]
        if len(pool) < len(replicas):
            self._probe_returning()
        if not pool:
            if admitted_only:
                return None
            pool = candidates
        if not pool:
            return None
        if len(pool) == 1:
            return pool[0]
        if session:
            return max(pool, key=lambda r: weight(session, r.url))
        low = min(r.in_flight for r in pool)
        return random.choice([r for r in pool if r.in_flight == low])

    # What happened ---------------------------------------------------------------

    def begin(self, replica: Replica) -> None:
        replica.in_flight += 1
        replica._in_flight.inc()
        replica._requests.inc()

    def end(
        self, replica: Replica, error: GatewayError | None = None, *, answered: bool = True
    ) -> None:
        """The request on ``replica`` is over (for a stream: the stream was
        closed); ``error`` is what failed it, if anything did; ``answered``
        False: it ended before the replica was heard from (it says nothing
        of the replica's reachability)."""
        replica.in_flight -= 1
        replica._in_flight.dec()
        fault = getattr(error, "replica_fault", None) if error is not None else None
        if fault is None:
            self._succeeded(replica)
        else:
            self.failed(replica, f"{fault}: {error.message}"[:300])
        if self.observe is not None:
            if error is None:
                if answered:
                    self.observe(self, replica, True, None)
            elif error.unreachable:
                self.observe(self, replica, False, fault)

    def failed(self, replica: Replica, why: str) -> None:
        replica._errors.inc()
        with self._lock:
            replica.failures += 1
            replica.last_error = why
            if replica.admitted and replica.failures >= self.threshold:
                self._eject(replica, f"{replica.failures} failures in a row, the last: {why}")

    def _succeeded(self, replica: Replica) -> None:
        if replica.failures or not replica.admitted:
            with self._lock:
                replica.failures = 0
                replica.backoff = 0.0
                if not replica.admitted:
                    self._admit(replica, "a request succeeded")

    def probed(self, replica: Replica, health: Health) -> None:
        """A probe's result: a failure ejects at once; a success re-admits
        once the back-off is over."""
        with self._lock:
            if not health.reachable:
                replica.last_error = f"probe: {health.detail}"
                if replica.admitted:
                    self._eject(replica, f"probe failed ({health.detail})")
                elif self._clock() >= replica.ejected_until:
                    self._eject(replica, f"probe failed again ({health.detail})")
            elif not replica.admitted and self._clock() >= replica.ejected_until:
                replica.failures = 0
                self._admit(replica, "a probe succeeded")

    def _eject(self, replica: Replica, why: str) -> None:  # under the lock
        replica.backoff = min(MAX_BACKOFF, replica.backoff * 2 or self.base_backoff)
        replica.ejected_until = self._clock() + replica.backoff
        replica._ejections.inc()
        replica._up.set(0)
        if len(self.replicas) > 1:  # one URL: the backend's reachability log says it
            log.warning(
                "backend %s replica %s ejected for %gs: %s",
                self.name,
                replica.url,
                replica.backoff,
                why,
            )

    def _admit(self, replica: Replica, why: str) -> None:  # under the lock
        replica.ejected_until = None
        replica._up.set(1)
        if len(self.replicas) > 1:
            log.warning("backend %s replica %s re-admitted: %s", self.name, replica.url, why)

    def _probe_returning(self) -> None:
        """Probe, in the background, each ejected replica whose back-off is
        over: re-admission does not wait for the next health round."""
        if self._probe is None:
            return
        now = self._clock()
        for replica in self.replicas:
            if replica.admitted or replica.probing or now < replica.ejected_until:
                continue
            replica.probing = True

            def run(replica: Replica = replica) -> None:
                try:
                    self.probed(replica, self._probe(replica.client))
                finally:
                    replica.probing = False

            threading.Thread(target=run, name="replica-probe", daemon=True).start()

    def status(self) -> list[dict]:
        now = self._clock()
        return [r.status(now) for r in self.replicas]
