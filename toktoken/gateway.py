"""The gateway's long-lived state: settings and one client per backend."""

from __future__ import annotations

import logging

from flask import current_app

from .backends import BackendClient, Health
from .config import Settings

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings):
        self.settings = settings
        pool = max(16, settings.worker_connections)

        def client(backend_settings):
            return BackendClient(
                backend_settings,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                pool_size=pool,
            )

        self.default = client(settings.backend)
        self.vision = client(settings.vision) if settings.vision else None
        self.backends = [self.default] + ([self.vision] if self.vision else [])

    def probe_all(self) -> list[Health]:
        return [backend.probe() for backend in self.backends]

    def log_probes(self) -> list[Health]:
        """One clear line per backend, for start-up."""
        results = self.probe_all()
        for health in results:
            if health.reachable:
                extra = f", models: {', '.join(health.models)}" if health.models else ""
                note = f" ({health.detail})" if health.detail else ""
                log.info(
                    "backend %s at %s is reachable in %s ms%s%s",
                    health.name, health.url, health.latency_ms, note, extra,
                )  # fmt: skip
            else:
                log.warning(
                    "backend %s at %s is NOT reachable (%s): requests will fail until it is up",
                    health.name, health.url, health.detail,
                )  # fmt: skip
        return results


def current_gateway() -> Gateway:
    return current_app.extensions["toktoken"]
