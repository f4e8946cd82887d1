"""The gateway's long-lived state: settings and one client per backend."""

from __future__ import annotations

import logging
import threading
import time

from flask import current_app

from .backends import BackendClient, Health
from .capabilities import Capabilities, CapabilityCache
from .config import Settings
from .errors import PromptTooLong
from .routing import Router
from .telemetry import Recorder, open_store
from .telemetry.metrics import BACKEND_UP
from .tokens import TokenCount, TokenCounter, fit_max_tokens, needs_count

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

        self.clients = {b.name: client(b) for b in settings.backends}
        self.backends = list(self.clients.values())
        self.default = self.clients[settings.backend.name]
        self.vision = self.clients[settings.vision.name] if settings.vision else None
        self.router = Router(settings.routes, self.clients, settings.backend.name)
        self.capabilities = CapabilityCache(ttl=settings.capabilities_ttl)
        self.counter = TokenCounter()
        self._health: list[Health] | None = None
        self._health_at = 0.0
        self.recorder: Recorder | None = None
        if settings.telemetry_enabled:
            self.recorder = Recorder(
                open_store(settings.telemetry_db),
                flush_interval=settings.telemetry_flush_interval,
                retention_days=settings.telemetry_retention_days,
            )

    def close(self) -> None:
        """Write what is still buffered (graceful worker exit)."""
        if self.recorder is not None:
            self.recorder.close()

    def caps(self, backend: BackendClient) -> Capabilities:
        return self.capabilities.get(backend)

    def count_prompt(self, backend: BackendClient, body: dict) -> TokenCount:
        return self.counter.count(backend, self.caps(backend), body)

    def fit(self, backend: BackendClient, body: dict, body_bytes: int) -> TokenCount | None:
        """Make ``body["max_tokens"]`` fit the backend's context window.
        Returns the prompt count when one was needed (exact or estimated)."""
        caps = self.caps(backend)
        margin = self.settings.context_margin
        if not needs_count(body["max_tokens"], body_bytes, caps.context, margin):
            return None
        prompt = self.counter.count(backend, caps, body)
        body["max_tokens"] = fit_max_tokens(body["max_tokens"], prompt, caps.context, margin)
        return prompt

    def refit_after_overflow(self, body: dict, exc: PromptTooLong) -> bool:
        """The backend said the request does not fit but the prompt alone does
        (max_tokens too large for a window we did not know): shrink max_tokens
        to what is left and say True so the caller retries once."""
        margin = self.settings.context_margin
        if exc.prompt_tokens is None or exc.context is None:
            return False
        room = exc.context - exc.prompt_tokens - margin
        if room < 1 or body["max_tokens"] <= room:
            return False
        body["max_tokens"] = room
        return True

    def probe_all(self) -> list[Health]:
        results = [backend.probe() for backend in self.backends]
        for health in results:
            BACKEND_UP.labels(health.name).set(1 if health.reachable else 0)
        self._health, self._health_at = results, time.monotonic()
        return results

    def health(self) -> list[Health]:
        """The latest probe results: probed in the background every
        HEALTH_INTERVAL seconds, or now if they are older than that."""
        if (
            self._health is None
            or time.monotonic() - self._health_at > self.settings.health_interval
        ):
            return self.probe_all()
        return self._health

    def _probe_forever(self) -> None:
        previous = {h.name: h.reachable for h in self._health or []}
        while True:
            time.sleep(self.settings.health_interval)
            for health in self.probe_all():
                if (
                    previous.get(health.name) is not None
                    and previous[health.name] != health.reachable
                ):
                    state = "reachable again" if health.reachable else "NOT reachable"
                    log.warning("backend %s at %s is %s", health.name, health.url, state)
                    if health.reachable:
                        self.capabilities.refresh(self.clients[health.name])
                previous[health.name] = health.reachable

    def startup(self, log_probes: bool = True) -> list[Health]:
        """Probe every backend (one clear log line each), then learn what
        each reachable one is (kind, context window, tokenizer)."""
        results = self.probe_all()
        for health in results if log_probes else []:
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
        for backend, health in zip(self.backends, results, strict=True):
            if health.reachable:
                self.capabilities.refresh(backend)
        threading.Thread(target=self._probe_forever, name="health-probe", daemon=True).start()
        return results


def current_gateway() -> Gateway:
    return current_app.extensions["toktoken"]
