"""Settings: read once at start-up, validated, then passed around.

Every value is checked at start-up so that a typo stops the process with one
line naming the variable, instead of failing on the first request.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from . import env as envvars
from .file import load
from .keys import check_unique
from .model import (
    DEFAULT_API_KEY,
    BackendSettings,
    ClientKey,
    ConfigError,
    Limits,
    Route,
    key_digest,
)

DEFAULT_BACKEND = BackendSettings("default", "http://localhost:8000", None, "qwen3-coder-30b-fp8")
VISION_BACKEND = BackendSettings("vision", "", None, "gpt-4-vision", vision=True)


@dataclass(frozen=True)
class Settings:
    port: int = 3456
    host: str = "0.0.0.0"
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    backend: BackendSettings = DEFAULT_BACKEND
    vision: BackendSettings | None = None
    # From TOKTOKEN_CONFIG: more backends, and routes from model names to them.
    others: tuple[BackendSettings, ...] = ()
    routes: tuple[Route, ...] = ()
    config_file: str | None = None
    telemetry_enabled: bool = False
    telemetry_db: str = "toktoken-usage.db"
    telemetry_flush_interval: float = 1.0
    telemetry_retention_days: int = 0  # 0: keep every record
    # Records kept in memory per worker while the ledger is down.
    telemetry_backlog: int = 100_000
    log_level: str = "info"
    log_format: str = "text"  # text | json
    health_interval: float = 15.0
    max_request_bytes: int = 32 * 1024 * 1024
    connect_timeout: float = 10.0
    # Seconds without a byte from the backend before a request fails. Prefill
    # of a 100k-token prompt can take minutes on a busy GPU, so be generous.
    read_timeout: float = 600.0
    ping_interval: float = 10.0
    # Tokens kept free between prompt + max_tokens and the context window.
    context_margin: int = 64
    capabilities_ttl: float = 300.0
    workers: int = 1
    worker_connections: int = 1000
    graceful_timeout: int = 120
    # A backend's replicas (backends/replicas.py): failures in a row before a
    # replica is ejected, and the first ejection's length (then doubled).
    replica_failures: int = 3
    replica_eject_seconds: float = 10.0
    # Sent upstream with the session id, for routers that hash on it.
    forward_session_header: str | None = None
    # Who may call, by name (API_KEY's keys are key-1, key-2, …, admins;
    # [keys.NAME] in the file), with their limits and models (access.py).
    keys: tuple[ClientKey, ...] = ()
    limits: Limits = Limits()  # [limits]: the defaults every key starts from
    limits_storage: str = "memory://"  # or redis://host:6379 (shared by workers and instances)
    dashboard_secret: str | None = None
    # Signs the dashboard's session cookies: from the secret keys this
    # configuration holds (and DASHBOARD_SECRET), so every worker and instance
    # agrees; random when it holds only hashes (one instance's workers agree).
    session_secret: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            keys = tuple(
                ClientKey(f"key-{i}", key_digest(k), admin=True, limits=self.limits)
                for i, k in enumerate(self.api_keys, 1)
            )
            object.__setattr__(self, "keys", keys)
        if not self.session_secret:
            raw = sorted(self.api_keys) + ([self.dashboard_secret] if self.dashboard_secret else [])
            object.__setattr__(self, "session_secret", _secret(raw))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values = envvars.read(env, envvars.SETTINGS_VARS)
        backend = replace(DEFAULT_BACKEND, **envvars.read(env, envvars.BACKEND_VARS, "VLLM_"))
        # VISION_* are read (so a typo is caught) even before VISION_URL is set.
        vision_values = envvars.read(env, envvars.BACKEND_VARS, "VISION_")
        vision = replace(VISION_BACKEND, **vision_values) if "urls" in vision_values else None
        others: tuple[BackendSettings, ...] = ()
        routes: tuple[Route, ...] = ()
        file_keys: tuple[ClientKey, ...] = ()
        limits, secrets = Limits(), ()
        loaded = load(values["config_file"], env) if values.get("config_file") else None
        if loaded is not None:
            file_keys, limits, secrets = loaded.keys, loaded.limits, loaded.key_secrets
        if loaded is not None and loaded.backends:
            # The file describes every backend; VISION_* still add a vision
            # backend when the file names none.
            by_name = {b.name: b for b in loaded.backends}
            backend = by_name[loaded.default]
            others = tuple(b for b in loaded.backends if b.name != loaded.default)
            routes = loaded.routes
            file_vision = next((b for b in loaded.backends if b.vision), None)
            if file_vision is not None:
                vision = file_vision
                others = tuple(b for b in others if b.name != file_vision.name)
            elif vision is not None and vision.name in by_name:
                raise ConfigError(
                    "VISION_URL", "unset when TOKTOKEN_CONFIG defines a backend named vision"
                )
        # API_KEY's keys, unless only the file names keys; then the file's.
        api_keys = values.pop("api_keys", None)
        if api_keys is None:
            api_keys = () if file_keys else (DEFAULT_API_KEY,)
        keys = tuple(
            ClientKey(f"key-{i}", key_digest(k), admin=True, limits=limits)
            for i, k in enumerate(api_keys, 1)
        )
        keys += file_keys
        check_unique(keys)
        raw = sorted(api_keys) + sorted(secrets)
        if values.get("dashboard_secret"):
            raw.append(values["dashboard_secret"])
        if not keys:
            raise ConfigError("API_KEY", "set, or keys named in TOKTOKEN_CONFIG ([keys.NAME])")
        return cls(
            backend=backend,
            vision=vision,
            others=others,
            routes=routes,
            api_keys=api_keys,
            keys=keys,
            limits=limits,
            session_secret=_secret(raw),
            **values,
        )

    @property
    def backends(self) -> list[BackendSettings]:
        """Every backend once: the default first, the vision backend last."""
        return [self.backend, *self.others] + ([self.vision] if self.vision else [])

    def uses_default_key_publicly(self) -> bool:
        """True when the well-known default key guards a non-loopback listener."""
        return DEFAULT_API_KEY in self.api_keys and not _is_loopback(self.host)

    def describe(self) -> dict:
        """The effective configuration, secrets masked (``python -m toktoken check``)."""
        return {
            **envvars.describe(self, envvars.SETTINGS_VARS),
            "backends": [b.describe() for b in self.backends],
            "keys": [
                {
                    "name": k.name,
                    "admin": k.admin,
                    "models": list(k.models) or "all",
                    **{n: v for n, v in k.limits.as_dict().items() if v is not None},
                }
                for k in self.keys
            ],  # fmt: skip
            "routes": [f"{r.pattern} -> {r.backend}" for r in self.routes],
        }

    @property
    def logging_level(self) -> int:
        return getattr(logging, self.log_level.upper())


def _secret(raw: list[str]) -> bytes:
    if not raw:
        return os.urandom(32)
    return hashlib.sha256(b"toktoken-dashboard-session\n" + "\n".join(raw).encode()).digest()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# The settings this process runs with, once validated (see gunicorn.conf.py):
# gunicorn's master validates the configuration at start-up and at each
# SIGHUP reload, and the workers it forks inherit what it kept — the last
# configuration that validated, so a broken file is refused by the master
# instead of stopping every new worker.
_running: Settings | None = None


def running() -> Settings | None:
    return _running


def keep_running(settings: Settings) -> None:
    global _running
    _running = settings
