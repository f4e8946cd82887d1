"""OpenAI chat requests, for each kind of backend. Pure.

- ``for_openai_backend``: the client's request as it is, but for the model
  name and the usage chunk we always ask for when streaming.
- ``to_anthropic_request``: OpenAI chat request -> Anthropic Messages request
  (an Anthropic-native backend). The reverse of anthropic_request.py.
"""

from __future__ import annotations

import logging

from .tool_json import parse_arguments

log = logging.getLogger(__name__)

# Anthropic requires max_tokens; OpenAI clients often omit it.
DEFAULT_MAX_TOKENS = 4096


def for_openai_backend(req: dict, model: str, *, stream: bool = False) -> dict:
    body = dict(req, model=model)
    if stream:
        # Always asked upstream (usage is recorded); the client gets the usage
        # chunk only if it asked for it (OpenAIPassthrough).
        body["stream_options"] = {**(req.get("stream_options") or {}), "include_usage": True}
    return body


def to_anthropic_request(req: dict, model: str, *, stream: bool = False) -> dict:
    system: list[str] = []
    messages: list[dict] = []
    for message in req["messages"]:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            text = _text(content)
            if text:
                system.append(text)
        elif role == "assistant":
            blocks = _blocks(content)
            reasoning = message.get("reasoning_content") or message.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                log.debug("dropped assistant reasoning: it has no signature Anthropic would accept")
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or "",
                        "name": function.get("name", ""),
                        "input": parse_arguments(function.get("arguments")),
                    }
                )
            _append(messages, "assistant", blocks)
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _blocks(content) or "",
            }
            _append(messages, "user", [result])
        else:
            _append(messages, "user", _blocks(content))

    body: dict = {
        "model": model,
        "max_tokens": req.get("max_completion_tokens")
        or req.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        body["system"] = "\n\n".join(system)
    if stream:
        body["stream"] = True
    for key in ("temperature", "top_p", "top_k"):
        if req.get(key) is not None:
            body[key] = req[key]
    stop = req.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(req.get("user"), str):
        body["metadata"] = {"user_id": req["user"]}
    tools = [_tool(t) for t in req.get("tools") or [] if isinstance(t, dict) and t.get("function")]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(req.get("tool_choice"))
        if req.get("parallel_tool_calls") is False:
            choice = dict(choice or {"type": "auto"}, disable_parallel_tool_use=True)
        if choice:
            body["tool_choice"] = choice
    fmt = req.get("response_format") or {}
    if fmt.get("type") == "json_schema" and isinstance(
        (fmt.get("json_schema") or {}).get("schema"), dict
    ):
        body["output_config"] = {
            "format": {"type": "json_schema", "schema": fmt["json_schema"]["schema"]}
        }
    effort = req.get("reasoning_effort")
    if effort in ("low", "medium", "high"):
        body["output_config"] = dict(body.get("output_config") or {}, effort=effort)
    return body


def _append(messages: list[dict], role: str, blocks: list[dict]) -> None:
    """Anthropic wants alternating roles: merge consecutive same-role turns
    (several tool results become one user message, in order)."""
    if not blocks:
        blocks = [{"type": "text", "text": ""}] if role == "user" else []
        if not blocks:
            return
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": list(blocks)})


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _blocks(content) -> list[dict]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind in ("image_url", "input_image"):
            image = _image(part)
            if image:
                blocks.append(image)
        else:
            log.debug("dropped content part of type %r", kind)
    return blocks


def _image(part: dict) -> dict | None:
    ref = part.get("image_url")
    url = ref.get("url") if isinstance(ref, dict) else ref
    if not isinstance(url, str) or not url:
        return None
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _tool(tool: dict) -> dict:
    function = tool["function"]
    out = {
        "name": function.get("name", ""),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice) -> dict | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return {"type": "tool", "name": choice["function"]["name"]}
    return None
