"""POST /v1/messages and /v1/messages/count_tokens (Anthropic dialect)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..gateway import current_gateway
from ..pipeline import ANTHROPIC
from ..schemas.anthropic import load_count_tokens_request, load_messages_request
from . import answer, validated

bp = Blueprint("messages", __name__)


@bp.post("/v1/messages")
def create_message():
    req = validated(load_messages_request)
    return answer(current_gateway().pipeline.prepare(ANTHROPIC, req, request.headers))


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    """Exact where the backend can tokenize, else an estimate."""
    req = validated(load_count_tokens_request)
    return jsonify({"input_tokens": current_gateway().pipeline.count_tokens(req, request.headers)})
