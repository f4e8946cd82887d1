"""What a configuration is made of. A leaf: imports nothing of the project.

``ConfigError`` (one line naming the variable or key), ``BackendSettings``,
``Route``, the kinds and modes a backend may have, quirks, URL
normalisation and masking of secrets for display.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

DEFAULT_API_KEY = "sk-anthropic-router"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
BACKEND_KINDS = ("auto", "vllm", "llamacpp", "ollama", "openai")
COUNT_TOKENS_MODES = ("auto", "probe", "estimate")
# Tool calls a backend leaves in the text (convert/text_tools.py): "auto"
# recognises every dialect, "off" none, a dialect's name only that one.
TEXT_TOOL_DIALECTS = ("hermes", "qwen3_coder", "glm45", "mistral", "llama3_json", "deepseek")
TEXT_TOOL_MODES = ("auto", "off", *TEXT_TOOL_DIALECTS)
# Named per-backend behaviours (applied by convert/quirks.py), and the model
# names that imply them.
QUIRKS = ("mistral",)
_IMPLIED_QUIRKS = {
    "mistral": re.compile(r"mistral|mixtral|devstral|magistral|codestral|ministral|pixtral"),
}


class ConfigError(ValueError):
    """A configuration value is invalid. str() is the one line to print."""

    def __init__(self, variable: str, expected: str, got: str | None = None):
        self.variable = variable
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"invalid configuration: {variable} must be {expected}{shown}")


def only_known(where: str, table: dict, known) -> None:
    """Refuse a table with a field not in ``known``, naming the first one
    (``where.field``) and listing what is accepted, in ``known``'s order."""
    unknown = set(table).difference(known)
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}", "one of " + ", ".join(known))


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
    quirks: tuple[str, ...] = ()  # configured, plus those the model name implies
    text_tool_calls: str = "auto"  # see TEXT_TOOL_MODES
    # Replicas of this backend (backends/replicas.py): the same model, kind and
    # key on each. ``url`` is always the first; one URL is the usual case.
    urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "quirks", implied_quirks(self.model, self.quirks))
        if self.urls:
            object.__setattr__(self, "url", self.urls[0])
        else:
            object.__setattr__(self, "urls", (self.url,))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "url": self.url,
            "urls": list(self.urls),
            "model": self.model,
            "api_key": mask(self.api_key),
            "anthropic_native": self.anthropic_native,
            "kind": self.kind,
            "context": self.context,
            "count_tokens": self.count_tokens,
            "vision": self.vision,
            "quirks": list(self.quirks),
            "text_tool_calls": self.text_tool_calls,
        }


@dataclass(frozen=True)
class Limits:
    """Per-key limits (access.py); None: no limit of that kind."""

    requests_per_minute: int | None = None
    tokens_per_hour: int | None = None  # input + output
    tokens_per_day: int | None = None
    concurrent_streams: int | None = None

    def over(self, defaults: Limits) -> Limits:
        """These limits, each unset one taken from ``defaults``."""
        return Limits(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(defaults, f.name)
                for f in fields(self)
            }
        )

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


LIMIT_NAMES = tuple(f.name for f in fields(Limits))


@dataclass(frozen=True)
class ClientKey:
    """A client's key, by name: only its SHA-256 is kept."""

    name: str
    sha256: str  # hex digest of the key
    admin: bool = False  # sees every key's usage in /stats, and the dashboard
    models: tuple[str, ...] = ()  # shell-style patterns, case-insensitive; empty: every model
    limits: Limits = field(default_factory=Limits)

    def may_use(self, model: str) -> bool:
        if not self.models:
            return True
        name = model.lower()
        return any(fnmatchcase(name, pattern.lower()) for pattern in self.models)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Route:
    """Requests for models matching ``pattern`` (shell-style, case-insensitive)
    go to the backend named ``backend``."""

    pattern: str
    backend: str


def implied_quirks(model: str, configured: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Configured quirks plus those the model name implies."""
    found = list(configured)
    for quirk, names in _IMPLIED_QUIRKS.items():
        if quirk not in found and names.search(model.lower()):
            found.append(quirk)
    return tuple(found)


def check_quirks(name: str, quirks) -> tuple[str, ...]:
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


def normalise_urls(name: str, raw) -> tuple[str, ...]:
    """One URL or several (replicas), each validated as ``normalise_url``
    does, none twice."""
    expected = "one URL or several distinct ones, such as http://gpu1:8000,http://gpu2:8000"
    if not isinstance(raw, list | tuple) or not raw:
        raise ConfigError(name, expected, None if raw is None else str(raw))
    urls = tuple(normalise_url(name, u) for u in raw)
    if len(set(urls)) != len(urls):
        raise ConfigError(name, expected, ", ".join(raw))
    return urls


def mask(secret: str | None) -> str | None:
    """Show enough of a key to recognise it, never enough to use it."""
    if not secret:
        return None
    if len(secret) <= 8:
        return "****"
    return f"{secret[:4]}…{secret[-2:]}"
