"""Anthropic message -> OpenAI chat completion (for OpenAI clients on an
Anthropic-native backend). Pure. The reverse of openai_response.py."""

from __future__ import annotations

import json
import time

from .common import random_id

FINISH_FOR_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def openai_usage(usage: dict) -> dict:
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (
        (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    )
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
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
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"),
                                       "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False)}})  # fmt: skip
    out_message: dict = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if reasoning:
        out_message["reasoning_content"] = "".join(reasoning)
    if calls:
        out_message["tool_calls"] = calls
    return {
        "id": random_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": requested_model,
        "choices": [
            {
                "index": 0,
                "message": out_message,
                "finish_reason": FINISH_FOR_STOP.get(message.get("stop_reason"), "stop"),
            }
        ],  # fmt: skip
        "usage": openai_usage(message.get("usage") or {}),
    }
