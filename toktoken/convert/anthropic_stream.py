"""OpenAI chat completion chunks -> Anthropic Messages stream events.

A sans-I/O state machine in the manner of h11: the relay feeds it one parsed
upstream chunk at a time and writes out whatever events it returns. All
content-block bookkeeping (indices, which block is open, what is waiting)
lives here and nowhere else.

    t = StreamTranslator(model="claude-x", input_tokens=1234)
    events = t.start()            # message_start
    events += t.feed(chunk)       # per upstream chunk (a dict)
    events += t.finish()          # upstream ended ([DONE] or EOF)
    # or: t.fail(error)           # upstream broke: close blocks, event: error

Each event is ``(event_name, data_dict)``. The grammar produced is always:
message_start, then zero or more blocks each as content_block_start /
content_block_delta* / content_block_stop with indices 0, 1, 2, ... strictly
one after the other, then message_delta and message_stop — or, at any point
after message_start, the open block's content_block_stop followed by a final
``error`` event. Nothing is emitted after message_stop or error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ..errors import ApiError, GatewayError, stream_error
from .common import (
    THINKING_SIGNATURE,
    estimate_tokens,
    new_message_id,
    new_tool_use_id,
    stop_reason,
    window_filled,
)
from .protocol import Phase, Usage
from .text_tools import ToolCall, ToolCallRescuer
from .thinking import ThinkTagSplitter
from .tool_json import JsonPrefix, parse_arguments

log = logging.getLogger(__name__)

Event = tuple[str, dict]


@dataclass
class _ToolCall:
    """One upstream tool call (keyed by its upstream ``index``)."""

    id: str | None = None
    name: str | None = None
    raw: str = ""  # every argument fragment the upstream sent
    fed: int = 0  # how much of raw the scanner has seen
    sent: str = ""  # what was forwarded to the client as input_json_delta
    scanner: JsonPrefix = field(default_factory=JsonPrefix)
    state: str = "pending"  # pending -> open -> closed


class StreamTranslator:
    """OpenAI chunks -> Anthropic events (a StreamMachine, see protocol.py)."""

    def __init__(
        self,
        model: str,
        *,
        input_tokens: int = 0,
        max_tokens: int | None = None,
        window: int | None = None,
        message_id: str | None = None,
        rescuer: ToolCallRescuer | None = None,
    ):
        self.model = model
        self.max_tokens = max_tokens
        self.window = window  # usable context (see common.window_filled)
        self.message_id = message_id or new_message_id()
        self.input_tokens_estimate = input_tokens
        self.phase = Phase.NEW
        self._next_index = 0
        self._open: tuple[str, int, _ToolCall | None] | None = None  # (kind, index, tool)
        self._tools: dict[int, _ToolCall] = {}
        self._tags = ThinkTagSplitter()  # <think> inside content
        self._rescuer = rescuer  # tool calls left in the text (text_tools.py)
        self._finish_reason: str | None = None
        self._matched_stop = None
        self._usage: dict | None = None
        self._timings: dict | None = None  # llama.cpp server's per-response counts
        self._tool_blocks = 0
        # For output counting when the upstream sends no usage.
        self._content_deltas = 0
        self._content_chars = 0

    # Public API ---------------------------------------------------------

    def start(self) -> list[Event]:
        """message_start: send as soon as the upstream accepted the request."""
        if self.phase is not Phase.NEW:
            return []
        self.phase = Phase.STREAMING
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": Usage(self.input_tokens_estimate, 0).anthropic(),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def feed(self, chunk: dict) -> list[Event]:
        """Translate one upstream chunk (a parsed ``data:`` payload)."""
        if self.phase is not Phase.STREAMING or not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("error"), dict | str):
            return self.fail(stream_error(chunk["error"]))
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self._timings = chunk["timings"]
        events: list[Event] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1 is not an Anthropic concept: keep the first choice
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                events += self._text_like("thinking", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                for kind, text in self._tags.feed(content):
                    events += self._content(kind, text)
            calls = delta.get("tool_calls")
            if not calls and isinstance(delta.get("function_call"), dict):
                # Legacy single function call; llama.cpp sends it *beside*
                # tool_calls, so it is used only when tool_calls is absent.
                calls = [{"index": 0, "function": delta["function_call"]}]
            if calls and self._rescuer is not None:
                # The server parses tool calls itself: nothing in the text is one.
                events += self._pieces(self._rescuer.disable())
                self._rescuer = None
            for call in calls or []:
                if isinstance(call, dict):
                    events += self._tool_delta(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._matched_stop = choice.get("stop_reason")
        return events

    def finish(self) -> list[Event]:
        """The upstream stream ended. Without a finish_reason it did not
        complete (cut, or an empty 200): that is an error, never a silent
        empty success."""
        if self.phase is not Phase.STREAMING:
            return []
        if self._finish_reason is None:
            if self._next_index == 0 and self._content_deltas == 0:
                msg = "the backend returned an empty stream (no content, no finish_reason)"
            else:
                msg = "the backend's stream ended before it finished (no finish_reason)"
            return self.fail(ApiError(msg))
        events = []
        for kind, text in self._tags.flush():
            events += self._content(kind, text)
        if self._rescuer is not None:
            events += self._pieces(self._rescuer.finish())
        events += self._close_open()
        for tool in list(self._tools.values()):
            if tool.state == "pending":
                events += self._open_tool(tool)
                events += self._close_open()
        usage = self.usage()
        filled = window_filled(self._finish_reason, usage, self.window)
        reason, sequence = stop_reason(
            self._finish_reason,
            self._matched_stop,
            has_tool_calls=self._tool_blocks > 0,
            context_filled=filled,
        )
        self.phase = Phase.FINISHED
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        events.append(
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage.anthropic()})
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def fail(self, error: GatewayError) -> list[Event]:
        """Close whatever block is open (so nothing already streamed is lost)
        and end the stream with an ``error`` event."""
        if self.phase in (Phase.FINISHED, Phase.FAILED):
            return []
        events = self.start() if self.phase is Phase.NEW else []
        for kind, text in self._tags.flush():
            events += self._content(kind, text)
        if self._rescuer is not None:  # what was held is text: nothing streamed is lost
            events += self._pieces(self._rescuer.disable())
        events += self._close_open()
        self.phase = Phase.FAILED
        events.append(("error", error.anthropic_body()))
        return events

    def usage(self) -> Usage:
        """The upstream's own figures when it sent them (vLLM, OpenAI), else
        the prompt estimate made before sending and the output counted here."""
        reported = Usage.from_openai(self._usage, self._timings)
        if reported is not None:
            return reported
        return Usage(self.input_tokens_estimate, self.estimated_output_tokens())

    def estimated_output_tokens(self) -> int:
        """Output tokens when the upstream reports none (llama.cpp never does).

        Servers send one token per chunk unless they batch, so the number of
        content-bearing chunks is a count (exact for llama.cpp); the
        characters/4 estimate covers servers that put several tokens in one
        chunk. The larger of the two is used, so non-empty output is never 0,
        and never more than max_tokens, which the backend cannot exceed.
        """
        count = max(self._content_deltas, estimate_tokens(self._content_chars))
        return min(count, self.max_tokens) if self.max_tokens else count

    # Blocks ---------------------------------------------------------------

    def _begin(self, kind: str, block: dict, tool: _ToolCall | None = None) -> list[Event]:
        index = self._next_index
        self._next_index += 1
        self._open = (kind, index, tool)
        return [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        ]

    def _delta(self, index: int, delta: dict) -> Event:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )

    def _close_open(self) -> list[Event]:
        if self._open is None:
            return []
        kind, index, tool = self._open
        self._open = None
        events: list[Event] = []
        if kind == "thinking":
            events.append(
                self._delta(index, {"type": "signature_delta", "signature": THINKING_SIGNATURE})
            )
        elif kind == "tool_use":
            tail = self._json_tail(tool)
            if tail:
                events.append(
                    self._delta(index, {"type": "input_json_delta", "partial_json": tail})
                )
            tool.state = "closed"
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        return events

    def _content(self, kind: str, text: str) -> list[Event]:
        if kind == "text" and self._rescuer is not None and not self._rescuer.passes(text):
            return self._pieces(self._rescuer.feed(text))
        return self._text_like(kind, text)

    def _pieces(self, pieces: list) -> list[Event]:
        """Text, and the tool calls the rescuer found in it, as blocks."""
        events: list[Event] = []
        for piece in pieces:
            if isinstance(piece, ToolCall):
                raw = json.dumps(piece.arguments, ensure_ascii=False)
                self._content_chars += len(raw)
                tool = _ToolCall(id=new_tool_use_id(), name=piece.name, raw=raw)
                events += self._close_open() + self._open_tool(tool) + self._close_open()
            else:
                events += self._text_like("text", piece)
        return events

    def _text_like(self, kind: str, text: str) -> list[Event]:
        self._content_deltas += 1
        self._content_chars += len(text)
        events: list[Event] = []
        if self._open is None or self._open[0] != kind:
            events += self._close_open()
            block = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            events += self._begin(kind, block)
        delta_type = "text_delta" if kind == "text" else "thinking_delta"
        events.append(self._delta(self._open[1], {"type": delta_type, kind: text}))
        return events

    # Tool calls -------------------------------------------------------------

    def _tool_delta(self, call: dict) -> list[Event]:
        index = call.get("index")
        if not isinstance(index, int):
            index = 0
        tool = self._tools.get(index)
        if tool is None:
            tool = self._tools[index] = _ToolCall()
        function = call.get("function") or {}
        # vLLM/OpenAI send id and name once; llama.cpp repeats them in every
        # delta: the first non-empty value wins either way.
        if call.get("id") and not tool.id:
            tool.id = call["id"]
        if function.get("name") and not tool.name:
            tool.name = function["name"]
        fragment = function.get("arguments")
        events: list[Event] = []
        if isinstance(fragment, str) and fragment:
            tool.raw += fragment
            self._content_deltas += 1
            self._content_chars += len(fragment)
        if tool.state == "open":
            events += self._forward_args(tool)
        elif tool.state == "pending" and tool.name and self._may_open_tool():
            events += self._close_open()
            events += self._open_tool(tool)
        elif tool.state == "closed" and isinstance(fragment, str) and fragment.strip():
            log.debug("dropped late argument fragment for closed tool call %s", tool.id)
        return events

    def _may_open_tool(self) -> bool:
        """Blocks are strictly sequential. A new tool call may start once the
        open block is text/thinking, or a tool call whose arguments are a
        complete JSON object (upstreams that stream calls one after another).
        If the open call is still incomplete, the upstream is interleaving:
        the newcomer waits (buffered) until the open block closes."""
        if self._open is None or self._open[0] != "tool_use":
            return True
        open_tool = self._open[2]
        return open_tool.scanner.complete

    def _open_tool(self, tool: _ToolCall) -> list[Event]:
        if not tool.name:
            log.warning("dropped an upstream tool call without a function name")
            tool.state = "closed"
            return []
        tool.id = tool.id or new_tool_use_id()
        tool.state = "open"
        self._tool_blocks += 1
        block = {"type": "tool_use", "id": tool.id, "name": tool.name, "input": {}}
        return self._begin("tool_use", block, tool) + self._forward_args(tool)

    def _forward_args(self, tool: _ToolCall) -> list[Event]:
        out = tool.scanner.feed(tool.raw[tool.fed :])
        tool.fed = len(tool.raw)
        if not out:
            return []
        tool.sent += out
        return [self._delta(self._open[1], {"type": "input_json_delta", "partial_json": out})]

    def _json_tail(self, tool: _ToolCall) -> str:
        """What to append so the forwarded arguments parse as a JSON object.

        Guarantee: ``tool.sent`` is always a prefix of a JSON object that
        ``scanner.completion()`` closes (see JsonPrefix), so the client's
        concatenation parses. When the upstream's arguments were broken
        (single quotes, garbage) we first try to repair the whole text and,
        if the repaired JSON extends what was sent, send the rest of it.
        """
        scanner = tool.scanner
        if scanner.complete:
            return ""
        repaired = parse_arguments(tool.raw)
        if repaired:
            for candidate in (
                json.dumps(repaired, ensure_ascii=False),
                json.dumps(repaired, ensure_ascii=False, separators=(",", ":")),
            ):
                if not tool.sent.strip():
                    return candidate
                if candidate.startswith(tool.sent):
                    return candidate[len(tool.sent) :]
        return scanner.completion()
