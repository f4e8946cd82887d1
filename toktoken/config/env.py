"""Environment variables: one table says which variable sets which field and
how its text is parsed. Defaults live once, on the dataclasses (model.py,
settings.py); a variable that is unset or blank keeps its field's default.
``describe()`` reads the same table, so a new variable is one row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .model import (
    BACKEND_KINDS,
    COUNT_TOKENS_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    TEXT_TOOL_MODES,
    ConfigError,
    check_quirks,
    mask,
    normalise_url,
    normalise_urls,
)

Parser = Callable[[str, str], object]  # (variable, stripped text) -> value; raises ConfigError
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def integer(low: int, high: int) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"an integer from {low} to {high}", raw) from None
        if not low <= value <= high:
            raise ConfigError(name, f"an integer from {low} to {high}", raw)
        return value

    return parse


def seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, "a positive number of seconds", raw) from None
    if not value > 0:
        raise ConfigError(name, "a positive number of seconds", raw)
    return value


def boolean(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(name, "true or false", raw)
    return value in _TRUE


def choice(*choices: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw.lower() not in choices:
            raise ConfigError(name, "one of " + ", ".join(choices), raw)
        return raw.lower()

    return parse


def text(name: str, raw: str) -> str:
    return raw


def url(name: str, raw: str) -> str:
    return normalise_url(name, raw)


def urls(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated: the replicas of one backend."""
    return normalise_urls(name, [u.strip() for u in raw.split(",")])


def limits_storage(name: str, raw: str) -> str:
    """Where per-key limits are counted: limits' storage URIs."""
    schemes = ("memory://", "redis://", "rediss://", "redis+unix://", "redis+sentinel://")
    if not raw.startswith(schemes):
        raise ConfigError(name, "memory:// or a redis:// URL such as redis://127.0.0.1:6379", raw)
    return raw


def header_name(name: str, raw: str) -> str:
    if not all(c.isalnum() or c in "-_" for c in raw):
        raise ConfigError(name, "an HTTP header name such as x-session-id", raw)
    return raw.lower()


def quirks(name: str, raw: str) -> tuple[str, ...]:
    return check_quirks(name, [q.strip() for q in raw.split(",") if q.strip()])


def keys(name: str, raw: str) -> tuple[str, ...]:
    found = tuple(k.strip() for k in raw.split(","))
    if not all(found):
        raise ConfigError(name, "one key or several comma-separated non-empty keys")
    return found


def context(name: str, raw: str) -> int | None:
    return integer(0, 10**8)(name, raw) or None  # 0: discover


@dataclass(frozen=True)
class Var:
    name: str
    field: str
    parse: Parser
    secret: bool = False


# Settings fields (settings.py), in the order `check` prints them.
SETTINGS_VARS = (
    Var("PORT", "port", integer(1, 65535)),
    Var("HOST", "host", text),
    Var("API_KEY", "api_keys", keys, secret=True),
    Var("TOKTOKEN_CONFIG", "config_file", text),
    Var("TELEMETRY_ENABLED", "telemetry_enabled", boolean),
    Var("TELEMETRY_DB", "telemetry_db", text),
    Var("TELEMETRY_FLUSH_INTERVAL", "telemetry_flush_interval", seconds),
    Var("TELEMETRY_RETENTION_DAYS", "telemetry_retention_days", integer(0, 100000)),
    Var("TELEMETRY_BACKLOG", "telemetry_backlog", integer(100, 10**8)),
    Var("LOG_LEVEL", "log_level", choice(*LOG_LEVELS)),
    Var("LOG_FORMAT", "log_format", choice(*LOG_FORMATS)),
    Var("HEALTH_INTERVAL", "health_interval", seconds),
    Var("MAX_REQUEST_BYTES", "max_request_bytes", integer(1024, 2**31)),
    Var("BACKEND_CONNECT_TIMEOUT", "connect_timeout", seconds),
    Var("BACKEND_READ_TIMEOUT", "read_timeout", seconds),
    Var("STREAM_PING_INTERVAL", "ping_interval", seconds),
    Var("CONTEXT_MARGIN", "context_margin", integer(0, 100000)),
    Var("CAPABILITIES_TTL", "capabilities_ttl", seconds),
    Var("WORKERS", "workers", integer(1, 256)),
    Var("WORKER_CONNECTIONS", "worker_connections", integer(1, 100000)),
    Var("GRACEFUL_TIMEOUT", "graceful_timeout", integer(1, 86400)),
    Var("REPLICA_FAILURES", "replica_failures", integer(1, 1000)),
    Var("REPLICA_EJECT_SECONDS", "replica_eject_seconds", seconds),
    Var("FORWARD_SESSION_HEADER", "forward_session_header", header_name),
    Var("LIMITS_STORAGE", "limits_storage", limits_storage, secret=True),
    Var("DASHBOARD_SECRET", "dashboard_secret", text, secret=True),
)

# BackendSettings fields, after a prefix: VLLM_ for the default backend,
# VISION_ for the vision backend.
BACKEND_VARS = (
    Var("URL", "urls", urls),
    Var("API_KEY", "api_key", text, secret=True),
    Var("MODEL", "model", text),
    Var("ANTHROPIC_NATIVE", "anthropic_native", boolean),
    Var("KIND", "kind", choice(*BACKEND_KINDS)),
    Var("CONTEXT", "context", context),
    Var("COUNT_TOKENS", "count_tokens", choice(*COUNT_TOKENS_MODES)),
    Var("QUIRKS", "quirks", quirks),
    Var("TEXT_TOOL_CALLS", "text_tool_calls", choice(*TEXT_TOOL_MODES)),
)


def read(env: Mapping[str, str], table: tuple[Var, ...], prefix: str = "") -> dict:
    """{field: value} for every variable of ``table`` that is set and not blank."""
    found = {}
    for var in table:
        name = prefix + var.name
        raw = env.get(name, "").strip()
        if raw:
            found[var.field] = var.parse(name, raw)
    return found


def describe(obj, table: tuple[Var, ...], prefix: str = "") -> dict:
    """{variable: effective value}, secrets masked."""
    out = {}
    for var in table:
        value = getattr(obj, var.field)
        if var.secret:
            values = value if isinstance(value, tuple) else (value,)
            value = ", ".join(m for m in map(mask, values) if m) or None
        elif isinstance(value, tuple):
            value = ",".join(value)
        out[prefix + var.name] = value
    return out
