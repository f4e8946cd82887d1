"""Each dialect's complete tool-call markup, as calls to declared tools. Pure.

``text_tools.ToolCallRescuer`` finds where markup starts and ends in a
stream; this module reads a complete piece of it (the formats, and their
sources, are in text_tools.py's docstring). A parse either gives calls to
declared tools with object arguments, or raises, and the markup stays text.

Values written as text (Qwen3-Coder's ``<parameter=P>``, GLM's
``<arg_value>``) lose their JSON type; the tool's ``input_schema`` gives it
back, as the family's server-side parsers do (vLLM's ``qwen3_coder`` and
``glm45`` convert by the property's type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

# Where markup starts, and the dialects each marker opens.
TOOL_CALL = "<tool_call>"
MISTRAL = "[TOOL_CALLS]"
PYTHON_TAG = "<|python_tag|>"
DS_BEGIN, DS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
MARKERS = {
    TOOL_CALL: ("hermes", "qwen3_coder", "glm45"),
    MISTRAL: ("mistral",),
    PYTHON_TAG: ("llama3_json",),
    DS_BEGIN: ("deepseek",),
}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict
    dialect: str


class MarkupParser:
    """``tools``: declared name -> input schema; ``allowed(dialect)``: the
    configured dialect pin."""

    def __init__(self, tools: dict[str, dict | None], allowed: Callable[[str], bool]):
        self.tools = tools
        self.allowed = allowed

    def parse(self, marker: str, markup: str) -> list[ToolCall] | None:
        try:
            if marker == TOOL_CALL:
                return self._tool_call_tag(markup)
            if marker == MISTRAL:
                return self._mistral(markup[len(marker) :])
            if marker == PYTHON_TAG:
                return self.llama_calls(json.loads(markup[len(marker) :]))
            return self._deepseek(markup)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def _call(self, name, arguments, dialect: str) -> ToolCall:
        if not isinstance(name, str) or name not in self.tools or not isinstance(arguments, dict):
            raise ValueError("not a declared tool, or arguments that are not an object")
        return ToolCall(name, arguments, dialect)

    def _tool_call_tag(self, markup: str) -> list[ToolCall] | None:
        body = markup[len(TOOL_CALL) : -len("</tool_call>")].strip()
        if body.startswith("{") and self.allowed("hermes"):
            value = json.loads(body)
            return [self._call(value["name"], arguments_of(value), "hermes")]
        if body.startswith("<function=") and self.allowed("qwen3_coder"):
            return [self._qwen3_coder(body)]
        if self.allowed("glm45"):
            return [self._glm45(body)]
        return None

    def _qwen3_coder(self, body: str) -> ToolCall:
        match = re.fullmatch(r"<function=([^>\n]+)>(.*?)</function>", body, re.S)
        name = match.group(1).strip()
        params = {}
        rest = match.group(2)
        for m in re.finditer(r"<parameter=([^>\n]+)>(.*?)</parameter>", rest, re.S):
            value = m.group(2)
            value = value[1:] if value.startswith("\n") else value
            value = value[:-1] if value.endswith("\n") else value
            params[m.group(1).strip()] = typed(
                property_schema(self.tools, name, m.group(1).strip()), value
            )
        if re.sub(r"<parameter=[^>\n]+>.*?</parameter>", "", rest, flags=re.S).strip():
            raise ValueError("stray text between the parameters")
        return self._call(name, params, "qwen3_coder")

    def _glm45(self, body: str) -> ToolCall:
        name, _, rest = body.partition("<arg_key>")
        name = name.strip()
        if not re.fullmatch(r"[\w.-]+", name):
            raise ValueError("not a function name")
        params = {}
        for m in re.finditer(r"(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>\s*(?:<arg_key>|$)",
                             rest, re.S):  # fmt: skip
            key, value = m.group(1).strip(), m.group(2).strip()
            schema = property_schema(self.tools, name, key)
            params[key] = value if (schema or {}).get("type") == "string" else json_or_text(value)
        if rest and not params:
            raise ValueError("arguments that do not parse")
        return self._call(name, params, "glm45")

    def _mistral(self, text: str) -> list[ToolCall]:
        body = text.strip()
        if body.startswith("["):
            return [self._call(c["name"], arguments_of(c), "mistral") for c in json.loads(body)]
        if body.startswith("{"):
            value = json.loads(body)
            return [self._call(value["name"], arguments_of(value), "mistral")]
        name, marker, args = body.partition("[ARGS]")
        if not marker:
            raise ValueError("no [ARGS]")
        return [self._call(name.strip(), json.loads(args), "mistral")]

    def llama_calls(self, value) -> list[ToolCall] | None:
        try:
            values = value if isinstance(value, list) else [value]
            return [self._call(v["name"], v.get("parameters", v.get("arguments")), "llama3_json")
                    for v in values]  # fmt: skip
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def _deepseek(self, markup: str) -> list[ToolCall]:
        body = markup[len(DS_BEGIN) : -len(DS_END)]
        calls = re.findall(r"<｜tool▁call▁begin｜>(.*?)<｜tool▁call▁end｜>", body, re.S)
        if (
            not calls
            or re.sub(r"<｜tool▁call▁begin｜>.*?<｜tool▁call▁end｜>", "", body, flags=re.S).strip()
        ):
            raise ValueError("not DeepSeek tool-call markup")
        out = []
        for call in calls:
            head, _, args = call.partition("<｜tool▁sep｜>")
            if head.strip() == "function":  # V3/R1: function<sep>NAME\n```json\n{...}\n```
                name, _, fenced = args.partition("\n")
                args = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", fenced, re.S).group(1)
            else:  # V3.1: NAME<sep>{...}
                name = head
            out.append(self._call(name.strip(), json.loads(args), "deepseek"))
        return out


def property_schema(tools: dict, tool: str, name: str) -> dict | None:
    """The schema of parameter ``name`` of ``tool``, when it declares one."""
    schema = tools.get(tool) or {}
    prop = (schema.get("properties") or {}).get(name) if isinstance(schema, dict) else None
    return prop if isinstance(prop, dict) else None


def typed(schema: dict | None, value: str):
    """A parameter written as text, as its schema's type: 3 for an integer
    property, not "3". Text that does not fit the type stays text."""
    kind = (schema or {}).get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "string" in kinds or kind is None:
        return value
    text = value.strip()
    if text == "null" and "null" in kinds:
        return None
    for k in kinds:
        try:
            if k == "integer":
                return int(text)
            if k == "number":
                number = float(text)
                return int(number) if number.is_integer() and "." not in text else number
            if k == "boolean" and text.lower() in ("true", "false"):
                return text.lower() == "true"
            if k in ("object", "array"):
                return json.loads(text)
        except ValueError:
            continue
    return value


def arguments_of(call: dict) -> dict:
    """A JSON call's arguments ("arguments" or "parameters"), decoded when a
    model wrote them as a JSON string."""
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):
        args = json.loads(args)
    return args


def json_or_text(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value
