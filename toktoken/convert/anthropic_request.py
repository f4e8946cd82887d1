"""Anthropic Messages request -> OpenAI chat completions request. Pure.

Rule of thumb: convert what has a meaning upstream, drop what has none
(cache_control, betas, context_management, billing header lines), and never
fail on something new a client sends.

Cache safety (docs/claude-code.md). A Claude Code session re-sends the whole
conversation every turn, and the backend's prefix cache (vLLM's automatic
prefix caching, llama.cpp's slot cache, Ollama's) makes that cheap only while
the prompt rendered for turn N is a prefix of turn N+1's. So each message
converts the same way wherever it sits, and nothing late moves to the front:

- ``role: "system"`` entries before the first assistant message (Claude
  Code's environment block) join the leading system message: whether an
  entry is before the first assistant message never changes as the
  conversation grows;
- later ones stay where they are, as user-role content wrapped in
  ``<system-reminder>`` (chat templates of Qwen, Llama and llama.cpp's jinja
  mode refuse a system message after the first); they join the user message
  just before them, which Claude Code sends in the same request;
- the billing header line changes on every request: dropped. A
  ``<total_tokens>`` block inside a system entry (the budget countdown) stays at
  that entry's place even before the first assistant message. The one inside
  the ``system`` field is the session's initial budget and does not change
  (observed with Claude Code 2.1.332, CLAUDE_CODE_TOTAL_TOKENS_REMINDER=
  countdown): it stays in the system prompt, where moving it would cost the
  cache of the turn's last message every turn.
"""

from __future__ import annotations

import json
import logging
import re

from .thinking import replays_reasoning, thinking_fields

log = logging.getLogger(__name__)

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
# Text that changes on every request (Claude Code's token-budget countdown,
# CLAUDE_CODE_TOTAL_TOKENS_REMINDER): anywhere early in the prompt it would
# make the backend re-evaluate everything after it.
VOLATILE = re.compile(r"<total_tokens>.*?</total_tokens>", re.S)
REMINDER_OPEN, REMINDER_CLOSE = "<system-reminder>", "</system-reminder>"

# Fields of the Anthropic request with no OpenAI meaning: dropped silently.
_DROPPED_QUIETLY = frozenset(
    {
        "model", "messages", "system", "max_tokens", "stream", "tools", "tool_choice",
        "stop_sequences", "temperature", "top_p", "top_k", "metadata", "thinking",
        "output_config", "context_management", "safeguards", "betas", "service_tier",
        "container", "mcp_servers",
    }
)  # fmt: skip


