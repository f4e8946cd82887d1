"""The gateway's long-lived parts, built once per worker from the settings:
the backends, the router, the pipeline, the sessions' prefix tracker, the
per-key limits and the usage recorder."""

from __future__ import annotations

from flask import current_app

from .access import Access
from .backends import Backends, Health
from .config import Settings
from .pipeline import Pipeline
from .routing import Router
from .sessions import PrefixTracker
from .telemetry import Recorder, open_store


class Gateway:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.backends = Backends(settings)
        self.router = Router(settings.routes, self.backends)
        self.pipeline = Pipeline(settings, self.backends, self.router)
        self.prefixes = PrefixTracker()
        self.access = Access(settings)
        self.recorder: Recorder | None = None
        if settings.telemetry_enabled:
            self.recorder = Recorder(
                open_store(settings.telemetry_db),
                flush_interval=settings.telemetry_flush_interval,
                retention_days=settings.telemetry_retention_days,
                backlog=settings.telemetry_backlog,
            )

    def startup(self, log_probes: bool = True) -> list[Health]:
        """Worker start-up: probe and discover the backends (gunicorn.conf.py)."""
        return self.backends.startup(log_probes)

    def close(self) -> None:
        """Write what is still buffered (graceful worker exit)."""
        if self.recorder is not None:
            self.recorder.close()


def current_gateway() -> Gateway:
    return current_app.extensions["toktoken"]
