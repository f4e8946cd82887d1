"""Server-sent events on the way out. (Upstream SSE is parsed with sseclient-py
in backends/stream.py.)"""

from __future__ import annotations

from . import jsonio

PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def encode(events: list[tuple[str, dict]]) -> bytes:
    """Frame events; every frame carries an ``event:`` line, which the SDKs and
    Claude Code require (without it they see nothing)."""
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (name.encode(), jsonio.dumps(data)) for name, data in events
    )


# The OpenAI route: data-only frames; a comment keeps idle connections alive.
OPENAI_PING = b": ping\n\n"
OPENAI_DONE = b"data: [DONE]\n\n"


def encode_chunks(chunks: list[dict]) -> bytes:
    return b"".join(b"data: %s\n\n" % jsonio.dumps(c) for c in chunks)
