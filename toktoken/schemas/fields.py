"""Strict marshmallow fields: JSON types as Anthropic's and OpenAI's APIs
check them. Python's bool is an int and marshmallow coerces "0.5" to a
float; a client that sends ``"stream": 1`` or ``"temperature": "hot"`` gets
a 400 naming the field, never a request the backend then refuses."""

from __future__ import annotations

import math

from marshmallow import ValidationError, fields


class StrictBool(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean.")
        return value


class StrictNumber(fields.Field):
    """An int or a float (never a bool, a string, NaN or infinity)."""

    def __init__(self, *, minimum: float | None = None, maximum: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value, attr, data, **kwargs):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationError("Not a valid number.")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"Must be greater than or equal to {self.minimum:g}.")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"Must be less than or equal to {self.maximum:g}.")
        return value


class StrictInteger(fields.Field):
    def __init__(self, *, minimum: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.minimum = minimum

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("Not a valid integer.")
        if self.minimum is not None and value < self.minimum:
            raise ValidationError(f"Must be greater than or equal to {self.minimum}.")
        return value


class TypedObject(fields.Field):
    """An object whose ``type`` is a string (``thinking``, ``tool_choice``):
    other keys are kept; ``required`` maps a type to the keys it needs."""

    def __init__(self, *, required: dict[str, tuple[str, ...]] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.required_by_type = required or {}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, dict):
            raise ValidationError("Not a valid object.")
        kind = value.get("type")
        if not isinstance(kind, str):
            raise ValidationError({"type": ["Field required (a string)."]})
        missing = [
            k for k in self.required_by_type.get(kind, ()) if not isinstance(value.get(k), str)
        ]
        if missing:
            raise ValidationError({missing[0]: [f"Field required for type {kind!r}."]})
        return value
