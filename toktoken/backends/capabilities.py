"""What each backend is and can do: kind, models, context window, tokenizer.

Discovered from the backend itself (and overridable in configuration):

| kind     | detected by                                   | context window                  | exact token count                       |
|----------|-----------------------------------------------|---------------------------------|-----------------------------------------|
| vllm     | ``max_model_len`` in ``GET /v1/models``        | ``max_model_len``               | ``POST /tokenize`` with chat messages + tools |
| llamacpp | ``GET /props`` (llama.cpp server)              | ``default_generation_settings.n_ctx`` | ``POST /apply-template`` then ``/tokenize`` |
| llamacpp | ``POST /extras/tokenize/count`` (llama-cpp-python) | configured, or learned from its overflow error | ``probe`` if configured, else text tokens |
| ollama   | ``GET /api/version``                           | ``num_ctx`` from ``POST /api/show`` (else 4096, Ollama's default) | none: estimate |
| openai   | anything else                                 | configured, or learned          | none: estimate                          |

Discovery runs at start-up and whenever the cached answer is older than its
time to live; a stale answer is served while a fresh one is fetched in the
background, so a request never waits for more than the first discovery.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

from ..config import BackendSettings
from .client import MODELS_PATH, BackendClient

log = logging.getLogger(__name__)

OLLAMA_DEFAULT_CONTEXT = 4096


@dataclass(frozen=True)
class Capabilities:
    kind: str
    models: tuple[str, ...] = ()
    context: int | None = None
    context_source: str | None = None  # configured | discovered | learned
    # How exact token counts are obtained: vllm-tokenize, llamacpp-template,
    # llamacpp-python-text, probe — or None (estimate only).
    tokenizer: str | None = None
    reachable: bool = True
    discovered_at: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "models": list(self.models),
            "context": self.context,
            "context_source": self.context_source,
            "tokenizer": self.tokenizer,
        }


def discover(client: BackendClient) -> Capabilities:
    """Ask the backend what it is. Never raises; an unreachable backend gives
    the configured values and ``reachable=False``."""
    cfg = client.settings
    if cfg.anthropic_native:
        # Speaks Anthropic's API: nothing OpenAI-style to discover or count.
        return configured(cfg, Capabilities(kind="anthropic", models=(cfg.model,)))
    status, models_body = client.lookup("GET", MODELS_PATH)
    if status is None:
        return configured(cfg, Capabilities(kind=_kind_or(cfg.kind, "openai"), reachable=False))
    entries = models_body.get("data", []) if isinstance(models_body, dict) else []
    entries = [e for e in entries if isinstance(e, dict) and e.get("id")]
    models = tuple(e["id"] for e in entries)
    kind = cfg.kind if cfg.kind != "auto" else None
    context = None
    tokenizer = None

    vllm_entry = next(
        (e for e in entries if e.get("id") == cfg.model and "max_model_len" in e), None
    )
    vllm_entry = vllm_entry or next((e for e in entries if "max_model_len" in e), None)
    if kind in (None, "vllm") and vllm_entry is not None:
        kind, context, tokenizer = "vllm", _int(vllm_entry.get("max_model_len")), "vllm-tokenize"
    if kind in (None, "llamacpp"):
        props_status, props = client.lookup("GET", "/props")
        if (
            props_status == 200
            and isinstance(props, dict)
            and ("default_generation_settings" in props or "total_slots" in props)
        ):
            settings = props.get("default_generation_settings") or {}
            context = _int(settings.get("n_ctx") or props.get("n_ctx"))
            kind, tokenizer = "llamacpp", "llamacpp-template"
        else:
            count_status, count = client.lookup("POST", "/extras/tokenize/count", {"input": "a"})
            if count_status == 200 and isinstance(count, dict) and "count" in count:
                kind, tokenizer = "llamacpp", "llamacpp-python-text"
    if kind in (None, "ollama"):
        version_status, version = client.lookup("GET", "/api/version")
        if version_status == 200 and isinstance(version, dict) and "version" in version:
            kind = "ollama"
            context = _ollama_context(client)
    kind = kind or "openai"
    if cfg.count_tokens == "probe":
        tokenizer = "probe"
    elif cfg.count_tokens == "estimate":
        tokenizer = None
    caps = Capabilities(
        kind=kind,
        models=models,
        context=context,
        context_source="discovered" if context else None,
        tokenizer=tokenizer,
    )
    return configured(cfg, caps)


def configured(
    cfg: BackendSettings, caps: Capabilities, learned: int | None = None
) -> Capabilities:
    """Configuration wins over discovery; a context ``learned`` from the
    backend's own overflow error fills the gap when neither knows."""
    if cfg.context:
        caps = replace(caps, context=cfg.context, context_source="configured")
    elif caps.context is None and learned:
        caps = replace(caps, context=learned, context_source="learned")
    if cfg.kind != "auto" and not cfg.anthropic_native:
        caps = replace(caps, kind=cfg.kind)
    return caps


