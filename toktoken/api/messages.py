"""POST /v1/messages and /v1/messages/count_tokens (Anthropic dialect)."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from ..convert import MalformedResponse, StreamTranslator, to_anthropic_message, to_openai_request
from ..convert.common import estimate_tokens
from ..errors import ApiError, InvalidRequest
from ..gateway import current_gateway
from ..logs import log_request
from ..relay import client_gone_check, relay_anthropic
from ..schemas.anthropic import first_error, load_count_tokens_request, load_messages_request
from . import json_body

bp = Blueprint("messages", __name__)

CHAT_PATH = "/v1/chat/completions"


def _validated(loader) -> dict:
    try:
        return loader(json_body())
    except ValidationError as exc:
        raise InvalidRequest(first_error(exc.messages)) from None


def _estimate_input_tokens(upstream_body: bytes) -> int:
    # chars/4 over the JSON the backend will see (a slight overestimate, which
    # errs on the side of compacting early rather than overflowing).
    return estimate_tokens(len(upstream_body))


@bp.post("/v1/messages")
def create_message():
    req = _validated(load_messages_request)
    gateway = current_gateway()
    backend = gateway.default
    stream = bool(req.get("stream"))
    upstream_body = json.dumps(
        to_openai_request(req, backend.model, stream=stream), ensure_ascii=False
    ).encode()
    input_estimate = _estimate_input_tokens(upstream_body)
    started = time.monotonic()
    log_fields = dict(
        request_id=g.request_id, route="/v1/messages", backend=backend.name,
        model=req["model"], backend_model=backend.model, stream=str(stream).lower(),
    )  # fmt: skip

    if not stream:
        completion = backend.post_json(CHAT_PATH, upstream_body)
        try:
            message = to_anthropic_message(
                completion, req["model"], input_tokens_estimate=input_estimate
            )
        except MalformedResponse as exc:
            raise ApiError(f"backend {backend.url} returned an invalid completion: {exc}") from None
        usage = message["usage"]
        log_request(
            **log_fields, status=200, input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"], ms=_ms(started),
        )  # fmt: skip
        return jsonify(message)

    upstream = backend.open_stream(CHAT_PATH, upstream_body)
    translator = StreamTranslator(req["model"], input_tokens=input_estimate)

    def done(outcome: str) -> None:
        usage = getattr(translator, "final_usage", None) or {}
        log_request(
            **log_fields, status=200, outcome=outcome,
            input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens"),
            ms=_ms(started),
        )  # fmt: skip

    body = relay_anthropic(
        upstream,
        translator,
        ping_interval=gateway.settings.ping_interval,
        client_gone=client_gone_check(request.environ),
        on_done=done,
    )
    return Response(
        body,
        status=200,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    """An estimate (characters/4 of the converted request, tools included)."""
    req = _validated(load_count_tokens_request)
    backend = current_gateway().default
    req.setdefault("max_tokens", 1)
    upstream_body = json.dumps(to_openai_request(req, backend.model), ensure_ascii=False)
    return jsonify({"input_tokens": _estimate_input_tokens(upstream_body.encode())})


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
