"""Small pieces shared by the response converter and the stream translator."""

from __future__ import annotations

import base64
import math
import os

# Anthropic clients echo thinking blocks back with their signature and some
# reject a block without one. The backend has no signature to give, so we send
# a constant, recognisable one; it is dropped again when the block comes back.
THINKING_SIGNATURE = base64.b64encode(b"toktoken:unsigned-local-reasoning").decode()

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "eos": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def random_id(prefix: str) -> str:
    """``prefix`` + 24 random hex digits (os.urandom: a fifth of uuid4's cost)."""
    return prefix + os.urandom(12).hex()


def new_message_id() -> str:
    return random_id("msg_")


def new_tool_use_id() -> str:
    return random_id("toolu_")


def stop_reason(
    finish_reason: str | None,
    matched_stop,
    *,
    has_tool_calls: bool,
    context_filled: bool = False,
) -> tuple[str, str | None]:
    """Map OpenAI's finish_reason to Anthropic's (stop_reason, stop_sequence).

    ``matched_stop`` is vLLM's ``choices[0].stop_reason``: the stop string that
    ended generation (a string), or a token id (int) / None for EOS.
    ``context_filled``: "length" came from the context window filling up, not
    from max_tokens (see ``window_filled``).
    """
    if finish_reason == "length" and context_filled:
        return "model_context_window_exceeded", None
    if finish_reason == "stop" and isinstance(matched_stop, str) and matched_stop:
        return "stop_sequence", matched_stop
    if has_tool_calls and finish_reason in (None, "stop", "tool_calls", "function_call"):
        # Some servers say "stop" after a tool call: the client must still run it.
        return "tool_use", None
    return _FINISH_TO_STOP.get(finish_reason or "stop", "end_turn"), None


def estimate_tokens(text_chars: int) -> int:
    """Rough token count from a character count: ~4 characters per token for
    English and code with BPE tokenizers (the usual rule of thumb)."""
    return math.ceil(text_chars / 4) if text_chars > 0 else 0


def window_filled(finish_reason: str | None, usage, window: int | None) -> bool:
    """Servers say "length" both when max_tokens was reached and when the
    context window filled up (llama.cpp, and vLLM for a prompt that leaves
    less room than max_tokens). It was the window when prompt + output reached
    ``window`` — the backend's context less the gateway's margin, which
    max_tokens is fitted to stay below — and only then; an unknown window
    says nothing. ``usage`` is a Usage (prompt = input + cache reads/writes)."""
    if finish_reason != "length" or not window or usage.output_tokens is None:
        return False
    prompt = (usage.input_tokens or 0) + usage.cache_read_tokens + usage.cache_write_tokens
    return prompt + usage.output_tokens > window


def completion_as_chunks(completion: dict) -> list[dict]:
    """A whole chat completion (from a server that ignored ``stream: true``)
    as the one stream chunk that carries all of it."""
    chunk = {"choices": [], "usage": completion.get("usage")}
    for choice in completion.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = dict(choice.get("message") or {})
        calls = message.get("tool_calls")
        if calls:
            message["tool_calls"] = [dict(c, index=i) for i, c in enumerate(calls)]
        chunk["choices"].append(
            {
                "index": choice.get("index", 0),
                "delta": message,
                "finish_reason": choice.get("finish_reason"),
                "stop_reason": choice.get("stop_reason"),
            }
        )
    return [chunk]
