"""Anthropic events from an Anthropic-native backend, relayed to an Anthropic
client. Sans-I/O, with the same interface as StreamTranslator so the same
relay serves it. Events pass as they are, except that ``message_start``
carries the model the client asked for; the machine watches block state and
usage so that a cut stream still ends with a closed block and ``error``."""

from __future__ import annotations

from ..errors import ApiError, GatewayError

Event = tuple[str, dict]


class AnthropicPassthrough:
    def __init__(self, model: str):
        self.model = model
        self.phase = "streaming"
        self.final_usage: dict = {}
        self._open_index: int | None = None
        self._seen = 0

    def start(self) -> list[Event]:
        return []  # the backend sends its own message_start

    def feed(self, event: dict) -> list[Event]:
        if self.phase != "streaming" or not isinstance(event, dict) or not event.get("type"):
            return []
        self._seen += 1
        kind = event["type"]
        if kind == "message_start":
            message = event.get("message") or {}
            message["model"] = self.model
            self.final_usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            self._open_index = event.get("index")
        elif kind == "content_block_stop":
            self._open_index = None
        elif kind == "message_delta":
            self.final_usage.update(event.get("usage") or {})
        elif kind == "message_stop":
            self.phase = "finished"
        elif kind == "error":
            self.phase = "failed"
        return [(kind, event)]

    def finish(self) -> list[Event]:
        if self.phase == "streaming":
            what = "an empty stream" if self._seen == 0 else "a stream without message_stop"
            return self.fail(ApiError(f"the backend returned {what}"))
        return []

    def fail(self, error: GatewayError) -> list[Event]:
        if self.phase != "streaming":
            return []
        events: list[Event] = []
        if self._open_index is not None:
            events.append(
                ("content_block_stop", {"type": "content_block_stop", "index": self._open_index})
            )
            self._open_index = None
        self.phase = "failed"
        events.append(
            ("error", {"type": "error", "error": {"type": error.type, "message": error.message}})
        )
        return events
