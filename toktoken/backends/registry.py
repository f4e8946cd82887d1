"""Every configured backend, what it can do, and whether it is up.

``Backends`` owns one BackendClient per backend, the capability cache, and
the health probes (a background thread every HEALTH_INTERVAL seconds).
"""

from __future__ import annotations

import logging
import threading
import time

from ..config import Settings
from ..telemetry.metrics import BACKEND_UP
from .capabilities import Capabilities, CapabilityCache
from .client import BackendClient
from .health import Health, probe

log = logging.getLogger(__name__)


class Backends:
    def __init__(self, settings: Settings):
        self.health_interval = settings.health_interval
        pool = max(16, settings.worker_connections)
        self.clients = {
            b.name: BackendClient(
                b,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                pool_size=pool,
            )
            for b in settings.backends
        }
        self.all = list(self.clients.values())  # the default first, the vision backend last
        self.default = self.clients[settings.backend.name]
        self.vision = self.clients[settings.vision.name] if settings.vision else None
        self.capabilities = CapabilityCache(ttl=settings.capabilities_ttl)
        self._health: list[Health] | None = None
        self._health_at = 0.0

    def caps(self, backend: BackendClient) -> Capabilities:
        return self.capabilities.get(backend)

    def learn_context(self, backend: BackendClient, context: int) -> None:
        self.capabilities.learn_context(backend, context)

    def probe_all(self) -> list[Health]:
        results = [probe(backend) for backend in self.all]
        for health in results:
            BACKEND_UP.labels(health.name).set(1 if health.reachable else 0)
        self._health, self._health_at = results, time.monotonic()
        return results

    def health(self) -> list[Health]:
        """The latest probe results: probed in the background every
        HEALTH_INTERVAL seconds, or now if they are older than that."""
        if self._health is None or time.monotonic() - self._health_at > self.health_interval:
            return self.probe_all()
        return self._health

    def startup(self, log_probes: bool = True) -> list[Health]:
        """Probe every backend (one clear log line each), then learn what
        each reachable one is (kind, context window, tokenizer), then keep
        probing in the background."""
        results = self.probe_all()
        for health in results if log_probes else []:
            _log_probe(health)
        for backend, health in zip(self.all, results, strict=True):
            if health.reachable:
                self.capabilities.refresh(backend)
        threading.Thread(target=self._probe_forever, name="health-probe", daemon=True).start()
        return results

    def _probe_forever(self) -> None:
        previous = {h.name: h.reachable for h in self._health or []}
        while True:
            time.sleep(self.health_interval)
            for health in self.probe_all():
                was = previous.get(health.name)
                if was is not None and was != health.reachable:
                    state = "reachable again" if health.reachable else "NOT reachable"
                    log.warning("backend %s at %s is %s", health.name, health.url, state)
                    if health.reachable:
                        self.capabilities.refresh(self.clients[health.name])
                previous[health.name] = health.reachable


def _log_probe(health: Health) -> None:
    if not health.reachable:
        log.warning(
            "backend %s at %s is NOT reachable (%s): requests will fail until it is up",
            health.name,
            health.url,
            health.detail,
        )
        return
    extra = f", models: {', '.join(health.models)}" if health.models else ""
    note = f" ({health.detail})" if health.detail else ""
    log.info(
        "backend %s at %s is reachable in %s ms%s%s",
        health.name,
        health.url,
        health.latency_ms,
        note,
        extra,
    )
