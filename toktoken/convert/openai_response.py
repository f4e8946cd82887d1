"""OpenAI chat completion -> Anthropic message. Pure."""

from __future__ import annotations

import json

from .common import (
    THINKING_SIGNATURE,
    estimate_tokens,
    new_message_id,
    new_tool_use_id,
    stop_reason,
    window_filled,
)
from .protocol import Usage
from .text_tools import ToolCall, ToolCallRescuer
from .thinking import split_think_tags
from .tool_json import parse_arguments


class MalformedResponse(ValueError):
    """The backend's 200 response is not a chat completion."""


def to_anthropic_message(
    completion: dict,
    requested_model: str,
    *,
    input_tokens_estimate: int = 0,
    window: int | None = None,
    rescuer: ToolCallRescuer | None = None,
) -> dict:
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("the backend's response has no choices")
    choice = choices[0]
    message = choice.get("message") or {}

    content: list[dict] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    text = message.get("content")
    if isinstance(text, list):  # some servers return content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if not reasoning and isinstance(text, str):
        reasoning, text = split_think_tags(text)
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": THINKING_SIGNATURE})
    calls = list(message.get("tool_calls") or [])
    legacy = message.get("function_call")
    if not calls and isinstance(legacy, dict) and legacy.get("name"):
        calls.append({"id": None, "function": legacy})
    if isinstance(text, str) and text:
        if rescuer is not None and not calls:  # the server parsed none: look in the text
            content += _rescued(rescuer.feed(text) + rescuer.finish())
        else:
            content.append({"type": "text", "text": text})
    for call in calls:
        function = (call or {}).get("function") or {}
        if not function.get("name"):
            continue
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or new_tool_use_id(),
                "name": function["name"],
                "input": parse_arguments(function.get("arguments")),
            }
        )

    usage = Usage.from_openai(
        completion.get("usage"), completion.get("timings")
    ) or _estimated_usage(content, input_tokens_estimate)
    reason, sequence = stop_reason(
        choice.get("finish_reason"),
        choice.get("stop_reason"),
        has_tool_calls=any(b["type"] == "tool_use" for b in content),
        context_filled=window_filled(choice.get("finish_reason"), usage, window),
    )
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage.anthropic(),
    }


def _rescued(pieces: list) -> list[dict]:
    blocks: list[dict] = []
    for piece in pieces:
        if isinstance(piece, ToolCall):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": new_tool_use_id(),
                    "name": piece.name,
                    "input": piece.arguments,
                }
            )
        elif blocks and blocks[-1]["type"] == "text":
            blocks[-1]["text"] += piece
        else:
            blocks.append({"type": "text", "text": piece})
    return blocks


def _estimated_usage(content: list[dict], input_tokens_estimate: int) -> Usage:
    chars = 0
    for block in content:
        if block["type"] == "text":
            chars += len(block["text"])
        elif block["type"] == "thinking":
            chars += len(block["thinking"])
        else:
            chars += len(block["name"]) + len(json.dumps(block["input"]))
    return Usage(input_tokens_estimate, estimate_tokens(chars))
