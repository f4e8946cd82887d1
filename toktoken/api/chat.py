"""POST /v1/chat/completions (OpenAI dialect)."""

from __future__ import annotations

from flask import Blueprint

from ..pipeline import OPENAI
from ..schemas.openai import load_chat_request
from . import serve

bp = Blueprint("chat", __name__)


@bp.post("/v1/chat/completions")
def chat_completions():
    return serve(OPENAI, load_chat_request)
