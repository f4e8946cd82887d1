"""What every converter shares: token ``Usage``, the stream ``Phase``, and the
``StreamMachine`` protocol the relay drives.

A stream machine is a sans-I/O translator in the manner of h11's
``Connection``: the relay feeds it one upstream item at a time and writes out
whatever it returns; it never touches a socket.

    machine.start()        first output, before any upstream item (may be [])
    machine.feed(item)     per upstream item (a parsed SSE ``data:`` payload)
    machine.finish()       the upstream ended (``[DONE]`` or EOF)
    machine.fail(error)    the upstream broke: close what is open, end with an error
    machine.phase          NEW -> STREAMING -> FINISHED | FAILED; nothing is
                           emitted once FINISHED or FAILED
    machine.usage()        tokens so far (exact when the upstream reported them)

Outputs are lists of whatever the client's wire format frames: (event name,
data) pairs for Anthropic SSE, chunk dicts for OpenAI SSE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from ..errors import GatewayError


class Phase(enum.Enum):
    NEW = "new"
    STREAMING = "streaming"
    FINISHED = "finished"
    FAILED = "failed"


class StreamMachine(Protocol):
    phase: Phase

    def start(self) -> list: ...

    def feed(self, item: dict) -> list: ...

    def finish(self) -> list: ...

    def fail(self, error: GatewayError) -> list: ...

    def usage(self) -> Usage: ...


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one request, the same from every path to the ledger.

    ``input_tokens`` excludes what the backend served from its prompt cache
    (``cache_read_tokens``), as in Anthropic's usage; ``exact`` says the
    backend reported the numbers (else the gateway estimated them)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    exact: bool = False

    @classmethod
    def from_openai(cls, usage, timings=None) -> Usage | None:
        """OpenAI's ``usage`` object (vLLM and OpenAI report prompt-cache hits
        in ``prompt_tokens_details.cached_tokens``), or llama.cpp server's
        ``timings`` (``prompt_n`` evaluated, ``cache_n`` reused from the slot's
        cache, ``predicted_n`` generated); None when there is neither."""
        timings = timings if isinstance(timings, dict) else {}
        if not isinstance(usage, dict):
            if not isinstance(timings.get("prompt_n"), int):
                return None
            cached = _count(timings.get("cache_n"))
            return cls(
                _count(timings["prompt_n"]), _count(timings.get("predicted_n")), cached, exact=True
            )
        prompt = _count(usage.get("prompt_tokens"))
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and "cached_tokens" in details:
            cached = _count(details.get("cached_tokens"))
        else:
            cached = _count(timings.get("cache_n"))
        cached = min(cached, prompt)
        return cls(prompt - cached, _count(usage.get("completion_tokens")), cached, exact=True)

    @classmethod
    def from_anthropic(cls, usage, *, exact: bool = True) -> Usage:
        usage = usage if isinstance(usage, dict) else {}
        return cls(
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            _count(usage.get("cache_read_input_tokens")),
            _count(usage.get("cache_creation_input_tokens")),
            exact=exact,
        )

    def anthropic(self) -> dict:
        """Anthropic's ``usage`` object."""
        return {
            "input_tokens": self.input_tokens or 0,
            "output_tokens": self.output_tokens or 0,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
        }

    def openai(self) -> dict:
        """OpenAI's ``usage`` object (prompt tokens include cache hits)."""
        prompt = (self.input_tokens or 0) + self.cache_read_tokens + self.cache_write_tokens
        completion = self.output_tokens or 0
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.cache_read_tokens},
        }


def _count(value) -> int:
    return value if isinstance(value, int) and value > 0 else 0
