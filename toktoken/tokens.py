"""Prompt token counts and fitting max_tokens into the context window.

Counts are exact where the backend can tokenize (capabilities.py says how),
else estimated. Exact counts are cached by content: Claude Code sends 25
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

from .backends import BackendClient
from .capabilities import Capabilities
from .convert.common import estimate_tokens
from .errors import GatewayError, PromptTooLong

log = logging.getLogger(__name__)

# Below this many tokens of room for the answer, an *estimated* prompt size is
# not trusted enough to refuse the request: the backend gets to decide.
MIN_OUTPUT_ON_ESTIMATE = 256


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
        serialized = json.dumps(
            {k: body.get(k) for k in ("model", "messages", "tools", "chat_template_kwargs")},
            sort_keys=True,
            ensure_ascii=False,
        ).encode()
        if caps.tokenizer is None:
            return TokenCount(estimate_prompt_tokens(serialized), False)
        key = f"{client.name}:{caps.tokenizer}:{hashlib.sha256(serialized).hexdigest()}"
        while True:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return TokenCount(self._cache[key], True)
                waiting = self._inflight.get(key)
                if waiting is None:
                    self._inflight[key] = threading.Event()
                    break
            waiting.wait(timeout=30)  # another request is counting the same prompt
        try:
            tokens = client.count_prompt_tokens(caps.tokenizer, body)
        except GatewayError as exc:
            if isinstance(exc, PromptTooLong):
                raise
            log.warning(
                "backend %s could not count tokens (%s): estimating", client.name, exc.message
            )
            return TokenCount(estimate_prompt_tokens(serialized), False)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("backend %s gave an odd token count (%r): estimating", client.name, exc)
            return TokenCount(estimate_prompt_tokens(serialized), False)
        finally:
            with self._lock:
                event = self._inflight.pop(key, None)
            if event:
                event.set()
        with self._lock:
            self._cache[key] = tokens
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return TokenCount(tokens, True)


def fit_max_tokens(
    requested: int, prompt: TokenCount | None, context: int | None, margin: int
) -> tuple[int, TokenCount | None]:
    """``min(requested, context - prompt - margin)``.

    Raises PromptTooLong when an exact count shows the prompt alone does not
    fit. With only an estimate the request is never refused here (the backend
    has the last word, and its own overflow error is mapped to the same
    message); at least MIN_OUTPUT_ON_ESTIMATE tokens are left for the answer.
    """
    if context is None or prompt is None:
        return requested, prompt
    room = context - prompt.tokens - margin
    if prompt.exact:
        if room < 1:
            raise PromptTooLong(prompt.tokens, context)
        return max(1, min(requested, room)), prompt
    return max(1, min(requested, max(room, MIN_OUTPUT_ON_ESTIMATE))), prompt


def needs_count(requested: int, body_bytes: int, context: int | None, margin: int) -> bool:
    """Can requested + prompt + margin exceed the context? A prompt has at
    most one token per byte of its JSON (plus template tokens, covered by the
    factor), so small requests into large windows need no count at all."""
    if context is None:
        return False
    return requested + body_bytes * 1.1 + margin > context
