"""The schemas of the OpenAPI document (see __init__.py): requests as the
gateway checks them, answers as it gives them."""

from __future__ import annotations


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
OBJECT = {"type": "object"}

SCHEMAS: dict = {
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": STRING, "message": STRING},
            },
            "request_id": STRING,
        },
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": STRING,
                    "type": STRING,
                    "param": nullable(STRING),
                    "code": nullable(STRING),
                },
            },
        },
    },
    "ContentBlock": {
        "type": "object",
        "required": ["type"],
        "properties": {"type": STRING},
        "description": "Any block type is accepted; text blocks need text, tool_use blocks id and "
        "name, tool_result blocks tool_use_id, image blocks a source.",
    },
    "Message": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {
                **STRING,
                "description": "user, assistant, system or any other (as user text)",
            },
            "content": {"anyOf": [STRING, {"type": "array", "items": ref("ContentBlock")}]},
        },
    },
    "SystemBlock": {"type": "object", "required": ["type"], "properties": {"type": STRING}},
    "Tool": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": STRING, "input_schema": OBJECT},
    },
    "TypedObject": {"type": "object", "required": ["type"], "properties": {"type": STRING}},
    "MessagesRequest": {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "max_tokens": {"type": "integer", "minimum": 1},
            "messages": {"type": "array", "minItems": 1, "items": ref("Message")},
            "system": {"anyOf": [STRING, {"type": "array", "items": ref("SystemBlock")}]},
            "stream": nullable({"type": "boolean"}),
            "temperature": nullable({"type": "number", "minimum": 0}),
            "top_p": nullable({"type": "number", "minimum": 0, "maximum": 1}),
            "top_k": nullable({"type": "integer", "minimum": 0}),
            "stop_sequences": nullable({"type": "array", "items": STRING}),
            "tools": nullable({"type": "array", "items": ref("Tool")}),
            "tool_choice": nullable(ref("TypedObject")),
            "thinking": nullable(ref("TypedObject")),
            "metadata": nullable(OBJECT),
            "output_config": nullable(OBJECT),
        },
    },
    "MessageResponse": {
        "type": "object",
        "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        "properties": {
            "id": STRING,
            "type": {"const": "message"},
            "role": {"const": "assistant"},
            "model": STRING,
            "content": {"type": "array", "items": ref("TypedObject")},
            "stop_reason": nullable(STRING),
            "stop_sequence": nullable(STRING),
            "usage": {
                "type": "object",
                "required": ["input_tokens", "output_tokens"],
                "properties": {
                    "input_tokens": {"type": "integer"},
                    "output_tokens": {"type": "integer"},
                },
            },
        },
    },
    "CountTokensResponse": {
        "type": "object",
        "required": ["input_tokens"],
        "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": STRING,
            "content": {"anyOf": [STRING, {"type": "array", "items": OBJECT}, {"type": "null"}]},
        },
    },
    "ChatRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "messages": {"type": "array", "minItems": 1, "items": ref("ChatMessage")},
            "stream": nullable({"type": "boolean"}),
            "stream_options": nullable(OBJECT),
            "max_tokens": nullable({"type": "integer", "minimum": 1}),
            "max_completion_tokens": nullable({"type": "integer", "minimum": 1}),
            "temperature": nullable({"type": "number", "minimum": 0}),
            "top_p": nullable({"type": "number", "minimum": 0, "maximum": 1}),
            "frequency_penalty": nullable({"type": "number"}),
            "presence_penalty": nullable({"type": "number"}),
            "n": nullable({"type": "integer", "minimum": 1}),
            "tools": nullable({"type": "array", "items": OBJECT}),
            "tool_choice": nullable({"anyOf": [STRING, ref("TypedObject")]}),
            "stop": nullable({"anyOf": [STRING, {"type": "array", "items": STRING}]}),
            "user": nullable(STRING),
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["model", "choices"],
        "properties": {
            "id": STRING,
            "object": STRING,
            "model": STRING,
            "choices": {"type": "array", "minItems": 1, "items": OBJECT},
            "usage": OBJECT,
        },
    },
    "ModelList": {
        "anyOf": [
            {
                "type": "object",
                "required": ["object", "data"],
                "properties": {
                    "object": {"const": "list"},
                    "data": {"type": "array", "items": OBJECT},
                },
            },
            {
                "type": "object",
                "required": ["data", "has_more"],
                "properties": {
                    "data": {"type": "array", "items": OBJECT},
                    "has_more": {"type": "boolean"},
                },
            },
        ]
    },
    "Health": {
        "type": "object",
        "required": ["status", "backends"],
        "properties": {
            "status": {"enum": ["ok", "degraded"]},
            "backends": {"type": "array", "items": OBJECT},
        },
    },
    "Ready": {
        "type": "object",
        "required": ["ready", "backend"],
        "properties": {"ready": {"type": "boolean"}, "backend": OBJECT},
    },
    "Stats": {
        "type": "object",
        "required": ["telemetry"],
        "properties": {"telemetry": {"type": "boolean"}},
    },
}

# count_tokens takes a Messages request without max_tokens.
SCHEMAS["CountTokensRequest"] = {
    **SCHEMAS["MessagesRequest"],
    "required": ["model", "messages"],
}
