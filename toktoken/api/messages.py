"""POST /v1/messages and /v1/messages/count_tokens (Anthropic dialect)."""

from __future__ import annotations

import time

from flask import Blueprint, g, jsonify, request

from ..convert import MalformedResponse, StreamTranslator, to_anthropic_message, to_openai_request
from ..convert.anthropic_passthrough import AnthropicPassthrough
from ..convert.quirks import apply_quirks
from ..errors import ApiError
from ..gateway import current_gateway
from ..relay import relay_anthropic
from ..routing import anthropic_has_images
from ..schemas.anthropic import load_count_tokens_request, load_messages_request
from ..tokens import estimate_prompt_tokens
from . import dumps, send_fitted, streamed, validated

bp = Blueprint("messages", __name__)

CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
# Headers an Anthropic-native backend gets from the client (never its key).
_FORWARDED = ("anthropic-version", "anthropic-beta")


def _backend_for(gateway, req: dict):
    return gateway.router.choose(
        req["model"], has_images=anthropic_has_images(req), vision=gateway.vision
    )


@bp.post("/v1/messages")
def create_message():
    req = validated(load_messages_request)
    gateway = current_gateway()
    backend = _backend_for(gateway, req)
    stream = bool(req.get("stream"))
    draft = g.usage
    draft.model, draft.backend, draft.backend_model, draft.stream = (
        req["model"], backend.name, backend.model, stream)  # fmt: skip

    if backend.settings.anthropic_native:
        return _native(gateway, backend, req, stream, draft)

    body = apply_quirks(
        to_openai_request(req, backend.model, stream=stream, kind=gateway.caps(backend).kind),
        backend.quirks,
    )
    upstream_bytes = dumps(body)
    prompt = gateway.fit(backend, body, len(upstream_bytes))
    input_estimate = prompt.tokens if prompt else estimate_prompt_tokens(upstream_bytes)
    # Serialised once: only a fitted max_tokens needs a new serialisation.
    data = upstream_bytes if prompt is None else None

    if not stream:
        completion = send_fitted(gateway, backend.post_json, CHAT_PATH, body, data)
        try:
            message = to_anthropic_message(
                completion, req["model"], input_tokens_estimate=input_estimate,
                max_tokens=body["max_tokens"],
            )  # fmt: skip
        except MalformedResponse as exc:
            raise ApiError(f"backend {backend.url} returned an invalid completion: {exc}") from None
        _finish(draft, message["usage"], exact=isinstance(completion.get("usage"), dict))
        return jsonify(message)

    upstream = send_fitted(gateway, backend.open_stream, CHAT_PATH, body, data)
    translator = StreamTranslator(
        req["model"], input_tokens=input_estimate, max_tokens=body["max_tokens"]
    )

    def usage():
        final = getattr(translator, "final_usage", None) or {}
        return _usage(final, exact=translator.usage_is_exact)

    return streamed(relay_anthropic, gateway, upstream, translator, draft, usage)


def _native(gateway, backend, req: dict, stream: bool, draft):
    """An Anthropic-native backend: forward the request as it is (its model,
    its key) and relay the answer, still watched for usage and errors."""
    body = dict(req, model=backend.model)
    headers = {h: request.headers[h] for h in _FORWARDED if h in request.headers}
    if not stream:
        message = backend.post_json(MESSAGES_PATH, body, headers=headers)
        if not isinstance(message, dict) or message.get("type") != "message":
            raise ApiError(f"backend {backend.url} returned something that is not a message")
        message["model"] = req["model"]
        _finish(draft, message.get("usage") or {}, exact=True)
        return jsonify(message)
    upstream = backend.open_stream(MESSAGES_PATH, body, headers=headers)
    machine = AnthropicPassthrough(req["model"])
    return streamed(relay_anthropic, gateway, upstream, machine, draft,
                    lambda: _usage(machine.final_usage, exact=True))  # fmt: skip


def _usage(usage: dict, *, exact: bool) -> dict:
    return {
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cache_read_tokens": usage.get("cache_read_input_tokens"),
        "exact": exact,
    }


def _finish(draft, usage: dict, *, exact: bool) -> None:
    draft.finish(status=200, first_token_at=time.monotonic(), **_usage(usage, exact=exact))


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    """Exact where the backend can tokenize (the request as the backend will
    see it: system, messages, tools, tool calls and results), else an estimate."""
    req = validated(load_count_tokens_request)
    gateway = current_gateway()
    backend = _backend_for(gateway, req)
    req.setdefault("max_tokens", 1)
    body = apply_quirks(
        to_openai_request(req, backend.model, kind=gateway.caps(backend).kind), backend.quirks
    )
    count = gateway.count_prompt(backend, body)
    return jsonify({"input_tokens": count.tokens})
