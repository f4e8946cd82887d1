"""Client keys and their limits, from the configuration file.

```toml
[limits]                      # defaults for every key (each optional)
requests_per_minute = 60
tokens_per_day = 5_000_000

[keys.alice]
sha256 = "9f86d081…"          # the key's SHA-256: the file can be committed
admin = true                  # sees everyone's usage in /stats, and the dashboard
concurrent_streams = 4

[keys.ci]
key_env = "CI_KEY"            # or: the variable that holds the key
models = ["*haiku*", "qwen3-coder*"]
tokens_per_hour = 200_000
```

Every mistake stops start-up with one line naming the table and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .model import LIMIT_NAMES, ClientKey, ConfigError, Limits, key_digest, only_known

_KEY_FIELDS = {"sha256", "key_env", "admin", "models", *LIMIT_NAMES}
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def parse_limits(where: str, table) -> Limits:
    if table is None:
        return Limits()
    if not isinstance(table, dict):
        raise ConfigError(where, "a table of " + ", ".join(LIMIT_NAMES))
    only_known(where, table, LIMIT_NAMES)
    return Limits(**{name: _positive(f"{where}.{name}", table.get(name)) for name in LIMIT_NAMES})


def parse_keys(
    where: str, tables, defaults: Limits, env: Mapping[str, str]
) -> tuple[tuple[ClientKey, ...], tuple[str, ...]]:
    """The [keys.NAME] tables: the keys, and the secrets read from the
    environment (key_env), which the dashboard's signing secret is made of."""
    if tables is None:
        return (), ()
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{where}: keys", "[keys.NAME] tables, one per client")
    keys, secrets = [], []
    for name, table in tables.items():
        at = f"{where}: keys.{name}"
        if not _NAME.fullmatch(name):
            raise ConfigError(at, "named with letters, digits and . _ @ - (at most 64)")
        if not isinstance(table, dict):
            raise ConfigError(at, "a table with sha256 or key_env")
        only_known(at, table, sorted(_KEY_FIELDS))
        if ("sha256" in table) == ("key_env" in table):
            raise ConfigError(at, "given exactly one of sha256 (the key's hash) or key_env")
        if "sha256" in table:
            digest = table["sha256"]
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ConfigError(
                    f"{at}.sha256", "64 hex digits (python -m toktoken hash-key prints them)"
                )
            digest = digest.lower()
        else:
            variable = table["key_env"]
            secret = env.get(variable, "").strip() if isinstance(variable, str) else ""
            if not secret:
                raise ConfigError(
                    f"{at}.key_env", "the name of a set environment variable", str(variable)
                )
            digest = key_digest(secret)
            secrets.append(secret)
        admin = table.get("admin", False)
        if not isinstance(admin, bool):
            raise ConfigError(f"{at}.admin", "true or false", str(admin))
        models = table.get("models", [])
        if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
            raise ConfigError(f"{at}.models", 'a list of model-name patterns such as ["*haiku*"]')
        own = parse_limits(at, {k: v for k, v in table.items() if k in LIMIT_NAMES})
        keys.append(ClientKey(name, digest, admin, tuple(models), own.over(defaults)))
    return tuple(keys), tuple(secrets)


def check_unique(keys: tuple[ClientKey, ...]) -> None:
    seen: dict[str, str] = {}
    for key in keys:
        if key.sha256 in seen:
            raise ConfigError(
                f"keys.{key.name}", f"a key of its own (it is the key of {seen[key.sha256]})"
            )
        seen[key.sha256] = key.name
    names = [k.name for k in keys]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"keys.{name}", "a name used once (API_KEY's keys are key-1, key-2, …)"
            )


def _positive(name: str, value) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, "a positive whole number", str(value))
    return value
