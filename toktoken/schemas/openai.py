"""Inbound OpenAI Chat Completions payloads: check what the gateway relies on,
keep everything else (unknown fields pass through to the backend)."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from .fields import StrictBool, StrictInteger, StrictNumber


class _Messages(fields.Field):
    """Checked with plain code, not a nested schema per message (see
    schemas/anthropic.py: long conversations made that the costliest step)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list) or not value:
            raise ValidationError("must be a non-empty list of messages")
        errors: dict = {}
        for i, message in enumerate(value):
            if not isinstance(message, dict):
                errors[i] = {"_schema": ["must be an object"]}
            elif not isinstance(message.get("role"), str):
                errors[i] = {"role": ["Missing data for required field."]}
            elif not (
                message.get("content") is None
                or isinstance(message["content"], str)
                or (
                    isinstance(message["content"], list)
                    and all(isinstance(p, dict) for p in message["content"])
                )
            ):
                errors[i] = {"content": ["must be a string, an array of content parts, or null"]}
        if errors:
            raise ValidationError(errors)
        return value


class _ToolChoice(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            return value
        raise ValidationError('must be "none", "auto", "required" or an object with a "type"')


class _Stop(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            return value
        raise ValidationError("must be a string or a list of strings")


class ChatCompletionRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    messages = _Messages(required=True)
    stream_options = fields.Dict(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)


# The optional scalars, checked only when present: as declared schema fields
# every request would pay for each absent one (marshmallow visits them all:
# ~2 us a field, measured), and OpenAI clients send few of them.
_SCALARS = {
    "stream": StrictBool(allow_none=True),
    "max_tokens": StrictInteger(allow_none=True, minimum=1),
    "max_completion_tokens": StrictInteger(allow_none=True, minimum=1),
    "temperature": StrictNumber(allow_none=True, minimum=0),
    "top_p": StrictNumber(allow_none=True, minimum=0, maximum=1),
    "frequency_penalty": StrictNumber(allow_none=True),
    "presence_penalty": StrictNumber(allow_none=True),
    "n": StrictInteger(allow_none=True, minimum=1),
    "tool_choice": _ToolChoice(allow_none=True),
    "stop": _Stop(allow_none=True),
    "user": fields.String(allow_none=True),
}

_schema = ChatCompletionRequestSchema()


def load_chat_request(payload: object) -> dict:
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["the request body must be a JSON object"]})
    # Validate, but forward the client's own dict: marshmallow would copy it.
    _schema.load(payload)
    for name, field in _SCALARS.items():
        if name in payload:
            try:
                field.deserialize(payload[name])
            except ValidationError as exc:
                raise ValidationError({name: exc.messages}) from None
    return payload
