"""Tool calls the backend left in the text. Pure.

A model calls a tool, but the server does not parse the call (vLLM without
``--enable-auto-tool-choice --tool-call-parser``, or with the wrong parser;
llama.cpp's server without ``--jinja``; an Ollama template without tools; a
model drifting from its own format): the call arrives as text in
``content``, Claude Code shows the markup and stops. ``ToolCallRescuer``
turns such text back into tool calls, in each model family's own format:

| dialect       | what the model writes (source: the family's chat template / docs, and vLLM's parser of the same name) |
|---------------|-----------------------------------------------------------------------------------------------|
| ``hermes``      | ``<tool_call>{"name": N, "arguments": {...}}</tool_call>`` (Hermes 2 Pro, Qwen 2.5 templates) |
| ``qwen3_coder`` | ``<tool_call><function=N><parameter=P>value</parameter>…</function></tool_call>`` (Qwen3-Coder template; values typed by the tool's schema) |
| ``glm45``       | ``<tool_call>N<arg_key>k</arg_key><arg_value>v</arg_value>…</tool_call>`` (GLM-4.5/4.6 template; non-string values are JSON) |
| ``mistral``     | ``[TOOL_CALLS][{"name": N, "arguments": {...}}, …]``, and v11 tokenizers' ``[TOOL_CALLS]N[ARGS]{...}`` |
| ``llama3_json`` | the whole reply ``{"name": N, "parameters": {...}}``, or after ``<|python_tag|>`` (Llama 3.1-3.3 custom tools) |
| ``deepseek``    | ``<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N\\n```json\\n{...}\\n```<｜tool▁call▁end｜>…<｜tool▁calls▁end｜>`` (V3/R1), and V3.1's ``<｜tool▁call▁begin｜>N<｜tool▁sep｜>{...}<｜tool▁call▁end｜>`` |

Sources read for each format: the model card / chat template of the family,
and vLLM's parser for it (vllm/entrypoints/openai/tool_parsers/ hermes_,
qwen3coder_, glm4_moe_, mistral_, llama_, deepseekv3_ and
deepseekv31_tool_parser.py), which is what the server would have applied
with ``--tool-call-parser``.

Only when it is safe: the request declared tools, every name is one of
them, the markup is complete and well formed, and not inside a Markdown code
span or block. Anything else stays text, byte for byte.

Streaming, in the manner of thinking.ThinkTagSplitter: ``feed(text)``
returns pieces (``str`` text, or ``ToolCall``) as soon as they are decided;
a suffix that could be the start of a marker is held until the next text
decides it, and a started marker until its markup is complete (or can no
longer be).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .tool_markup import DS_BEGIN, DS_END, MARKERS, MISTRAL, TOOL_CALL, MarkupParser, ToolCall

DIALECTS = ("hermes", "qwen3_coder", "glm45", "mistral", "llama3_json", "deepseek")

_CLOSING = {TOOL_CALL: "</tool_call>", DS_BEGIN: DS_END}
_PREFIXES = frozenset(m[:n] for m in MARKERS for n in range(1, len(m)))
_MARKER_RE = re.compile("|".join(re.escape(m) for m in MARKERS))
assert {m[0] for m in MARKERS} == {"<", "["}  # the fast path in feed() tests just these
# Markup that never closes is given back as text past this size.
MAX_MARKUP = 512 * 1024

_decoder = json.JSONDecoder()


@dataclass
class ToolCallRescuer:
    """``tools``: declared tool name -> its input schema (or None)."""

    tools: dict[str, dict | None]
    dialect: str | None = None  # pinned: only this one is recognised
    rescued: int = 0
    dialects: list[str] = field(default_factory=list)
    _held: str = ""  # text not yet decided
    _mode: str = "start"  # start -> json (a reply opening with "{") | text
    _marker: str | None = None  # the marker whose markup is being collected
    # The text given out, in pieces (joined only when a marker needs the
    # code-span check: appending is all a chunk costs).
    _seen: list = field(default_factory=list)
    _seen_chars: int = 0
    _after_call: bool = False  # whitespace right after a call is not text
    _off: bool = False
    # From the first call found on, the pieces wait for the reply's end (so a
    # server that does send structured calls still wins: disable()), with the
    # text they came from.
    _waiting: list | None = None
    _raw: str | None = None

    def __post_init__(self) -> None:
        self._parser = MarkupParser(self.tools, self._allowed)

    def feed(self, text: str) -> list[str | ToolCall]:
        if self._off:
            return [text] if text else []
        if self._raw is not None:
            self._raw += text
        if self._mode == "text" and not self._held and "<" not in text and "[" not in text:
            out: list = []
            self._emit_text(out, text)  # the fast path: nothing could start a marker
        else:
            self._held += text
            out = self._drain(final=False)
        if self._raw is None:
            return out
        if self._waiting is None:  # the first call is in ``out``
            first = next(i for i, p in enumerate(out) if isinstance(p, ToolCall))
            out, self._waiting = out[:first], out[first:]
            return out
        self._waiting += out
        return []

    def passes(self, text: str) -> bool:
        """True when ``text`` goes out as it is, taken as given out: the
        common case (nothing held, nothing that could start a marker), for a
        caller to skip ``feed`` and its list."""
        if self._off:
            return True
        if self._mode != "text" or self._held or self._raw is not None or self._after_call:
            return False
        if ("<" in text or "[" in text) and (_partial_marker(text) or _MARKER_RE.search(text)):
            return False
        self._seen.append(text)
        self._seen_chars += len(text)
        return True

    def finish(self) -> list[str | ToolCall]:
        """The reply ended: decide what is held (incomplete markup is text),
        and give out the calls found."""
        if self._off:
            return []
        self._off = True
        out = (self._waiting or []) + self._drain(final=True)
        calls = [p.dialect for p in out if isinstance(p, ToolCall)]
        self.rescued, self.dialects = len(calls), calls
        return out

    def disable(self) -> list[str]:
        """The backend sent structured tool calls: it parses them itself, so
        nothing in the text is a call. Whatever was held is text, as it came."""
        self._off = True
        held = self._raw if self._raw is not None else self._held
        self._held, self._marker, self._waiting = "", None, None
        return [held] if held else []

    # -----------------------------------------------------------------------------------

    def _drain(self, *, final: bool) -> list[str | ToolCall]:
        out: list[str | ToolCall] = []
        while self._held:
            if self._mode == "start":
                if not self._held.strip() and not final:
                    return out  # leading whitespace: the reply has not begun
                opens_json = self._held.lstrip().startswith("{") and self._allowed("llama3_json")
                self._mode = "json" if opens_json else "text"
            if self._mode == "json":
                if not self._whole_reply_json(out, final):
                    return out
                continue
            if self._marker is None:
                position, marker = self._find_marker(self._held)
                if marker is None:
                    keep = 0 if final else _partial_marker(self._held)
                    self._emit_text(out, self._held[: len(self._held) - keep])
                    self._held = self._held[len(self._held) - keep :]
                    return out
                self._emit_text(out, self._held[:position])
                self._held = self._held[position:]
                if self._in_code() or not self._allowed(*MARKERS[marker]):
                    self._emit_text(out, marker)  # shown, not called
                    self._held = self._held[len(marker) :]
                    continue
                self._marker = marker
            end = self._markup_end(self._held, final)
            if end is None:  # not complete yet
                if len(self._held) <= MAX_MARKUP:
                    return out
                end = len(self._held)
            markup, self._held = self._held[:end], self._held[end:]
            marker, self._marker = self._marker, None
            calls = self._parser.parse(marker, markup)
            if calls is None:
                self._emit_text(out, markup)
            else:
                self._add_calls(out, calls, markup)
        return out

    def _whole_reply_json(self, out: list, final: bool) -> bool:
        """Llama 3's plain form: the whole reply is one JSON object (or a list
        of them). Held while it still could be; False while undecided."""
        stripped = self._held.lstrip()
        if not _could_open_a_call(stripped):
            self._mode = "text"  # a reply that opens with "{" but is no call: scan it as text
            return True
        try:
            value, end = _decoder.raw_decode(stripped)
        except ValueError:
            if final or len(stripped) > MAX_MARKUP:
                self._mode = "text"
                return True
            return False
        if stripped[end:].strip():
            self._mode = "text"  # more after it: JSON shown in a reply, not a call
            return True
        if not final:
            return False  # the reply might go on
        calls = self._parser.llama_calls(value)
        if calls is None:
            self._mode = "text"
            return True
        markup, self._held = self._held, ""
        self._add_calls(out, calls, markup)
        return True

    def _add_calls(self, out: list, calls: list[ToolCall], markup: str) -> None:
        out += calls
        self._after_call = True
        if self._raw is None:
            self._raw = markup + self._held

    def _allowed(self, *dialects: str) -> bool:
        return self.dialect is None or self.dialect in dialects

    def _emit_text(self, out: list, text: str) -> None:
        if not text:
            return
        if self._after_call:  # the newlines between and after calls are not text
            text = text.lstrip()
            if not text:
                return
            self._after_call = False
        out.append(text)
        self._seen.append(text)
        self._seen_chars += len(text)
        if self._seen_chars > 1 << 20:  # keep the last 64 KB of a very long reply
            self._seen = ["".join(self._seen)[-65536:]]
            self._seen_chars = 65536

    def _in_code(self) -> bool:
        """The marker stands inside a Markdown code block or code span."""
        seen = "".join(self._seen)
        self._seen = [seen]
        if seen.count("```") % 2 == 1:
            return True
        line = seen[seen.rfind("\n") + 1 :]
        return line.count("`") % 2 == 1

    @staticmethod
    def _find_marker(text: str) -> tuple[int, str | None]:
        best, found = len(text), None
        for marker in MARKERS:
            i = text.find(marker)
            if 0 <= i < best:
                best, found = i, marker
        return best, found

    def _markup_end(self, held: str, final: bool) -> int | None:
        """Where the markup at the start of ``held`` ends; None while it may still grow."""
        marker = self._marker
        closing = _CLOSING.get(marker)
        if closing is not None:
            i = held.find(closing, len(marker))
            if i >= 0:
                return i + len(closing)
            return len(held) if final else None
        # [TOOL_CALLS] and <|python_tag|>: JSON (or NAME[ARGS]JSON) that ends where it parses.
        body = held[len(marker) :].lstrip()
        start = len(held) - len(body)
        if not body:
            return len(held) if final else None
        if marker == MISTRAL and body[0] not in "[{":
            args = body.find("[ARGS]")
            if args < 0:
                name = re.match(r"[\w.-]*", body).group()
                waiting = not final and "[ARGS]".startswith(body[len(name) :])
                return None if waiting else len(held)
            start += args + len("[ARGS]")
        elif body[0] not in "[{":
            return len(held)  # not JSON: not a call
        try:
            _, end = _decoder.raw_decode(held, start)
        except ValueError:
            return len(held) if final else None
        return end


def _could_open_a_call(text: str) -> bool:
    """``text`` (starting with "{") may still be ``{"name": ...`` or ``{"type": ...``."""
    m = re.match(r'\{\s*(?:"(\w*)(")?)?', text)
    if m.group(1) is None:  # no key yet
        return m.end() == len(text)
    key, closed = m.group(1), m.group(2) is not None
    if closed:
        return key in ("name", "type")
    return m.end() == len(text) and ("name".startswith(key) or "type".startswith(key))


def _partial_marker(text: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a
    marker. Each marker holds its first character ("<" or "[") only at its
    start, so such a suffix begins at the last of them."""
    start = max(text.rfind("<"), text.rfind("["))
    if start < 0:
        return 0
    suffix = text[start:]
    return len(suffix) if suffix in _PREFIXES else 0
