"""Is a backend there? One timed ``GET /v1/models``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from .client import MODELS_PATH, BackendClient
from .failures import reason


@dataclass(frozen=True)
class Health:
    name: str
    url: str
    reachable: bool
    latency_ms: float | None
    detail: str | None = None
    models: tuple[str, ...] = ()
    replicas: tuple[Health, ...] = ()  # a backend's: each replica's own probe
    # The server answers whatever model name it is sent: llama.cpp's server
    # with one model loaded (its listing says owned_by "llamacpp").
    any_name: bool = False

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "url": self.url,
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "detail": self.detail,
        }


def probe(client: BackendClient, timeout: float = 3.0) -> Health:
    """llama.cpp-based servers block /v1/models while generating; a read
    timeout after a successful connect therefore counts as reachable (busy)."""
    started = time.monotonic()
    try:
        response = client.session.get(
            client.url + MODELS_PATH, timeout=(min(client.connect_timeout, timeout), timeout)
        )
    except requests.RequestException as exc:
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return Health(client.name, client.url, True, _ms(started), "busy: /v1/models timed out")
        return Health(client.name, client.url, False, None, reason(exc))
    latency = _ms(started)
    with response:
        if response.status_code >= 400:
            detail = f"/v1/models returned {response.status_code}"
            return Health(client.name, client.url, True, latency, detail)
        try:
            listed = [m for m in response.json().get("data", []) if m.get("id")]
            models = tuple(m["id"] for m in listed)
            any_name = len(listed) == 1 and listed[0].get("owned_by") == "llamacpp"
        except (ValueError, AttributeError, TypeError, KeyError):
            models, any_name = (), False
    return Health(client.name, client.url, True, latency, None, models, any_name=any_name)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
