"""HTTP blueprints: parse, authenticate, validate, call down, shape the reply."""

from __future__ import annotations

import json

from flask import request

from ..errors import InvalidRequest


def json_body() -> object:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