def to_openai_request(req: dict, model: str, *, stream: bool = False, kind: str = "openai") -> dict:
    """Build the body for ``POST /v1/chat/completions`` on an OpenAI-style
    backend of the given kind (vllm, llamacpp, ollama, openai)."""
    replay_reasoning = replays_reasoning(kind)
    messages: list[dict] = []
    system_parts = _system_texts(req.get("system"))
    answered = False  # an assistant message came before this one
    for message in req["messages"]:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            texts = _system_texts(content)
            if not answered:
                stable, texts = _split_volatile(texts)
                system_parts.extend(stable)
            if texts:
                _add_reminder(messages, texts)
        elif role == "assistant":
            answered = True
            messages.extend(_assistant_messages(content, replay_reasoning))
        else:
            if role != "user":
                log.debug("unknown role %r treated as user", role)
            messages.extend(_user_messages(content))
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})

    body: dict = {"model": model, "messages": messages, "max_tokens": req["max_tokens"]}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}

    for key in ("temperature", "top_p", "top_k"):
        if req.get(key) is not None:
            body[key] = req[key]  # top_k is an extra field vLLM/llama.cpp accept
    if req.get("stop_sequences"):
        body["stop"] = list(req["stop_sequences"])
    user = (req.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        body["user"] = user
    response_format = _response_format((req.get("output_config") or {}).get("format"))
    if response_format:
        body["response_format"] = response_format

    tools = [_tool(t) for t in req.get("tools") or [] if _is_client_tool(t)]
    if tools:
        body["tools"] = tools
        choice = req.get("tool_choice") or {}
        mapped = _tool_choice(choice)
        if mapped is not None:
            body["tool_choice"] = mapped
        if choice.get("disable_parallel_tool_use"):
            body["parallel_tool_calls"] = False

    output_config = req.get("output_config") or {}
    body.update(thinking_fields(kind, req.get("thinking"), output_config.get("effort")))

    unknown = set(req) - _DROPPED_QUIETLY
    if unknown:
        log.debug("dropped unknown request fields: %s", ", ".join(sorted(unknown)))
    return body


def _system_texts(system) -> list[str]:
    if system is None:
        return []
    if isinstance(system, str):
        return [system] if system else []
    texts = []
    for block in system:
        if not isinstance(block, dict):
            continue
        text = block.get("text")
        if not isinstance(text, str) or not text:
            continue
        # Changes on every request: forwarding it would defeat prefix caching.
        if text.startswith(BILLING_HEADER_PREFIX):
            continue
        texts.append(text)
    return texts


def _split_volatile(texts: list[str]) -> tuple[list[str], list[str]]:
    """(stable texts, volatile pieces): what may join the leading system
    message, and what must stay out of it."""
    stable, volatile = [], []
    for text in texts:
        found = VOLATILE.findall(text)
        if found:
            volatile.extend(found)
            text = VOLATILE.sub("", text).strip()
        if text:
            stable.append(text)
    return stable, volatile


def _add_reminder(messages: list[dict], texts: list[str]) -> None:
    """System guidance after the conversation started, at its place, as user
    content: joined to the user message just before it, else a user message
    of its own (after tool results, or at the start)."""
    note = "\n\n".join(
        t if t.startswith(REMINDER_OPEN) else f"{REMINDER_OPEN}\n{t}\n{REMINDER_CLOSE}"
        for t in texts
    )
    last = messages[-1] if messages else None
    if last is None or last["role"] != "user":
        messages.append({"role": "user", "content": note})
    elif isinstance(last["content"], str):
        last["content"] = f"{last['content']}\n\n{note}" if last["content"] else note
    else:
        last["content"].append({"type": "text", "text": note})


def _blocks(content) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def _image_part(block: dict) -> dict | None:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        media = source.get("media_type") or "image/png"
        url = f"data:{media};base64,{source.get('data', '')}"
    elif kind == "url":
        url = source.get("url")
    else:
        log.debug("dropped image with unsupported source type %r", kind)
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _user_content(parts: list[dict]):
    """Text-only content goes as one string: every chat template handles that."""
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _user_messages(content) -> list[dict]:
    """A user turn becomes: tool messages (one per tool_result, in order), then
    one user message with everything else (text, images, tool-result images)."""
    tool_messages: list[dict] = []
    parts: list[dict] = []
    result_images: list[dict] = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            part = _image_part(block)
            if part:
                parts.append(part)
        elif kind == "tool_result":
            text, images = _tool_result_content(block)
            tool_messages.append(
                {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
            )
            result_images.extend(images)
        elif kind == "document":
            text = _document_text(block)
            if text:
                parts.append({"type": "text", "text": text})
        else:
            log.debug("dropped user block of type %r", kind)
    if result_images:
        # OpenAI tool messages cannot carry images: show them to the model in a
        # user message right after the results.
        parts = [{"type": "text", "text": "Images returned by the tool calls above:"}] + (
            result_images + parts
        )
    out = tool_messages
    if parts:
        out.append({"role": "user", "content": _user_content(parts)})
    elif not tool_messages:
        # Keep the turn (alternation matters to many chat templates).
        out.append({"role": "user", "content": ""})
    return out


def _tool_result_content(block: dict) -> tuple[str, list[dict]]:
    content = block.get("content")
    texts: list[str] = []
    images: list[dict] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for item in content:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "text" and isinstance(item.get("text"), str):
                texts.append(item["text"])
            elif kind == "tool_reference" and item.get("tool_name"):
                texts.append(f"Tool loaded: {item['tool_name']}")
            elif kind == "image":
                part = _image_part(item)
                if part:
                    images.append(part)
            elif kind == "document":
                text = _document_text(item)
                if text:
                    texts.append(text)
            else:
                log.debug("dropped tool_result item of type %r", kind)
    text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error: the tool call failed."
    return text, images


def _document_text(block: dict) -> str | None:
    source = block.get("source") or {}
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        title = block.get("title")
        return f"{title}\n\n{source['data']}" if title else source["data"]
    log.debug("dropped document block with source type %r", source.get("type"))
    return None


def _assistant_messages(content, replay_reasoning: bool) -> list[dict]:
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict] = []
    for block in _blocks(content):
        kind = block.get("type")
        if kind == "text":
            if block.get("text"):
                texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False),
                    },
                }
            )
        elif kind == "thinking":
            # Never replayed as text; as reasoning where the backend's
            # templates accept it (see convert/thinking.py).
            if replay_reasoning and isinstance(block.get("thinking"), str):
                reasoning.append(block["thinking"])
        elif kind == "redacted_thinking":
            continue
        else:
            log.debug("dropped assistant block of type %r", kind)
    # content "" rather than null: llama.cpp-based servers fail on null.
    message: dict = {"role": "assistant", "content": "".join(texts)}
    if reasoning:
        message["reasoning_content"] = "\n".join(reasoning)
    if tool_calls:
        message["tool_calls"] = tool_calls
    return [message]


def _is_client_tool(tool: dict) -> bool:
    # Server tools (web_search_2025..., bash_2025...) have a versioned type and
    # no input_schema: the backend cannot run them.
    kind = tool.get("type")
    return kind in (None, "custom") or "input_schema" in tool


def _tool(tool: dict) -> dict:
    function = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict):
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    return None


def _response_format(fmt) -> dict | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema" and isinstance(fmt.get("schema"), dict):
        return {
            "type": "json_schema",
            "json_schema": {"name": fmt.get("name") or "output", "schema": fmt["schema"]},
        }
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None
