"""The optional configuration file (TOML): several backends and model routes.

Path from ``TOKTOKEN_CONFIG``. Without it, the environment variables describe
one backend (VLLM_*) and an optional vision backend (VISION_*), as before.
See docs/configuration.md for the format. Every mistake is a ConfigError that
names the file, the key and what is expected.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass

from .keys import parse_keys, parse_limits
from .model import (
    BACKEND_KINDS,
    COUNT_TOKENS_MODES,
    TEXT_TOOL_MODES,
    BackendSettings,
    ClientKey,
    ConfigError,
    Limits,
    Route,
    check_quirks,
    normalise_url,
    normalise_urls,
    only_known,
)

_BACKEND_KEYS = {
    "url", "urls", "api_key", "api_key_env", "model", "kind", "context", "count_tokens",
    "vision", "anthropic_native", "quirks", "text_tool_calls",
}  # fmt: skip
_ROUTE_KEYS = {"match", "backend"}


@dataclass(frozen=True)
class FileConfig:
    backends: tuple[BackendSettings, ...]
    routes: tuple[Route, ...]
    default: str  # name of the backend for models no route matches
    keys: tuple[ClientKey, ...] = ()  # [keys.NAME] (config/keys.py)
    limits: Limits = Limits()  # [limits]: defaults for every key
    key_secrets: tuple[str, ...] = ()  # keys read from the environment (key_env)


def load(path: str, env: Mapping[str, str] | None = None) -> FileConfig:
    env = os.environ if env is None else env
    where = f"TOKTOKEN_CONFIG ({path})"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("TOKTOKEN_CONFIG", "the path of a readable TOML file", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"valid TOML ({exc})") from None
    unknown = set(data) - {"backends", "routes", "default_backend", "keys", "limits"}
    if unknown:
        raise ConfigError(
            where,
            "made of [backends.NAME], [[routes]], default_backend, [keys.NAME] and [limits]",
            ", ".join(sorted(unknown)),
        )

    limits = parse_limits(f"{where}: limits", data.get("limits"))
    keys, secrets = parse_keys(where, data.get("keys"), limits, env)
    if "backends" not in data and "routes" not in data and ("keys" in data or "limits" in data):
        # Keys only: the backends stay those of the environment (VLLM_*, VISION_*).
        return FileConfig((), (), "", keys, limits, secrets)
    tables = data.get("backends")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(where, "at least one [backends.NAME] table")
    backends = tuple(_backend(where, name, table, env) for name, table in tables.items())
    names = [b.name for b in backends]

    default = data.get("default_backend") or ("default" if "default" in names else names[0])
    if default not in names:
        raise ConfigError(
            f"{where}: default_backend", "the name of a [backends.NAME] table", default
        )

    routes = []
    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{where}: routes", "an array of tables ([[routes]])")
    for i, route in enumerate(raw_routes):
        key = f"{where}: routes[{i}]"
        if not isinstance(route, dict) or set(route) - _ROUTE_KEYS:
            raise ConfigError(key, 'a table with "match" and "backend"', str(route))
        pattern, target = route.get("match"), route.get("backend")
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(
                f"{key}.match", 'a model-name pattern such as "*haiku*"', str(pattern)
            )
        if target not in names:
            raise ConfigError(f"{key}.backend", "the name of a [backends.NAME] table", str(target))
        routes.append(Route(pattern, target))
    return FileConfig(backends, tuple(routes), default, keys, limits, secrets)


def _backend(where: str, name: str, table, env: Mapping[str, str]) -> BackendSettings:
    key = f"{where}: backends.{name}"
    if not isinstance(table, dict):
        raise ConfigError(key, "a table")
    only_known(key, table, sorted(_BACKEND_KEYS))
    if "urls" in table:  # replicas (backends/replicas.py)
        if "url" in table:
            raise ConfigError(f"{key}.urls", "set alone: url (one) or urls (replicas), not both")
        urls = normalise_urls(f"{key}.urls", table["urls"])
    else:
        urls = (normalise_url(f"{key}.url", table.get("url")),)
    model = table.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{key}.model", "the model name the backend serves")
    api_key = table.get("api_key")
    if table.get("api_key_env"):
        api_key = env.get(str(table["api_key_env"])) or None
    kind = table.get("kind", "auto")
    if kind not in BACKEND_KINDS:
        raise ConfigError(f"{key}.kind", "one of " + ", ".join(BACKEND_KINDS), str(kind))
    context = table.get("context")
    if context is not None and (not isinstance(context, int) or context < 1):
        raise ConfigError(f"{key}.context", "a positive number of tokens", str(context))
    count_tokens = table.get("count_tokens", "auto")
    if count_tokens not in COUNT_TOKENS_MODES:
        raise ConfigError(f"{key}.count_tokens", "one of " + ", ".join(COUNT_TOKENS_MODES))
    for flag in ("vision", "anthropic_native"):
        if not isinstance(table.get(flag, False), bool):
            raise ConfigError(f"{key}.{flag}", "true or false", str(table[flag]))
    text_tools = table.get("text_tool_calls", "auto")
    if isinstance(text_tools, bool):
        text_tools = "auto" if text_tools else "off"
    if text_tools not in TEXT_TOOL_MODES:
        raise ConfigError(
            f"{key}.text_tool_calls",
            "true, false or one of " + ", ".join(TEXT_TOOL_MODES[2:]),
            str(text_tools),
        )
    return BackendSettings(
        name=name,
        url=urls[0],
        urls=urls,
        api_key=api_key,
        model=model,
        anthropic_native=table.get("anthropic_native", False),
        kind=kind,
        context=context,
        count_tokens=count_tokens,
        vision=table.get("vision", False),
        quirks=check_quirks(f"{key}.quirks", table.get("quirks", [])),
        text_tool_calls=text_tools,
    )