def _ollama_context(client: BackendClient) -> int:
    status, show = client.lookup("POST", "/api/show", {"model": client.model})
    if status == 200 and isinstance(show, dict):
        for line in str(show.get("parameters") or "").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "num_ctx" and _int(parts[1]):
                return _int(parts[1])
        # model_info["<arch>.context_length"] is what the model supports, not
        # what Ollama allocates (num_ctx): never more than Ollama's default.
        for key, value in (show.get("model_info") or {}).items():
            if key.endswith(".context_length") and _int(value):
                return min(_int(value), OLLAMA_DEFAULT_CONTEXT)
    return OLLAMA_DEFAULT_CONTEXT


def _replica(client: BackendClient) -> str:
    """ " replica URL" for a backend with several, else nothing."""
    return f" replica {client.url}" if len(client.settings.urls) > 1 else ""


def _kind_or(kind: str, default: str) -> str:
    return default if kind == "auto" else kind


def _int(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


class CapabilityCache:
    """Capabilities per backend replica with a time to live and background refresh.

    Discovery never holds a request for long: the very first request waits at
    most ``first_wait`` seconds for the discovery started at worker start-up,
    then goes on with the configured values (and the backend's own overflow
    errors, which refit and retry, cover what is not known yet)."""

    def __init__(self, ttl: float = 300.0, retry_after: float = 10.0, first_wait: float = 2.0):
        self.ttl = ttl
        self.retry_after = retry_after  # when the backend was unreachable
        self.first_wait = first_wait
        self._cache: dict[str, Capabilities] = {}
        # Context windows read off backends' overflow errors, for servers that
        # report theirs nowhere else (llama-cpp-python).
        self._learned: dict[str, int] = {}
        self._refreshing: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def get(self, client: BackendClient) -> Capabilities:
        caps = self._cache.get(client.key)
        if caps is None:
            self._refresh_in_background(client).wait(self.first_wait)
            caps = self._cache.get(client.key)
            if caps is None:
                fallback = Capabilities(kind=_kind_or(client.settings.kind, "openai"))
                return configured(client.settings, fallback, self._learned.get(client.key))
        age = time.monotonic() - caps.discovered_at
        if age > (self.ttl if caps.reachable else self.retry_after):
            self._refresh_in_background(client)
        return caps

    def learn_context(self, client: BackendClient, context: int) -> None:
        """The backend said its window in an overflow error: remember it."""
        if self._learned.get(client.key) == context:
            return
        self._learned[client.key] = context
        caps = self._cache.get(client.key)
        if caps is not None and caps.context_source in (None, "learned"):
            self._cache[client.key] = replace(caps, context=context, context_source="learned")

    def refresh(self, client: BackendClient) -> Capabilities:
        caps = configured(client.settings, discover(client), self._learned.get(client.key))
        previous = self._cache.get(client.key)
        self._cache[client.key] = caps
        if previous is None or previous.as_dict() != caps.as_dict():
            log.info("backend %s%s capabilities: %s", client.name, _replica(client), caps.as_dict())
        return caps

    def refresh_soon(self, client: BackendClient) -> None:
        """Rediscover ``client``'s capabilities in the background (it came back)."""
        self._refresh_in_background(client)

    def _refresh_in_background(self, client: BackendClient) -> threading.Event:
        with self._lock:
            running = self._refreshing.get(client.key)
            if running is not None:
                return running
            done = self._refreshing[client.key] = threading.Event()

        def run() -> None:
            try:
                self.refresh(client)
            except Exception:
                log.exception(
                    "capability discovery for backend %s%s failed", client.name, _replica(client)
                )
            finally:
                with self._lock:
                    self._refreshing.pop(client.key, None)
                done.set()

        threading.Thread(target=run, name="capabilities", daemon=True).start()
        return done
