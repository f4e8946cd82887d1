"""POST /v1/messages and /v1/messages/count_tokens (Anthropic dialect)."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from ..convert import MalformedResponse, StreamTranslator, to_anthropic_message, to_openai_request
from ..convert.quirks import apply_quirks
from ..errors import ApiError, InvalidRequest, PromptTooLong
from ..gateway import current_gateway
from ..logs import log_request
from ..relay import client_gone_check, relay_anthropic
from ..schemas.anthropic import first_error, load_count_tokens_request, load_messages_request
from ..tokens import estimate_prompt_tokens
from . import json_body

bp = Blueprint("messages", __name__)

CHAT_PATH = "/v1/chat/completions"


def _validated(loader) -> dict:
    try:
        return loader(json_body())
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc.messages)) from None


@bp.post("/v1/messages")
def create_message():
    req = _validated(load_messages_request)
    gateway = current_gateway()
    backend = gateway.router.for_model(req["model"])
    stream = bool(req.get("stream"))
    body = apply_quirks(
        to_openai_request(req, backend.model, stream=stream, kind=gateway.caps(backend).kind),
        backend.quirks,
    )
    upstream_bytes = _dumps(body)
    prompt = gateway.fit(backend, body, len(upstream_bytes))
    input_estimate = prompt.tokens if prompt else estimate_prompt_tokens(upstream_bytes)
    started = time.monotonic()
    log_fields = dict(
        request_id=g.request_id, route="/v1/messages", backend=backend.name,
        model=req["model"], backend_model=backend.model, stream=str(stream).lower(),
    )  # fmt: skip

    def send(call):
        try:
            return call(CHAT_PATH, _dumps(body))
        except PromptTooLong as exc:
            if not gateway.refit_after_overflow(body, exc):
                raise
            return call(CHAT_PATH, _dumps(body))

    if not stream:
        completion = send(backend.post_json)
        try:
            message = to_anthropic_message(
                completion, req["model"], input_tokens_estimate=input_estimate,
                max_tokens=body["max_tokens"],
            )  # fmt: skip
        except MalformedResponse as exc:
            raise ApiError(f"backend {backend.url} returned an invalid completion: {exc}") from None
        usage = message["usage"]
        log_request(
            **log_fields, status=200, input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"], ms=_ms(started),
        )  # fmt: skip
        return jsonify(message)

    upstream = send(backend.open_stream)
    translator = StreamTranslator(
        req["model"], input_tokens=input_estimate, max_tokens=body["max_tokens"]
    )

    def done(outcome: str) -> None:
        usage = getattr(translator, "final_usage", None) or {}
        log_request(
            **log_fields, status=200, outcome=outcome,
            input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
            ms=_ms(started),
        )  # fmt: skip

    events = relay_anthropic(
        upstream,
        translator,
        ping_interval=gateway.settings.ping_interval,
        client_gone=client_gone_check(request.environ),
        on_done=done,
    )
    return Response(
        events,
        status=200,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    """Exact where the backend can tokenize (the request as the backend will
    see it: system, messages, tools, tool calls and results), else an estimate."""
    req = _validated(load_count_tokens_request)
    gateway = current_gateway()
    backend = gateway.router.for_model(req["model"])
    req.setdefault("max_tokens", 1)
    body = apply_quirks(
        to_openai_request(req, backend.model, kind=gateway.caps(backend).kind), backend.quirks
    )
    count = gateway.count_prompt(backend, body)
    return jsonify({"input_tokens": count.tokens})


def _dumps(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
