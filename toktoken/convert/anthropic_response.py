"""Anthropic message -> OpenAI chat completion (for OpenAI clients on an
Anthropic-native backend). Pure. The reverse of openai_response.py."""

from __future__ import annotations

import json
import time

from .common import random_id
from .protocol import Usage

FINISH_FOR_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def to_openai_completion(message: dict, requested_model: str) -> dict:
    texts, reasoning, calls = [], [], []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            function = {"name": block.get("name"), "arguments": arguments}
            calls.append({"id": block.get("id"), "type": "function", "function": function})
    out_message: dict = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if reasoning:
        out_message["reasoning_content"] = "".join(reasoning)
    if calls:
        out_message["tool_calls"] = calls
    finish_reason = FINISH_FOR_STOP.get(message.get("stop_reason"), "stop")
    return {
        "id": random_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": requested_model,
        "choices": [{"index": 0, "message": out_message, "finish_reason": finish_reason}],
        "usage": Usage.from_anthropic(message.get("usage")).openai(),
    }
