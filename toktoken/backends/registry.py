"""Every configured backend, what it can do, and whether it is up.

``Backends`` owns one ReplicaSet per backend (one BackendClient per replica
URL), the capability cache, and the health of every replica: probed in the
background every HEALTH_INTERVAL seconds, and in between told by requests
(a refused connection marks a replica unreachable at once, an answer marks
it reachable again). Each probe also checks that the backend serves the
configured model (see ``served_model``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from ..config import Settings
from ..telemetry.metrics import BACKEND_UP
from .capabilities import Capabilities, CapabilityCache
from .client import BackendClient
from .health import Health, probe
from .replicas import Replica, ReplicaSet

log = logging.getLogger(__name__)


class Backends:
    def __init__(self, settings: Settings):
        self.health_interval = settings.health_interval
        pool = max(16, settings.worker_connections)
        self.by_name: dict[str, ReplicaSet] = {}
        for b in settings.backends:
            clients = [
                BackendClient(
                    b,
                    connect_timeout=settings.connect_timeout,
                    read_timeout=settings.read_timeout,
                    pool_size=pool,
                    url=url,
                )
                for url in b.urls
            ]
            self.by_name[b.name] = ReplicaSet(
                b,
                clients,
                failures=settings.replica_failures,
                backoff=settings.replica_eject_seconds,
                probe=probe,
            )
        self.all = list(self.by_name.values())  # the default first, the vision backend last
        self.default = self.by_name[settings.backend.name]
        self.vision = self.by_name[settings.vision.name] if settings.vision else None
        self.capabilities = CapabilityCache(ttl=settings.capabilities_ttl)
        self._health: list[Health] | None = None
        self._health_at = 0.0
        self._position = {b.name: i for i, b in enumerate(self.all)}
        self._lock = threading.Lock()
        # The configured model names, and what each backend's listing says of them.
        self.configured_models = {b.name: b.model for b in self.all}
        self.model_problems: dict[str, str] = {}
        for backend in self.all:
            backend.observe = self._observed

    def caps(self, backend: ReplicaSet) -> Capabilities:
        """A backend's capabilities. With replicas: each replica's are
        discovered, and the backend's context window is the smallest known."""
        clients = backend.clients
        first = self.capabilities.get(clients[0])
        if len(clients) == 1:
            return first
        every = [first] + [self.capabilities.get(c) for c in clients[1:]]
        base = next((c for c in every if c.reachable), first)
        known = [c for c in every if c.context]
        if not known:
            return base
        smallest = min(known, key=lambda c: c.context)
        return replace(base, context=smallest.context, context_source=smallest.context_source)

    def learn_context(self, client: BackendClient, context: int) -> None:
        self.capabilities.learn_context(client, context)

    def probe_all(self) -> list[Health]:
        """Probe every replica; one Health per backend (reachable while any
        replica is), each replica's own in ``replicas``."""
        results = []
        for backend in self.all:
            each = []
            for replica in backend.replicas:
                health = probe(replica.client)
                backend.probed(replica, health)
                each.append(health)
            results.append(_combined(backend, each))
        for backend, health in zip(self.all, results, strict=True):
            BACKEND_UP.labels(health.name).set(1 if health.reachable else 0)
            if health.models and not health.any_name:
                self._check_model(backend, health.models)
        self._health, self._health_at = results, time.monotonic()
        return results

    def _check_model(self, backend: ReplicaSet, models: tuple[str, ...]) -> None:
        """The backend lists ``models``: use the configured model, or the only
        one it serves; else say which it serves (logged once per change)."""
        configured = self.configured_models[backend.name]
        use, problem = served_model(configured, models)
        if use != backend.model:
            backend.model = use
            for client in backend.clients:
                client.model = use
            if use == configured:
                log.warning("backend %s serves the configured model %r again", backend.name, use)
                return
            log.warning(
                "backend %s serves one model, %r, not the configured %r: sending %r "
                "(set %s to it to silence this)",
                backend.name,
                use,
                configured,
                use,
                "VLLM_MODEL" if backend.name == "default" else f"backends.{backend.name}.model",
            )
        if problem != self.model_problems.get(backend.name):
            if problem:
                self.model_problems[backend.name] = problem
                log.warning("backend %s: %s: requests will fail", backend.name, problem)
            else:
                self.model_problems.pop(backend.name, None)

    def _observed(
        self, backend: ReplicaSet, replica: Replica, reachable: bool, why: str | None
    ) -> None:
        """A request learned whether ``replica`` can be reached: the health
        snapshot says so now, not at the next probe."""
        results = self._health
        if results is None:
            return
        at = self._position[backend.name]
        if results[at].replicas[replica.index].reachable == reachable:
            return  # nothing new: the common case, one lookup
        with self._lock:
            results = list(self._health)
            each = list(results[at].replicas)
            was = each[replica.index]
            if was.reachable == reachable:
                return
            each[replica.index] = replace(
                was,
                reachable=reachable,
                latency_ms=was.latency_ms if reachable else None,
                detail=None if reachable else f"a request: {why}",
            )
            results[at] = _combined(backend, each)
            self._health = results
        BACKEND_UP.labels(backend.name).set(1 if results[at].reachable else 0)
        state = (
            "reachable again (a request was answered)" if reachable else f"NOT reachable ({why})"
        )
        log.warning("backend %s at %s is %s", backend.name, replica.url, state)
        if reachable:
            self.capabilities.refresh_soon(replica.client)

    def health(self) -> list[Health]:
        """The latest probe results: probed in the background every
        HEALTH_INTERVAL seconds, or now if they are older than that."""
        if self._health is None or time.monotonic() - self._health_at > self.health_interval:
            return self.probe_all()
        return self._health

    def replicas(self) -> list[list[dict]]:
        """Per backend, each replica now: its state (up or ejected), requests
        in flight, failures, last error, and its latest probe."""
        out = []
        for backend, health in zip(self.all, self.health(), strict=True):
            out.append(
                [
                    dict(state, reachable=probed.reachable, latency_ms=probed.latency_ms)
                    for state, probed in zip(backend.status(), health.replicas, strict=True)
                ]
            )
        return out

    def startup(self, log_probes: bool = True) -> list[Health]:
        """Probe every backend (one clear log line each), then learn what
        each reachable one is (kind, context window, tokenizer), then keep
        probing in the background."""
        results = self.probe_all()
        for health in results if log_probes else []:
            for each in health.replicas:
                _log_probe(each)
        for backend, health in zip(self.all, results, strict=True):
            for client, each in zip(backend.clients, health.replicas, strict=True):
                if each.reachable:
                    self.capabilities.refresh(client)
        threading.Thread(target=self._probe_forever, name="health-probe", daemon=True).start()
        return results

    def _probe_forever(self) -> None:
        while True:
            time.sleep(self.health_interval)
            # What was known before this probe (requests may have changed it).
            previous = {
                (e.name, e.url): e.reachable for h in self._health or [] for e in h.replicas
            }
            for backend, health in zip(self.all, self.probe_all(), strict=True):
                for client, each in zip(backend.clients, health.replicas, strict=True):
                    was = previous.get((each.name, each.url))
                    if was is not None and was != each.reachable:
                        state = "reachable again" if each.reachable else "NOT reachable"
                        log.warning("backend %s at %s is %s", each.name, each.url, state)
                        if each.reachable:
                            self.capabilities.refresh(client)


def served_model(configured: str, models: tuple[str, ...]) -> tuple[str, str | None]:
    """The model to send, given what the backend lists, and what is wrong
    (None: nothing). vLLM serves the Hugging Face id unless told a
    ``--served-model-name``; Ollama's ``name`` means ``name:latest``."""
    if not models or configured in models:
        return configured, None
    if ":" not in configured and f"{configured}:latest" in models:
        return configured, None
    if len(models) == 1:
        return models[0], None
    shown = ", ".join(models[:20]) + (f", … ({len(models)} in all)" if len(models) > 20 else "")
    return configured, f"model {configured!r} is not served (it serves: {shown})"


def _combined(backend: ReplicaSet, each: list[Health]) -> Health:
    """One backend's health from its replicas' (one replica: its own)."""
    if len(each) == 1:
        return replace(each[0], replicas=tuple(each))
    up = [h for h in each if h.reachable]
    detail = None if len(up) == len(each) else f"{len(up)} of {len(each)} replicas reachable"
    return Health(
        backend.name,
        backend.url,
        bool(up),
        min((h.latency_ms for h in up if h.latency_ms is not None), default=None),
        detail,
        up[0].models if up else (),
        tuple(each),
        any_name=bool(up) and all(h.any_name for h in up),
    )


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
