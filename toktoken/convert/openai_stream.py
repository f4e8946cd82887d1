"""Streams on the OpenAI route, as StreamMachines (see protocol.py).

- ``OpenAIPassthrough``: OpenAI chunks from an OpenAI-style backend, relayed
  to an OpenAI client: the model name the client asked for, the usage chunk
  only if the client asked for it (we always ask upstream, for our own
  accounting), and an error chunk when the upstream ends without a
  finish_reason.
- ``AnthropicToOpenAIStream``: Anthropic events from an Anthropic-native
  backend -> OpenAI chunks.

Outputs are chunk dicts. An error chunk is ``{"error": {...}}``, which the
openai SDK raises as an APIError.
"""

from __future__ import annotations

import json
import time

from ..errors import ApiError, GatewayError, stream_error
from .anthropic_response import FINISH_FOR_STOP
from .common import random_id
from .protocol import Phase, Usage
from .text_tools import ToolCall, ToolCallRescuer


class _ChunkMachine:
    phase = Phase.STREAMING

    def start(self) -> list[dict]:
        return []

    def fail(self, error: GatewayError) -> list[dict]:
        """End the stream with an error chunk (the openai SDK raises it)."""
        if self.phase is not Phase.STREAMING:
            return []
        self.phase = Phase.FAILED
        return [error.openai_body()]


class OpenAIPassthrough(_ChunkMachine):
    def __init__(self, model: str, *, include_usage: bool, rescuer: ToolCallRescuer | None = None):
        self.model = model
        self.include_usage = include_usage
        self.finish_reason: str | None = None
        self._usage: dict | None = None
        self._timings: dict | None = None
        self._chunks = 0
        self._rescuer = rescuer  # tool calls left in the text (text_tools.py)
        self._rescued = 0

    def feed(self, chunk: dict) -> list[dict]:
        if self.phase is not Phase.STREAMING or not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("error"), dict | str):
            return self.fail(stream_error(chunk["error"]))
        self._chunks += 1
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        if isinstance(chunk.get("timings"), dict):
            self._timings = chunk["timings"]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if "model" in chunk:
            chunk["model"] = self.model
        if not self.include_usage:
            if not chunk.get("choices") and "usage" in chunk:
                return []  # the usage-only chunk the client did not ask for
            chunk.pop("usage", None)
        if self._rescuer is not None and chunk.get("choices"):
            return self._rescue(chunk)
        return [chunk]

    def _rescue(self, chunk: dict) -> list[dict]:
        """Content goes through the rescuer: text and the calls it finds leave
        as their own chunks (``content`` / ``tool_calls`` deltas), and the
        finish_reason then says ``tool_calls``."""
        choice = chunk["choices"][0]
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            return [chunk]
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        if delta.get("tool_calls") or delta.get("function_call"):
            held, self._rescuer = self._rescuer.disable(), None  # the server parses them itself
            return self._pieces(chunk, held) + [chunk]
        content = delta.get("content") if isinstance(delta.get("content"), str) else ""
        finish = choice.get("finish_reason")
        if not finish and (not content or self._rescuer.passes(content)):
            return [chunk]  # nothing to decide: the chunk goes out as it came
        pieces = self._rescuer.feed(content) if content else []
        if finish:
            pieces += self._rescuer.finish()
        delta.pop("content", None)
        out = self._pieces(chunk, pieces)
        if finish:
            if self._rescued:
                choice["finish_reason"] = self.finish_reason = "tool_calls"
            out.append(chunk)  # what else it carried, and the finish_reason
        elif delta:
            out.insert(0, chunk)  # a role or reasoning beside the content
        return out

    def _pieces(self, like: dict, pieces: list) -> list[dict]:
        chunks = []
        for piece in pieces:
            if isinstance(piece, ToolCall):
                call = {
                    "index": self._rescued,
                    "id": random_id("call_"),
                    "type": "function",
                    "function": {
                        "name": piece.name,
                        "arguments": json.dumps(piece.arguments, ensure_ascii=False),
                    },
                }
                self._rescued += 1
                delta = {"tool_calls": [call]}
            else:
                delta = {"content": piece}
            head = {k: like[k] for k in ("id", "object", "created", "model") if k in like}
            chunks.append(
                {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            )
        return chunks

    def finish(self) -> list[dict]:
        if self.phase is not Phase.STREAMING:
            return []
        if self.finish_reason is None:
            what = (
                "an empty stream" if self._chunks == 0 else "a stream that ended before it finished"
            )
            return self.fail(ApiError(f"the backend returned {what} (no finish_reason)"))
        self.phase = Phase.FINISHED
        return []

    def usage(self) -> Usage:
        return Usage.from_openai(self._usage, self._timings) or Usage()


class AnthropicToOpenAIStream(_ChunkMachine):
    def __init__(self, model: str, *, include_usage: bool):
        self.model = model
        self.include_usage = include_usage
        self.id = random_id("chatcmpl-")
        self.created = int(time.time())
        self.finish_reason: str | None = None
        self._usage: dict = {"input_tokens": 0, "output_tokens": 0}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index

    def _chunk(self, delta: dict | None, finish_reason=None) -> dict:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
        }
        if delta is not None:
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def feed(self, event: dict) -> list[dict]:
        if self.phase is not Phase.STREAMING or not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start":
            self._add_usage((event.get("message") or {}).get("usage"))
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index", 0), event.get("delta") or {})
        if kind == "message_delta":
            self._add_usage(event.get("usage"))
            reason = (event.get("delta") or {}).get("stop_reason")
            self.finish_reason = FINISH_FOR_STOP.get(reason, "stop")
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            self.phase = Phase.FINISHED
            out = []
            if self.finish_reason is None:
                self.finish_reason = "stop"
                out.append(self._chunk({}, "stop"))
            if self.include_usage:
                out.append(dict(self._chunk(None), usage=self.usage().openai()))
            return out
        if kind == "error":
            return self.fail(stream_error(event.get("error") or "unknown error"))
        return []  # ping and future event types

    def _block_start(self, index: int, block: dict) -> list[dict]:
        if block.get("type") == "tool_use":
            tool_index = self._tool_index[index] = len(self._tool_index)
            function = {"name": block.get("name"), "arguments": ""}
            call = {
                "index": tool_index,
                "id": block.get("id"),
                "type": "function",
                "function": function,
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _block_delta(self, index: int, delta: dict) -> list[dict]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text", "")})]
        if kind == "thinking_delta":
            return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
        if kind == "input_json_delta":
            call = {
                "index": self._tool_index.get(index, 0),
                "function": {"arguments": delta.get("partial_json", "")},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _add_usage(self, usage) -> None:
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if isinstance(v, int)})

    def finish(self) -> list[dict]:
        if self.phase is Phase.STREAMING:
            return self.fail(ApiError("the backend's stream ended before message_stop"))
        return []

    def usage(self) -> Usage:
        return Usage.from_anthropic(self._usage)
