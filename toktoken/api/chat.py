"""POST /v1/chat/completions (OpenAI dialect)."""

from __future__ import annotations

import time

from flask import Blueprint, g, jsonify

from ..convert.anthropic_response import openai_usage, to_openai_completion
from ..convert.openai_request import to_anthropic_request
from ..convert.openai_stream import AnthropicToOpenAIStream, ChunkRelay
from ..convert.quirks import apply_quirks
from ..errors import ApiError
from ..gateway import current_gateway
from ..relay import relay_openai
from ..routing import openai_has_images
from ..schemas.openai import load_chat_request
from . import dumps, send_fitted, streamed, validated

bp = Blueprint("chat", __name__)

CHAT_PATH = "/v1/chat/completions"


@bp.post("/v1/chat/completions")
def chat_completions():
    req = validated(load_chat_request)
    gateway = current_gateway()
    backend = gateway.router.choose(
        req["model"], has_images=openai_has_images(req), vision=gateway.vision
    )
    stream = bool(req.get("stream"))
    include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
    draft = g.usage
    draft.model, draft.backend, draft.backend_model, draft.stream = (
        req["model"], backend.name, backend.model, stream)  # fmt: skip

    if backend.settings.anthropic_native:
        return _via_anthropic(gateway, backend, req, stream, include_usage, draft)

    body = dict(req, model=backend.model)
    if stream:
        # Always asked upstream (usage is recorded); the client gets the
        # usage chunk only if it asked for it.
        body["stream_options"] = {**(req.get("stream_options") or {}), "include_usage": True}
    apply_quirks(body, backend.quirks)
    if isinstance(body.get("max_tokens"), int):
        gateway.fit(backend, body, len(dumps(body)))

    if not stream:
        completion = send_fitted(gateway, backend.post_json, CHAT_PATH, body)
        if not isinstance(completion, dict) or not completion.get("choices"):
            raise ApiError(f"backend {backend.url} returned an invalid completion")
        completion["model"] = req["model"]
        _finish(draft, completion.get("usage"))
        return jsonify(completion)

    upstream = send_fitted(gateway, backend.open_stream, CHAT_PATH, body)
    machine = ChunkRelay(req["model"], include_usage=include_usage)
    return streamed(relay_openai, gateway, upstream, machine, draft, lambda: _usage(machine.usage))


def _via_anthropic(gateway, backend, req, stream, include_usage, draft):
    """An Anthropic-native backend: convert the request, and the reply back."""
    body = to_anthropic_request(req, backend.model, stream=stream)
    if not stream:
        message = backend.post_json("/v1/messages", body)
        if not isinstance(message, dict) or message.get("type") != "message":
            raise ApiError(f"backend {backend.url} returned something that is not a message")
        completion = to_openai_completion(message, req["model"])
        _finish(draft, completion["usage"])
        return jsonify(completion)
    upstream = backend.open_stream("/v1/messages", body)
    machine = AnthropicToOpenAIStream(req["model"], include_usage=include_usage)
    return streamed(relay_openai, gateway, upstream, machine, draft,
                    lambda: _usage(openai_usage(machine.usage)))  # fmt: skip


def _usage(usage: dict | None) -> dict:
    """OpenAI usage -> the record's fields (input excludes cached tokens)."""
    if not isinstance(usage, dict):
        return {"input_tokens": None, "output_tokens": None, "exact": False}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": (usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": usage.get("completion_tokens"),
        "cache_read_tokens": cached,
        "exact": True,
    }


def _finish(draft, usage: dict | None) -> None:
    draft.finish(status=200, first_token_at=time.monotonic(), **_usage(usage))
