"""An OpenAI-style backend's chat completion, for an OpenAI client: the model
name the client asked for, and tool calls the backend left in the text
turned into ``tool_calls`` (text_tools.py). Pure."""

from __future__ import annotations

import json

from .common import random_id
from .text_tools import ToolCall, ToolCallRescuer


def for_openai_client(completion: dict, model: str, rescuer: ToolCallRescuer | None) -> dict:
    completion["model"] = model
    choice = completion["choices"][0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if rescuer is None or not isinstance(message, dict) or message.get("tool_calls"):
        return completion
    text = message.get("content")
    if not isinstance(text, str) or not text:
        return completion
    pieces = rescuer.feed(text) + rescuer.finish()
    calls = [p for p in pieces if isinstance(p, ToolCall)]
    if not calls:
        return completion
    rest = "".join(p for p in pieces if isinstance(p, str))
    message["content"] = rest if rest.strip() else None
    message["tool_calls"] = [
        {
            "id": random_id("call_"),
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
        }
        for c in calls
    ]
    choice["finish_reason"] = "tool_calls"
    return completion
