"""Settings: read from the environment once, validated, then passed around.

Every value is checked at start-up so that a typo stops the process with one
line naming the variable, instead of failing on the first request.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_API_KEY = "sk-anthropic-router"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
BACKEND_KINDS = ("auto", "vllm", "llamacpp", "ollama", "openai")
COUNT_TOKENS_MODES = ("auto", "probe", "estimate")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(ValueError):
    """A configuration value is invalid. str() is the one line to print."""

    def __init__(self, variable: str, expected: str, got: str | None = None):
        self.variable = variable
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"invalid configuration: {variable} must be {expected}{shown}")


@dataclass(frozen=True)
class BackendSettings:
    """One upstream server and how to reach it."""

    name: str
    url: str  # scheme://host[:port][/prefix], no trailing slash, no trailing /v1
    api_key: str | None
    model: str
    anthropic_native: bool = False
    kind: str = "auto"  # auto | vllm | llamacpp | ollama | openai
    context: int | None = None  # context window in tokens; None: discover
    count_tokens: str = "auto"  # auto | probe | estimate
    vision: bool = False  # serves requests that carry images
    quirks: tuple[str, ...] = ()  # named behaviours, see convert/quirks.py

    def describe(self) -> dict:
        return {
            "name": self.name,
            "url": self.url,
            "model": self.model,
            "api_key": mask(self.api_key),
            "anthropic_native": self.anthropic_native,
            "kind": self.kind,
            "context": self.context,
            "count_tokens": self.count_tokens,
            "vision": self.vision,
            "quirks": list(self.quirks),
        }


@dataclass(frozen=True)
class Route:
    """Requests for models matching ``pattern`` (shell-style, case-insensitive)
    go to the backend named ``backend``."""

    pattern: str
    backend: str


@dataclass(frozen=True)
class Settings:
    port: int = 3456
    host: str = "0.0.0.0"
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    backend: BackendSettings = field(
        default_factory=lambda: BackendSettings(
            "default", "http://localhost:8000", None, "qwen3-coder-30b-fp8"
        )
    )
    vision: BackendSettings | None = None
    # From TOKTOKEN_CONFIG: more backends, and routes from model names to them.
    others: tuple[BackendSettings, ...] = ()
    routes: tuple[Route, ...] = ()
    config_file: str | None = None
    telemetry_enabled: bool = False
    telemetry_db: str = "toktoken-usage.db"
    telemetry_flush_interval: float = 1.0
    telemetry_retention_days: int = 0  # 0: keep every record
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        r = _Reader(env)
        backend = BackendSettings(
            name="default",
            url=r.url("VLLM_URL", "http://localhost:8000"),
            api_key=r.optional("VLLM_API_KEY"),
            model=r.text("VLLM_MODEL", "qwen3-coder-30b-fp8"),
            kind=r.choice("VLLM_KIND", "auto", BACKEND_KINDS),
            context=r.integer("VLLM_CONTEXT", 0, 0, 10**8) or None,
            count_tokens=r.choice("VLLM_COUNT_TOKENS", "auto", COUNT_TOKENS_MODES),
            quirks=r.quirks("VLLM_QUIRKS"),
        )
        vision_url = r.optional("VISION_URL")
        vision = None
        if vision_url:
            vision = BackendSettings(
                name="vision",
                url=r.url("VISION_URL", None),
                api_key=r.optional("VISION_API_KEY"),
                model=r.text("VISION_MODEL", "gpt-4-vision"),
                anthropic_native=r.boolean("VISION_ANTHROPIC_NATIVE", False),
                vision=True,
            )
        else:
            # Still validate, so a typo is caught before VISION_URL is set.
            r.boolean("VISION_ANTHROPIC_NATIVE", False)
        others: tuple[BackendSettings, ...] = ()
        routes: tuple[Route, ...] = ()
        config_file = r.optional("TOKTOKEN_CONFIG")
        if config_file:
            # The file describes every backend; VISION_* still add a vision
            # backend when the file names none.
            from .config_file import load

            loaded = load(config_file, env)
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
        keys = tuple(k.strip() for k in r.text("API_KEY", DEFAULT_API_KEY).split(","))
        if not all(keys):
            raise ConfigError("API_KEY", "one key or several comma-separated non-empty keys")
        return cls(
            port=r.integer("PORT", 3456, 1, 65535),
            host=r.text("HOST", "0.0.0.0"),
            api_keys=keys,
            backend=backend,
            vision=vision,
            others=others,
            routes=routes,
            config_file=config_file,
            telemetry_enabled=r.boolean("TELEMETRY_ENABLED", False),
            telemetry_db=r.text("TELEMETRY_DB", "toktoken-usage.db"),
            telemetry_flush_interval=r.number("TELEMETRY_FLUSH_INTERVAL", 1.0),
            telemetry_retention_days=r.integer("TELEMETRY_RETENTION_DAYS", 0, 0, 100000),
            log_level=r.choice("LOG_LEVEL", "info", LOG_LEVELS),
            log_format=r.choice("LOG_FORMAT", "text", ("text", "json")),
            health_interval=r.number("HEALTH_INTERVAL", 15.0),
            max_request_bytes=r.integer("MAX_REQUEST_BYTES", 32 * 1024 * 1024, 1024, 2**31),
            connect_timeout=r.number("BACKEND_CONNECT_TIMEOUT", 10.0),
            read_timeout=r.number("BACKEND_READ_TIMEOUT", 600.0),
            ping_interval=r.number("STREAM_PING_INTERVAL", 10.0),
            context_margin=r.integer("CONTEXT_MARGIN", 64, 0, 100000),
            capabilities_ttl=r.number("CAPABILITIES_TTL", 300.0),
            workers=r.integer("WORKERS", 1, 1, 256),
            worker_connections=r.integer("WORKER_CONNECTIONS", 1000, 1, 100000),
            graceful_timeout=r.integer("GRACEFUL_TIMEOUT", 120, 1, 86400),
        )

    @property
    def backends(self) -> list[BackendSettings]:
        """Every backend once: the default first, the vision backend last."""
        return [self.backend, *self.others] + ([self.vision] if self.vision else [])

    def uses_default_key_publicly(self) -> bool:
        """True when the well-known default key guards a non-loopback listener."""
        return DEFAULT_API_KEY in self.api_keys and not _is_loopback(self.host)

    def describe(self) -> dict:
        return {
            "PORT": self.port,
            "HOST": self.host,
            "API_KEY": ", ".join(mask(k) for k in self.api_keys),
            "TOKTOKEN_CONFIG": self.config_file,
            "backends": [b.describe() for b in self.backends],
            "routes": [f"{r.pattern} -> {r.backend}" for r in self.routes],
            "TELEMETRY_ENABLED": self.telemetry_enabled,
            "TELEMETRY_DB": self.telemetry_db,
            "TELEMETRY_FLUSH_INTERVAL": self.telemetry_flush_interval,
            "TELEMETRY_RETENTION_DAYS": self.telemetry_retention_days,
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": self.log_format,
            "HEALTH_INTERVAL": self.health_interval,
            "MAX_REQUEST_BYTES": self.max_request_bytes,
            "BACKEND_CONNECT_TIMEOUT": self.connect_timeout,
            "BACKEND_READ_TIMEOUT": self.read_timeout,
            "STREAM_PING_INTERVAL": self.ping_interval,
            "CONTEXT_MARGIN": self.context_margin,
            "CAPABILITIES_TTL": self.capabilities_ttl,
            "WORKERS": self.workers,
            "WORKER_CONNECTIONS": self.worker_connections,
            "GRACEFUL_TIMEOUT": self.graceful_timeout,
        }

    @property
    def logging_level(self) -> int:
        return getattr(logging, self.log_level.upper())


def mask(secret: str | None) -> str | None:
    """Show enough of a key to recognise it, never enough to use it."""
    if not secret:
        return None
    if len(secret) <= 8:
        return "****"
    return f"{secret[:4]}…{secret[-2:]}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Reader:
    """Typed access to environment variables; every failure is a ConfigError."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def optional(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"an integer from {low} to {high}", raw) from None
        if not low <= value <= high:
            raise ConfigError(name, f"an integer from {low} to {high}", raw)
        return value

    def number(self, name: str, default: float) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, "a positive number of seconds", raw) from None
        if not value > 0:
            raise ConfigError(name, "a positive number of seconds", raw)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        raw = self.env.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False if value else default
        raise ConfigError(name, "true or false", raw)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() not in choices:
            raise ConfigError(name, "one of " + ", ".join(choices), raw)
        return raw.lower()

    def quirks(self, name: str) -> tuple[str, ...]:
        raw = self.optional(name)
        if raw is None:
            return ()
        return check_quirks(name, [q.strip() for q in raw.split(",") if q.strip()])

    def url(self, name: str, default: str | None) -> str:
        return normalise_url(name, self.optional(name) or default)


def check_quirks(name: str, quirks) -> tuple[str, ...]:
    from .convert.quirks import QUIRKS

    if not isinstance(quirks, list) or any(q not in QUIRKS for q in quirks):
        raise ConfigError(name, "a list of quirks among: " + ", ".join(QUIRKS), str(quirks))
    return tuple(quirks)


def normalise_url(name: str, raw) -> str:
    """Validate a backend URL; strip a trailing slash and a trailing /v1
    (people paste the OpenAI base URL; we add /v1 ourselves)."""
    expected = "an http:// or https:// URL such as http://localhost:8000"
    if not isinstance(raw, str) or not raw:
        raise ConfigError(name, expected)
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, expected, raw)
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ConfigError(name, expected, raw) from None
    url = raw.rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    return url
