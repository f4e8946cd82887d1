"""POST /v1/chat/completions (OpenAI dialect)."""

from __future__ import annotations

import time

from flask import Blueprint, g, jsonify

from ..convert.anthropic_response import to_openai_completion
from ..convert.openai_request import to_anthropic_request
from ..convert.openai_stream import AnthropicToOpenAIStream, ChunkRelay
from ..convert.quirks import apply_quirks
from ..errors import ApiError
from ..gateway import current_gateway
from ..logs import log_request
from ..relay import relay_openai
from ..routing import openai_has_images
from ..schemas.openai import load_chat_request
from . import dumps, elapsed_ms, send_fitted, streamed, validated

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
    started = time.monotonic()
    log_fields = dict(
        request_id=g.request_id, route="/v1/chat/completions", backend=backend.name,
        model=req["model"], backend_model=backend.model, stream=str(stream).lower(),
    )  # fmt: skip

    if backend.settings.anthropic_native:
        return _via_anthropic(gateway, backend, req, stream, include_usage, log_fields, started)

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
        usage = completion.get("usage") or {}
        log_request(
            **log_fields, status=200, input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"), ms=elapsed_ms(started),
        )  # fmt: skip
        return jsonify(completion)

    upstream = send_fitted(gateway, backend.open_stream, CHAT_PATH, body)
    machine = ChunkRelay(req["model"], include_usage=include_usage)
    return _relay(gateway, upstream, machine, log_fields, started)


def _via_anthropic(gateway, backend, req, stream, include_usage, log_fields, started):
    """An Anthropic-native backend: convert the request, and the reply back."""
    body = to_anthropic_request(req, backend.model, stream=stream)
    if not stream:
        message = backend.post_json("/v1/messages", body)
        if not isinstance(message, dict) or message.get("type") != "message":
            raise ApiError(f"backend {backend.url} returned something that is not a message")
        completion = to_openai_completion(message, req["model"])
        usage = completion["usage"]
        log_request(
            **log_fields, status=200, input_tokens=usage["prompt_tokens"],
            output_tokens=usage["completion_tokens"], ms=elapsed_ms(started),
        )  # fmt: skip
        return jsonify(completion)
    upstream = backend.open_stream("/v1/messages", body)
    machine = AnthropicToOpenAIStream(req["model"], include_usage=include_usage)
    return _relay(gateway, upstream, machine, log_fields, started)


def _relay(gateway, upstream, machine, log_fields, started):
    def usage():
        final = machine.usage or {}
        if "prompt_tokens" in final:
            return final.get("prompt_tokens"), final.get("completion_tokens")
        return final.get("input_tokens"), final.get("output_tokens")

    return streamed(relay_openai, gateway, upstream, machine, log_fields, started, usage)
