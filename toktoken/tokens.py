"""Prompt token counts, and fitting max_tokens into the context window.

Counts are exact where the backend can tokenize (backends/capabilities.py
says how, backends/tokenize.py asks), else estimated. Exact counts are cached by content: Claude Code sends 25
count_tokens requests at once and repeats the same prefix on every turn.
Identical requests in flight at the same time share one backend call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from . import jsonio
from .backends import BackendClient, Capabilities
from .backends.tokenize import count_prompt_tokens
from .convert.common import estimate_tokens
from .errors import GatewayError, PromptTooLong

log = logging.getLogger(__name__)

# Counts that use the backend's tokenizer but not its chat template: close,
# yet not exact enough to refuse a request on.
APPROXIMATE_METHODS = frozenset({"llamacpp-python-text"})

# An *estimated* prompt size is trusted to shrink max_tokens only while it
# leaves at least this much room; below that, the estimate is too uncertain
# (templates add or drop whole system prompts) to cut the answer short.
MIN_ROOM_ON_ESTIMATE = 1024


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool


def estimate_prompt_tokens(body_bytes: bytes) -> int:
    """characters/4 over the JSON the backend will see: a slight overestimate
    for prose and code (JSON syntax counts too), which errs on the side of
    compacting early rather than overflowing."""
    return estimate_tokens(len(body_bytes))


class TokenCounter:
    def __init__(self, cache_size: int = 2048):
        self.cache_size = cache_size
        self._cache: OrderedDict[str, int] = OrderedDict()
        self._inflight: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def count(self, client: BackendClient, caps: Capabilities, body: dict) -> TokenCount:
        """Prompt tokens of an OpenAI chat body as the backend will see it."""
        counted = {k: body.get(k) for k in ("model", "messages", "tools", "chat_template_kwargs")}
        if caps.tokenizer is None:
            return _estimate(counted)
        # The cache key: the same request gives the same bytes (same dict order).
        serialized = jsonio.dumps(counted)
        key = f"{client.name}:{caps.tokenizer}:{hashlib.sha256(serialized).hexdigest()}"
        exact = caps.tokenizer not in APPROXIMATE_METHODS
        while True:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return TokenCount(self._cache[key], exact)
                waiting = self._inflight.get(key)
                if waiting is None:
                    self._inflight[key] = threading.Event()
                    break
            waiting.wait(timeout=30)  # another request is counting the same prompt
        try:
            tokens = count_prompt_tokens(client, caps.tokenizer, body)
        except GatewayError as exc:
            if isinstance(exc, PromptTooLong):
                raise
            log.warning(
                "backend %s could not count tokens (%s): estimating", client.name, exc.message
            )
            return _estimate(counted)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("backend %s gave an odd token count (%r): estimating", client.name, exc)
            return _estimate(counted)
        else:
            # Cached before the waiters wake, so they find it instead of counting again.
            with self._lock:
                self._cache[key] = tokens
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return TokenCount(tokens, exact)
        finally:
            with self._lock:
                event = self._inflight.pop(key, None)
            if event:
                event.set()


def _estimate(counted: dict) -> TokenCount:
    # Standard-library JSON (with its spaces) keeps chars/4 an overestimate.
    return TokenCount(
        estimate_prompt_tokens(json.dumps(counted, ensure_ascii=False).encode()), False
    )


def fit_max_tokens(
    requested: int, prompt: TokenCount | None, context: int | None, margin: int
) -> int:
    """``min(requested, context - prompt - margin)``.

    Raises PromptTooLong when an exact count shows the prompt alone does not
    fit. An estimate never refuses a request and never cuts the answer below
    MIN_ROOM_ON_ESTIMATE: when it claims less room than that, max_tokens is only
    capped at the window and the backend has the last word — a validating
    server (vLLM, TGI) answers with an overflow error that carries the exact
    numbers, and the request is refitted and retried once
    (``refit_after_overflow``); llama.cpp and Ollama stop when the window
    is full, which the stop reason then says.
    """
    if context is None or prompt is None:
        return requested
    room = context - prompt.tokens - margin
    if prompt.exact:
        if room < 1:
            raise PromptTooLong(prompt.tokens, context)
        return max(1, min(requested, room))
    if room >= MIN_ROOM_ON_ESTIMATE:
        return min(requested, room)
    return min(requested, context)


def needs_count(requested: int, body_bytes: int, context: int | None, margin: int) -> bool:
    """Can requested + prompt + margin exceed the context? A prompt has at
    most one token per byte of its JSON (plus template tokens, covered by the
    factor), so small requests into large windows need no count at all."""
    if context is None:
        return False
    return requested + body_bytes * 1.1 + margin > context


def refit_after_overflow(requested: int, exc: PromptTooLong, margin: int) -> int | None:
    """The backend said the request does not fit but the prompt alone does
    (max_tokens too large for a window we did not know): the max_tokens that
    fits, or None when a retry cannot help."""
    if exc.prompt_tokens is None or exc.context is None:
        return None
    room = exc.context - exc.prompt_tokens - margin
    if room < 1 or requested <= room:
        return None
    return room
