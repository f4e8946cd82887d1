"""Streams on the OpenAI route, as sans-I/O state machines.

- ``ChunkRelay``: OpenAI chunks from an OpenAI-style backend, relayed to an
  OpenAI client: the model name the client asked for, the usage chunk only if
  the client asked for it (we always ask upstream, for our own accounting),
  and an error chunk when the upstream ends without a finish_reason.
- ``AnthropicToOpenAIStream``: Anthropic events from an Anthropic-native
  backend -> OpenAI chunks.

Both: ``feed(x) -> list[chunk]``, ``finish() -> list[chunk]``,
``fail(error) -> list[chunk]``. An error chunk is ``{"error": {...}}``, which
the openai SDK raises as an APIError.
"""

from __future__ import annotations

import time

from ..errors import ApiError, GatewayError
from .anthropic_response import FINISH_FOR_STOP, openai_usage
from .common import random_id


class _ChunkMachine:
    phase = "streaming"

    def start(self) -> list[dict]:
        return []

    def fail(self, error: GatewayError) -> list[dict]:
        """End the stream with an error chunk (the openai SDK raises it)."""
        if self.phase != "streaming":
            return []
        self.phase = "failed"
        return [error.openai_body()]


class ChunkRelay(_ChunkMachine):
    def __init__(self, model: str, *, include_usage: bool):
        self.model = model
        self.include_usage = include_usage
        self.phase = "streaming"
        self.finish_reason: str | None = None
        self.usage: dict | None = None
        self._chunks = 0

    def feed(self, chunk: dict) -> list[dict]:
        if self.phase != "streaming" or not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("error"), (dict, str)):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else err
            return self.fail(ApiError(f"the backend failed mid-stream: {message}"))
        self._chunks += 1
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if "model" in chunk:
            chunk["model"] = self.model
        if not self.include_usage:
            if not chunk.get("choices") and "usage" in chunk:
                return []  # the usage-only chunk the client did not ask for
            chunk.pop("usage", None)
        return [chunk]

    def finish(self) -> list[dict]:
        if self.phase != "streaming":
            return []
        if self.finish_reason is None:
            what = (
                "an empty stream" if self._chunks == 0 else "a stream that ended before it finished"
            )
            return self.fail(ApiError(f"the backend returned {what} (no finish_reason)"))
        self.phase = "finished"
        return []


class AnthropicToOpenAIStream(_ChunkMachine):
    def __init__(self, model: str, *, include_usage: bool):
        self.model = model
        self.include_usage = include_usage
        self.phase = "streaming"
        self.id = random_id("chatcmpl-")
        self.created = int(time.time())
        self.usage = {"input_tokens": 0, "output_tokens": 0}
        self.finish_reason: str | None = None
        self._block_kind: dict[int, str] = {}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index

    def _chunk(self, delta: dict, finish_reason=None) -> dict:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}  # fmt: skip
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def feed(self, event: dict) -> list[dict]:
        if self.phase != "streaming" or not isinstance(event, dict):
            return []
        kind = event.get("type")
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            self.usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            index = event.get("index", 0)
            self._block_kind[index] = block.get("type")
            if block.get("type") == "tool_use":
                tool_index = len(self._tool_index)
                self._tool_index[index] = tool_index
                call = {"index": tool_index, "id": block.get("id"), "type": "function",
                        "function": {"name": block.get("name"), "arguments": ""}}  # fmt: skip
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if dtype == "thinking_delta":
                return [self._chunk({"reasoning_content": delta.get("thinking", "")})]
            if dtype == "input_json_delta":
                tool_index = self._tool_index.get(event.get("index", 0), 0)
                call = {
                    "index": tool_index,
                    "function": {"arguments": delta.get("partial_json", "")},
                }
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "message_delta":
            usage = event.get("usage") or {}
            self.usage.update({k: v for k, v in usage.items() if isinstance(v, int)})
            reason = (event.get("delta") or {}).get("stop_reason")
            self.finish_reason = FINISH_FOR_STOP.get(reason, "stop")
            return [self._chunk({}, self.finish_reason)]
        if kind == "message_stop":
            self.phase = "finished"
            if self.finish_reason is None:
                self.finish_reason = "stop"
                out = [self._chunk({}, "stop")]
            else:
                out = []
            if self.include_usage:
                out.append({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                            "model": self.model, "choices": [], "usage": openai_usage(self.usage)})  # fmt: skip
            return out
        if kind == "error":
            err = event.get("error") or {}
            failure = ApiError(
                f"the backend failed mid-stream: {err.get('message', 'unknown error')}"
            )
            failure.type = err.get("type") or "api_error"
            return self.fail(failure)
        return []  # ping and future event types

    def finish(self) -> list[dict]:
        if self.phase == "streaming":
            return self.fail(ApiError("the backend's stream ended before message_stop"))
        return []
