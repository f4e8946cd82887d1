"""A strict checker for Anthropic Messages SSE streams.

It rejects every sequence that Claude Code or the SDKs would mishandle (see
../shared/CLIENTS.md): frames without ``event:``, blocks that overlap or skip
indices, a block never closed (Claude Code silently loses its text), deltas of
the wrong type, tool input that does not parse at content_block_stop, a
thinking block without a signature, usage missing from message_start or
message_delta, events after message_stop, a stream that ends without
message_stop or error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                "model_context_window_exceeded"}  # fmt: skip
DELTA_FOR = {
    "text": {"text_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}


class GrammarError(AssertionError):
    pass


@dataclass
class Transcript:
    message: dict | None = None
    blocks: list[dict] = field(default_factory=list)
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict = field(default_factory=dict)
    error: dict | None = None
    pings: int = 0
    events: list[tuple[str, dict]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.blocks if b["type"] == "text")

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events if name != "ping"]


def parse_frames(raw: bytes | str) -> list[tuple[str, dict]]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    events = []
    for frame in text.replace("\r\n", "\n").split("\n\n"):
        if not frame.strip():
            continue
        name, data = None, []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line.startswith(":"):
                continue
            else:
                raise GrammarError(f"unexpected line {line!r}")
        if name is None:
            raise GrammarError(f"frame without an event: line: {frame!r}")
        payload = json.loads("\n".join(data))
        if payload.get("type") != name:
            raise GrammarError(f"event {name!r} carries data of type {payload.get('type')!r}")
        events.append((name, payload))
    return events


def validate(raw_or_events) -> Transcript:
    events = (
        parse_frames(raw_or_events) if isinstance(raw_or_events, (bytes, str)) else raw_or_events
    )
    t = Transcript(events=list(events))
    state = "start"  # start -> message -> (block) -> delta_sent -> stopped | errored
    open_block = None
    next_index = 0
    for name, data in events:
        if state in ("stopped", "errored"):
            raise GrammarError(f"{name} after the end of the stream")
        if name == "ping":
            t.pings += 1
            continue
        if state == "start":
            if name != "message_start":
                raise GrammarError(f"first event is {name}, not message_start")
            message = data["message"]
            usage = message.get("usage")
            if (
                not isinstance(usage, dict)
                or "input_tokens" not in usage
                or "output_tokens" not in usage
            ):
                raise GrammarError("message_start without usage.input_tokens/output_tokens")
            if message.get("role") != "assistant" or message.get("content") != []:
                raise GrammarError("message_start message is not an empty assistant message")
            t.message = message
            state = "message"
            continue
        if name == "error":
            if open_block is not None:
                raise GrammarError("error event while a block is still open")
            t.error = data["error"]
            state = "errored"
            continue
        if name == "content_block_start":
            if state != "message" or open_block is not None:
                raise GrammarError(
                    "content_block_start while a block is open or after message_delta"
                )
            if data["index"] != next_index:
                raise GrammarError(f"block index {data['index']}, expected {next_index}")
            block = dict(data["content_block"])
            if block["type"] == "tool_use":
                if not block.get("id") or not block.get("name") or block.get("input") != {}:
                    raise GrammarError(f"tool_use start without id/name/empty input: {block}")
                block["_json"] = ""
            if block["type"] == "thinking":
                block["_signed"] = False
            open_block = block
            next_index += 1
            continue
        if name == "content_block_delta":
            if open_block is None or data["index"] != next_index - 1:
                raise GrammarError(f"delta for index {data['index']} with no such open block")
            delta = data["delta"]
            kind = open_block["type"]
            if delta["type"] not in DELTA_FOR.get(kind, set()):
                raise GrammarError(f"{delta['type']} inside a {kind} block")
            if delta["type"] == "text_delta":
                open_block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                if open_block["_signed"]:
                    raise GrammarError("thinking_delta after signature_delta")
                open_block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                if not delta.get("signature"):
                    raise GrammarError("empty signature")
                open_block["signature"] = delta["signature"]
                open_block["_signed"] = True
            elif delta["type"] == "input_json_delta":
                open_block["_json"] += delta["partial_json"]
            continue
        if name == "content_block_stop":
            if open_block is None or data["index"] != next_index - 1:
                raise GrammarError(f"content_block_stop for index {data['index']} not open")
            if open_block["type"] == "tool_use":
                try:
                    value = json.loads(open_block.pop("_json") or "{}")
                except ValueError as exc:
                    raise GrammarError(f"tool input does not parse at block stop: {exc}") from None
                if not isinstance(value, dict):
                    raise GrammarError("tool input is not an object")
                open_block["input"] = value
            if open_block["type"] == "thinking":
                if not open_block.pop("_signed"):
                    raise GrammarError("thinking block closed without signature_delta")
            t.blocks.append(open_block)
            open_block = None
            continue
        if name == "message_delta":
            if open_block is not None:
                raise GrammarError("message_delta while a block is open (it would be lost)")
            if state != "message":
                raise GrammarError("second message_delta")
            usage = data.get("usage")
            if not isinstance(usage, dict) or "output_tokens" not in usage:
                raise GrammarError("message_delta without usage.output_tokens")
            reason = data["delta"].get("stop_reason")
            if reason not in STOP_REASONS:
                raise GrammarError(f"stop_reason {reason!r}")
            t.stop_reason = reason
            t.stop_sequence = data["delta"].get("stop_sequence")
            t.usage = usage
            state = "delta_sent"
            continue
        if name == "message_stop":
            if state != "delta_sent":
                raise GrammarError("message_stop without message_delta")
            state = "stopped"
            continue
        raise GrammarError(f"unknown event {name}")
    if state not in ("stopped", "errored"):
        raise GrammarError(f"stream ended without message_stop or error (state {state})")
    return t
