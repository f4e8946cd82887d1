"""Inbound OpenAI Chat Completions payloads: check what the gateway relies on,
keep everything else (unknown fields pass through to the backend)."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate


class _Content(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(p, dict) for p in value):
            return value
        raise ValidationError("must be a string, an array of content parts, or null")


class ChatMessageSchema(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True)
    content = _Content(allow_none=True)


class ChatCompletionRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = fields.List(fields.Nested(ChatMessageSchema), required=True,
                           validate=validate.Length(min=1))  # fmt: skip
    stream = fields.Boolean(truthy={True}, falsy={False}, allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    max_tokens = fields.Integer(strict=True, allow_none=True, validate=validate.Range(min=1))
    max_completion_tokens = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1)
    )
    tools = fields.List(fields.Dict(), allow_none=True)


_schema = ChatCompletionRequestSchema()


def load_chat_request(payload: object) -> dict:
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["the request body must be a JSON object"]})
    # Validate, but forward the client's own dict: marshmallow would copy it.
    _schema.load(payload)
    return payload
