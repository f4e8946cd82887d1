"""The gateway's OpenAPI 3.1 document, served at ``GET /openapi.json``.

It describes what the gateway *checks*, not all of Anthropic's or OpenAI's
API: requests may carry any other field, role or block type (client drift
is tolerated), and a field described here is refused with a 400 when it has
the wrong type or is missing. tests/test_fuzz.py holds the gateway to it
with schemathesis: valid examples must be served, invalid ones refused with a
4xx, every answer must match its description, and nothing may be a 5xx.
"""

from __future__ import annotations

from functools import cache

from .schemas import OBJECT, SCHEMAS, STRING, ref

VERSION = "1"


def _json(schema_name: str) -> dict:
    return {"application/json": {"schema": ref(schema_name)}}


def _errors(shape: str, statuses: tuple[int, ...]) -> dict:
    return {str(s): {"description": "an error", "content": _json(shape)} for s in statuses}


ANTHROPIC_ERRORS = (400, 401, 403, 404, 413, 429, 500, 502, 504, 529)
OPENAI_ERRORS = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)

# Server-sent events, one schema per event (as schemathesis reads them).
_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {"event": STRING, "data": STRING},
        }
    }
}
_HTML = {"text/html": {"schema": STRING}}


def _post(summary: str, request: str, ok: dict, shape: str, statuses: tuple[int, ...]) -> dict:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": _json(request)},
            "responses": {
                "200": {"description": "the answer", "content": ok},
                **_errors(shape, statuses),
            },
        }
    }


def _get(
    summary: str, responses: dict, *, public: bool = False, parameters: list | None = None
) -> dict:
    operation: dict = {"summary": summary, "responses": responses}
    if public:
        operation["security"] = []
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _query(name: str, schema: dict) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema}


@cache
def document() -> dict:
    anthropic_errors = _errors("AnthropicError", (401, 404, 500))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Toktoken",
            "version": VERSION,
            "description": "Anthropic Messages API (and OpenAI Chat Completions) in front of "
            "self-hosted OpenAI-compatible model servers.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": {
            "/v1/messages": _post(
                "Create a message (Anthropic Messages API)",
                "MessagesRequest",
                {**_json("MessageResponse"), **_STREAM},
                "AnthropicError",
                ANTHROPIC_ERRORS,
            ),
            "/v1/messages/count_tokens": _post(
                "Count a request's input tokens",
                "CountTokensRequest",
                _json("CountTokensResponse"),
                "AnthropicError",
                ANTHROPIC_ERRORS,
            ),
            "/v1/chat/completions": _post(
                "Create a chat completion (OpenAI Chat Completions)",
                "ChatRequest",
                {**_json("ChatCompletion"), **_STREAM},
                "OpenAIError",
                OPENAI_ERRORS,
            ),
            "/v1/models": _get(
                "The models that can be asked for",
                {
                    "200": {
                        "description": "OpenAI's list, or Anthropic's with an anthropic-version header",
                        "content": _json("ModelList"),
                    },
                    **anthropic_errors,
                },
                parameters=[
                    {
                        "name": "anthropic-version",
                        "in": "header",
                        "required": False,
                        "schema": STRING,
                    }
                ],
            ),
            "/health": _get(
                "Liveness and each backend up or down (details with a key)",
                {"200": {"description": "alive", "content": _json("Health")}},
                public=True,
            ),
            "/health/ready": _get(
                "Readiness: the default backend answers",
                {
                    "200": {"description": "ready", "content": _json("Ready")},
                    "503": {"description": "not ready", "content": _json("Ready")},
                },
                public=True,
            ),
            "/metrics": _get(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text format",
                        "content": {"text/plain": {"schema": STRING}},
                    }
                },
                public=True,
            ),
            "/stats": _get(
                "Token usage from the ledger",
                {
                    "200": {"description": "totals and groups", "content": _json("Stats")},
                    **_errors("AnthropicError", (400, 401, 500)),
                },
                parameters=[
                    _query("since", STRING),
                    _query("until", STRING),
                    _query(
                        "group_by",
                        {
                            "enum": [
                                "model",
                                "backend",
                                "key",
                                "route",
                                "status",
                                "session",
                                "replica",
                                "hour",
                                "day",
                            ]
                        },
                    ),
                ],
            ),
            "/": _get(
                "The gateway's name",
                {
                    "200": {
                        "description": "ok",
                        "content": {"application/json": {"schema": OBJECT}},
                    }
                },
                public=True,
            ),
            "/openapi.json": _get(
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": OBJECT}},
                    }
                },
                public=True,
            ),
            "/dashboard": _get(
                "The usage dashboard (browsers: see /dashboard/login)",
                {
                    "200": {"description": "the page", "content": _HTML},
                    "303": {"description": "to the sign-in form"},
                },
                public=True,
            ),
            "/dashboard/login": {
                **_get(
                    "The sign-in form",
                    {"200": {"description": "the form", "content": _HTML}},
                    public=True,
                ),
                "post": {
                    "summary": "Sign in with a key (sets the dashboard's session cookie)",
                    "security": [],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {"type": "object", "properties": {"key": STRING}}
                            }
                        },
                    },
                    "responses": {
                        "303": {"description": "signed in: to the dashboard"},
                        "401": {"description": "not a valid key", "content": _HTML},
                    },
                },
            },
            "/dashboard/logout": {
                "post": {
                    "summary": "Sign out",
                    "security": [],
                    "responses": {"303": {"description": "to the sign-in form"}},
                }
            },
        },
    }
