"""Inbound Anthropic Messages payloads.

The schema checks what the gateway relies on and nothing more. Unknown
top-level fields, message fields, roles and block types are *kept* (marshmallow
``INCLUDE``) and left to the converter to use or drop: a Claude Code release
that adds a field must never get a 400 from us.
"""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from .fields import StrictBool, StrictInteger, StrictNumber, TypedObject

# What each known block type needs to be usable. Unknown types need only "type".
_BLOCK_REQUIRED = {
    "text": {"text": str},
    "tool_use": {"id": str, "name": str},
    "tool_result": {"tool_use_id": str},
    "image": {"source": dict},
}


def _content_errors(value) -> dict | str | None:
    """Problems with one message's content, keyed by block index."""
    if isinstance(value, str):
        return None
    if not isinstance(value, list):
        return "must be a string or a list of content blocks"
    errors = {}
    for i, block in enumerate(value):
        problem = _block_problem(block)
        if problem:
            errors[i] = [problem]
    return errors or None


class _Messages(fields.Field):
    """The conversation. Checked with plain code rather than a nested schema
    per message: Claude Code sends hundreds of messages per request, and a
    Nested schema costs ~10 us each (2.9 ms for 300 messages, measured)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Not a valid list.")
        if not value:
            raise ValidationError("at least one message is required")
        errors: dict = {}
        for i, message in enumerate(value):
            if not isinstance(message, dict):
                errors[i] = {"_schema": ["must be an object"]}
                continue
            problems: dict = {}
            if not isinstance(message.get("role"), str):
                problems["role"] = [
                    "Missing data for required field."
                    if "role" not in message
                    else "Not a valid string."
                ]
            if "content" not in message:
                problems["content"] = ["Missing data for required field."]
            else:
                content_problem = _content_errors(message["content"])
                if content_problem:
                    problems["content"] = (
                        content_problem if isinstance(content_problem, dict) else [content_problem]
                    )
            if problems:
                errors[i] = problems
        if errors:
            raise ValidationError(errors)
        return value


class _Tools(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Not a valid list.")
        errors = {}
        for i, tool in enumerate(value):
            if not isinstance(tool, dict):
                errors[i] = {"_schema": ["must be an object"]}
            elif not isinstance(tool.get("name"), str):
                errors[i] = {"name": ["Missing data for required field."]}
            elif "input_schema" in tool and not isinstance(tool["input_schema"], dict):
                errors[i] = {"input_schema": ["Not a valid object."]}
        if errors:
            raise ValidationError(errors)
        return value


def _block_problem(block) -> str | None:
    if not isinstance(block, dict):
        return "must be an object"
    kind = block.get("type")
    if not isinstance(kind, str):
        return "type: Field required (a string)"
    for name, expected in _BLOCK_REQUIRED.get(kind, {}).items():
        if not isinstance(block.get(name), expected):
            return f"{name}: Field required for a {kind} block"
    if kind == "image":
        source = block["source"]
        if source.get("type") == "base64" and not isinstance(source.get("data"), str):
            return "source.data: Field required for a base64 image"
        if source.get("type") == "url" and not isinstance(source.get("url"), str):
            return "source.url: Field required for a url image"
    return None


class _System(fields.Field):
    """A string or a list of blocks, each with a string ``type``; text blocks
    need their ``text`` (other block types are tolerated: client drift)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("must be a string or a list of text blocks")
        errors = {}
        for i, block in enumerate(value):
            if not isinstance(block, dict):
                errors[i] = ["must be an object"]
            elif not isinstance(block.get("type"), str):
                errors[i] = {"type": ["Field required (a string)."]}
            elif block["type"] == "text" and not isinstance(block.get("text"), str):
                errors[i] = {"text": ["Field required for a text block."]}
        if errors:
            raise ValidationError(errors)
        return value


class MessagesRequestSchema(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(required=True, validate=validate.Length(min=1))
    max_tokens = StrictInteger(required=True, minimum=1)
    # Any role string is accepted: "user", "assistant", Claude Code's mid-list
    # "system", and whatever a future client sends (treated as user text).
    messages = _Messages(required=True)
    system = _System()
    stream = StrictBool(allow_none=True)
    temperature = StrictNumber(allow_none=True, minimum=0)
    top_p = StrictNumber(allow_none=True, minimum=0, maximum=1)
    top_k = StrictInteger(allow_none=True, minimum=0)
    stop_sequences = fields.List(fields.String(), allow_none=True)
    tools = _Tools(allow_none=True)
    tool_choice = TypedObject(allow_none=True, required={"tool": ("name",)})
    metadata = fields.Dict(allow_none=True)
    thinking = TypedObject(allow_none=True)
    output_config = fields.Dict(allow_none=True)


class CountTokensRequestSchema(MessagesRequestSchema):
    max_tokens = StrictInteger(minimum=1)


_messages_schema = MessagesRequestSchema()
_count_tokens_schema = CountTokensRequestSchema()


def load_messages_request(payload: object) -> dict:
    """Validate a Messages request; raise ValidationError with field paths."""
    return _load(_messages_schema, payload)


def load_count_tokens_request(payload: object) -> dict:
    """Like a Messages request, without max_tokens."""
    return _load(_count_tokens_schema, payload)


def _load(schema: Schema, payload: object) -> dict:
    if not isinstance(payload, dict):
        raise ValidationError({"_schema": ["the request body must be a JSON object"]})
    return schema.load(payload)


def first_error(errors: dict | list, prefix: str = "") -> str:
    """Flatten marshmallow's nested error dict into 'messages.0.content: ...'."""
    if isinstance(errors, list):
        item = errors[0]
        if isinstance(item, (dict, list)):
            return first_error(item, prefix)
        return f"{prefix}: {item}" if prefix else str(item)
    key, value = next(iter(errors.items()))
    path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
    if isinstance(value, (dict, list)):
        return first_error(value, path)
    return f"{path}: {value}"
