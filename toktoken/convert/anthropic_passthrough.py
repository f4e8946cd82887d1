"""Anthropic events from an Anthropic-native backend, relayed to an Anthropic
client: a StreamMachine (see protocol.py), so the same relay serves it.
Events pass as they are, except that ``message_start`` carries the model the
client asked for; the machine watches block state and usage so that a cut
stream still ends with a closed block and ``error``."""

from __future__ import annotations

from ..errors import ApiError, GatewayError
from .protocol import Phase, Usage

Event = tuple[str, dict]


class AnthropicPassthrough:
    def __init__(self, model: str):
        self.model = model
        self.phase = Phase.STREAMING
        self._usage: dict = {}
        self._open_index: int | None = None
        self._seen = 0

    def start(self) -> list[Event]:
        return []  # the backend sends its own message_start

    def feed(self, event: dict) -> list[Event]:
        if (
            self.phase is not Phase.STREAMING
            or not isinstance(event, dict)
            or not event.get("type")
        ):
            return []
        self._seen += 1
        kind = event["type"]
        if kind == "message_start":
            message = event.get("message") or {}
            message["model"] = self.model
            self._usage.update(message.get("usage") or {})
        elif kind == "content_block_start":
            self._open_index = event.get("index")
        elif kind == "content_block_stop":
            self._open_index = None
        elif kind == "message_delta":
            self._usage.update(event.get("usage") or {})
        elif kind == "message_stop":
            self.phase = Phase.FINISHED
        elif kind == "error":
            self.phase = Phase.FAILED
        return [(kind, event)]

    def finish(self) -> list[Event]:
        if self.phase is Phase.STREAMING:
            what = "an empty stream" if self._seen == 0 else "a stream without message_stop"
            return self.fail(ApiError(f"the backend returned {what}"))
        return []

    def fail(self, error: GatewayError) -> list[Event]:
        if self.phase is not Phase.STREAMING:
            return []
        events: list[Event] = []
        if self._open_index is not None:
            events.append(
                ("content_block_stop", {"type": "content_block_stop", "index": self._open_index})
            )
            self._open_index = None
        self.phase = Phase.FAILED
        events.append(("error", error.anthropic_body()))
        return events

    def usage(self) -> Usage:
        return Usage.from_anthropic(self._usage)
