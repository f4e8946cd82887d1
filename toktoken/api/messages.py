"""POST /v1/messages and /v1/messages/count_tokens (Anthropic dialect)."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..gateway import current_gateway
from ..pipeline import ANTHROPIC
from ..schemas.anthropic import load_count_tokens_request, load_messages_request
from . import serve, validated

bp = Blueprint("messages", __name__)


@bp.post("/v1/messages")
def create_message():
    return serve(ANTHROPIC, load_messages_request)


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    """Exact where the backend can tokenize, else an estimate. Under the
    key's model access and request limits; it costs no tokens."""
    req = validated(load_count_tokens_request)
    gateway = current_gateway()
    gateway.access.admit(g.client, req["model"], stream=False, counting=True).settle(None)
    return jsonify({"input_tokens": gateway.pipeline.count_tokens(req, request.headers)})
