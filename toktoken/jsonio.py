"""JSON on the hot path: orjson, with the standard library as the fallback.

orjson parses and serialises several times faster than the standard library
(it matters for 50-200 KB Claude Code bodies and for every streamed chunk).
It is stricter in a few corners the standard library accepts:

- lone UTF-16 surrogates in strings (``"a\\ud83d"``: a tool result cut
  mid-emoji) and integers beyond 64 bits: those bodies fall back to ``json``
  rather than failing a request a client sent in good faith; a client's lone
  surrogates are then replaced with U+FFFD (``loads_untrusted``), because no
  backend, database or log can encode them;
- nesting: orjson parses at most ``MAX_DEPTH`` (1024) levels and serialises
  at most 254; the standard library recurses in C and fails with a
  RecursionError near Python's recursion limit. A client body nested deeper
  than MAX_DEPTH is refused while parsing (``TooDeep``).
"""

from __future__ import annotations

import json
import re

import orjson

MAX_DEPTH = 1024  # orjson's own parsing limit
_SURROGATE = re.compile("[\ud800-\udfff]")


class TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"the JSON is nested more than {MAX_DEPTH} levels deep")


def loads(data: bytes | str):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)  # raises ValueError with the stdlib's message if really invalid


def loads_untrusted(data: bytes | str):
    """``loads`` for a client's body: TooDeep past MAX_DEPTH levels, and lone
    surrogates replaced (only the standard library lets them through)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise TooDeep() from None
    try:
        parsed = json.loads(data)
    except RecursionError:
        raise TooDeep() from None
    return replace_lone_surrogates(parsed)


def replace_lone_surrogates(value):
    """The same JSON value with every lone surrogate in its strings (keys
    included) replaced by U+FFFD. Paired surrogates were already combined by
    the parser, so whatever surrogate remains is lone."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    root = [value]
    stack = [(root, 0)]
    while stack:
        holder, key = stack.pop()
        item = holder[key]
        if isinstance(item, str):
            holder[key] = _SURROGATE.sub("\ufffd", item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            if any(_SURROGATE.search(k) for k in item):
                fixed = {_SURROGATE.sub("\ufffd", k): v for k, v in item.items()}
                item.clear()
                item.update(fixed)
            stack.extend((item, k) for k in item)
    return root[0]


def dumps(obj) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode()
