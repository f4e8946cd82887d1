"""Named per-backend behaviours that go beyond the OpenAI dialect. Pure.

| quirk     | applies to                         | what it does |
|-----------|------------------------------------|--------------|
| mistral   | Mistral-family models (Mistral, Mixtral, Devstral, Magistral, Codestral, Ministral; implied by the model name, see config/model.py, or configured) | tool-call ids become exactly 9 alphanumerics (mapped deterministically, so a tool_use and its tool_result still match); a conversation never ends on an assistant turn |

llama.cpp's needs (``content: ""`` beside ``tool_calls``, no usage in
streams) are met for every backend: the converter never sends ``null``
content, and the stream translator counts output when no usage arrives.
"""

from __future__ import annotations

import hashlib
import re

_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def apply_quirks(body: dict, quirks: tuple[str, ...]) -> dict:
    if "mistral" in quirks:
        _mistral(body)
    return body


def mistral_tool_id(original: str) -> str:
    """Mistral's templates accept only ids of exactly 9 alphanumerics. Ids
    that already are (the backend's own, echoed back) stay as they are;
    others are hashed, so the same id always maps to the same result."""
    if _MISTRAL_ID.fullmatch(original):
        return original
    number = int.from_bytes(hashlib.sha256(original.encode()).digest()[:8], "big")
    out = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(out)


def _mistral(body: dict) -> None:
    messages = body["messages"]
    for message in messages:
        for call in message.get("tool_calls") or []:
            call["id"] = mistral_tool_id(call["id"])
        if message.get("role") == "tool" and message.get("tool_call_id"):
            message["tool_call_id"] = mistral_tool_id(message["tool_call_id"])
    if messages and messages[-1].get("role") == "assistant":
        last = messages[-1]
        if not last.get("content") and not last.get("tool_calls"):
            messages.pop()  # an empty prefill says nothing
        else:
            # Mistral refuses to continue an assistant turn: ask for it.
            messages.append({"role": "user", "content": "Continue."})
