"""Exact prompt token counts, asked of the backend itself.

Which method a backend supports is discovered (capabilities.py); this module
only makes the calls. Each takes the OpenAI chat body the backend will see.
"""

from __future__ import annotations

import json

from ..errors import PromptTooLong
from .client import CHAT_PATH, BackendClient

METHODS = ("vllm-tokenize", "llamacpp-template", "llamacpp-python-text", "probe")


def count_prompt_tokens(client: BackendClient, method: str, body: dict) -> int:
    """Prompt tokens of a chat request, by ``method``. Raises GatewayError
    when the backend cannot say (and KeyError/TypeError/ValueError when it
    answers something odd)."""
    if method == "vllm-tokenize":
        request = {
            "model": body["model"],
            "messages": body["messages"],
            "add_generation_prompt": True,
        }
        for key in ("tools", "chat_template_kwargs"):
            if body.get(key):
                request[key] = body[key]
        return int(client.post("/tokenize", request)["count"])
    if method == "llamacpp-template":
        template = {
            k: v for k, v in body.items() if k in ("messages", "tools", "chat_template_kwargs")
        }
        prompt = client.post("/apply-template", template)["prompt"]
        return len(client.post("/tokenize", {"content": prompt, "add_special": True})["tokens"])
    if method == "llamacpp-python-text":
        return int(client.post("/extras/tokenize/count", {"input": rendered_text(body)})["count"])
    if method == "probe":
        # Ask the server itself: one token of generation, read its usage.
        # Exact whatever the chat template; costs one prefill.
        probe = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        probe["max_tokens"] = 1
        try:
            answer = client.post(CHAT_PATH, probe)
        except PromptTooLong as exc:
            if exc.prompt_tokens is not None:
                return exc.prompt_tokens
            raise
        return int(answer["usage"]["prompt_tokens"])
    raise ValueError(f"unknown token counting method {method!r}")


def rendered_text(body: dict) -> str:
    """The text a chat template would wrap: every message's content, tool
    calls and tool definitions (approximate: the template's own tokens are
    not included)."""
    parts: list[str] = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            parts.append(f"{function.get('name', '')} {function.get('arguments', '')}")
    if body.get("tools"):
        parts.append(json.dumps(body["tools"], ensure_ascii=False))
    return "\n".join(parts)
