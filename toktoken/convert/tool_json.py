"""Tool-call arguments: repair what models emit, and stream only valid JSON.

Models (and max_tokens cuts) produce arguments that are not JSON: trailing
whitespace or garbage, single quotes, a truncated object. Clients parse tool
input as JSON and Claude Code drops a tool call whose input does not parse, so
the gateway must always deliver an object.
"""

from __future__ import annotations

import ast
import json

_decoder = json.JSONDecoder()


def parse_arguments(raw: str | dict | None) -> dict:
    """Best-effort ``dict`` from a tool call's ``arguments``; never raises."""
    if isinstance(raw, dict):
        return raw
    if not raw or not raw.strip():
        return {}
    text = raw.strip()
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {"value": value}
    except ValueError:
        pass
    # Trailing garbage after a complete object: '{"a": 1}}' or '{"a":1} <|im_end|>'.
    try:
        value, _end = _decoder.raw_decode(text)
        if isinstance(value, dict):
            return value
    except ValueError:
        pass
    # Python-literal style: {'a': 'b', 'c': True}, possibly followed by
    # garbage: try each closing brace from the end (a bounded number of them).
    ends = [i for i, ch in enumerate(text) if ch == "}"][-20:]
    for end in reversed(ends):
        try:
            value = ast.literal_eval(text[: end + 1])
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
        if isinstance(value, dict):
            return json.loads(json.dumps(value, default=str))
    # Truncated (max_tokens cut the arguments): close what is open.
    scanner = JsonPrefix()
    accepted = scanner.feed(text)
    if accepted.strip():
        try:
            value = json.loads(accepted + scanner.completion())
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
    return {}


class JsonPrefix:
    """Incremental checker for "is this text a prefix of a JSON object?".

    ``feed(fragment)`` returns the part of the text that can be forwarded now.
    Forwarded text always ends at a *safe point*: a place from which
    ``completion()`` can close it into a valid JSON object. Unsafe places are
    inside an escape sequence, right after a comma, inside a partial literal
    (``tr``) or after a number that is not yet a number (``-``, ``1.``, ``1e``);
    text after such a place is held until the next safe point. After the first
    character that makes the text invalid the scanner is *broken* and forwards
    nothing more.

    This is what lets the stream translator forward tool arguments live yet
    guarantee the client can parse them at content_block_stop: whatever the
    upstream sends, forwarded + completion() is a valid JSON object.
    """

    _LITERALS = ("true", "false", "null")

    def __init__(self) -> None:
        self.broken = False
        self._pending = ""  # scanned text not yet forwarded (after the last safe point)
        self._stack: list[str] = []  # open containers, "{" or "["
        # expect: "start" (before the top-level "{"), "key", "colon", "value",
        # "after" (after a value), "string", "literal", "number", "done"
        self._expect = "start"
        self._after_comma = False
        self._is_key = False
        self._escape = ""
        self._token = ""
        self._safe_state = ("start", (), False)

    def feed(self, fragment: str) -> str:
        out: list[str] = []
        for ch in fragment:
            if self.broken:
                break
            self._pending += ch
            if not self._step(ch):
                self.broken = True
                break
            if self._is_safe():
                out.append(self._pending)
                self._pending = ""
                self._safe_state = (self._expect, tuple(self._stack), self._is_key)
        return "".join(out)

    @property
    def complete(self) -> bool:
        """The forwarded text is a whole JSON object."""
        return self._safe_state[0] == "done"

    def completion(self) -> str:
        """The suffix that closes the forwarded text into a valid JSON object."""
        expect, stack, is_key = self._safe_state
        if expect == "start":
            return "{}"
        tail = ""
        if expect == "string":
            tail = '":null' if is_key else '"'
        elif expect == "colon":
            tail = ":null"
        elif expect == "value" and stack and stack[-1] == "{":
            tail = "null"
        return tail + "".join("}" if c == "{" else "]" for c in reversed(stack))

    def _is_safe(self) -> bool:
        expect = self._expect
        if expect == "string":
            return not self._escape
        if expect in ("key", "value"):
            return not self._after_comma
        if expect == "literal":
            return self._token in self._LITERALS
        if expect == "number":
            return _is_json_number(self._token)
        return True

    def _step(self, ch: str) -> bool:
        """Advance by one character; False when the text stops being valid."""
        expect = self._expect
        if expect == "string":
            return self._string_char(ch)
        if expect == "literal":
            if ch.isalpha():
                self._token += ch
                return any(w.startswith(self._token) for w in self._LITERALS)
            if self._token not in self._LITERALS:
                return False
            self._end_value()
            return self._step(ch)
        if expect == "number":
            if ch in "0123456789+-.eE":
                self._token += ch
                return True
            if not _is_json_number(self._token):
                return False
            self._end_value()
            return self._step(ch)
        if ch in " \t\r\n":
            return True
        if expect == "start":
            if ch != "{":
                return False
            self._open(ch)
            return True
        if expect == "done":
            return False  # trailing garbage after the object
        if expect == "key":
            if ch == '"':
                self._expect, self._is_key, self._after_comma = "string", True, False
                return True
            if ch == "}" and not self._after_comma:
                return self._close(ch)
            return False
        if expect == "colon":
            if ch != ":":
                return False
            self._expect = "value"
            return True
        if expect == "after":
            if ch == ",":
                self._expect = "key" if self._stack[-1] == "{" else "value"
                self._after_comma = True
                return True
            if ch in "}]":
                return self._close(ch)
            return False
        # expect == "value"
        if ch in "{[":
            self._after_comma = False
            self._open(ch)
            return True
        if ch == "]":
            if self._after_comma or self._stack[-1] != "[":
                return False
            return self._close(ch)
        self._after_comma = False
        if ch == '"':
            self._expect, self._is_key = "string", False
            return True
        if ch in "-0123456789":
            self._expect, self._token = "number", ch
            return True
        if ch in "tfn":
            self._expect, self._token = "literal", ch
            return True
        return False

    def _open(self, ch: str) -> None:
        self._stack.append(ch)
        self._expect = "key" if ch == "{" else "value"

    def _close(self, ch: str) -> bool:
        if not self._stack or ch != ("}" if self._stack[-1] == "{" else "]"):
            return False
        self._stack.pop()
        self._end_value()
        return True

    def _end_value(self) -> None:
        self._token = ""
        self._expect = "after" if self._stack else "done"

    def _string_char(self, ch: str) -> bool:
        if self._escape:
            self._escape += ch
            if len(self._escape) == 2:
                if ch in '"\\/bfnrt':
                    self._escape = ""
                    return True
                return ch == "u"
            if ch not in "0123456789abcdefABCDEF":
                return False
            if len(self._escape) == 6:
                self._escape = ""
            return True
        if ch == "\\":
            self._escape = ch
        elif ch == '"':
            if self._is_key:
                self._expect = "colon"
            else:
                self._end_value()
        elif ord(ch) < 0x20:
            return False  # raw control characters are not allowed in JSON strings
        return True


def _is_json_number(token: str) -> bool:
    try:
        json.loads(token)
    except ValueError:
        return False
    return True
