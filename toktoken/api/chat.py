"""POST /v1/chat/completions (OpenAI dialect)."""

from __future__ import annotations

from flask import Blueprint, request

from ..gateway import current_gateway
from ..pipeline import OPENAI
from ..schemas.openai import load_chat_request
from . import answer, validated

bp = Blueprint("chat", __name__)


@bp.post("/v1/chat/completions")
def chat_completions():
    req = validated(load_chat_request)
    return answer(current_gateway().pipeline.prepare(OPENAI, req, request.headers))
