"""Server-sent events on the way out. (Upstream SSE is parsed with sseclient-py
in backends.py.)"""

from __future__ import annotations

import json

PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def encode(events: list[tuple[str, dict]]) -> bytes:
    """Frame events; every frame carries an ``event:`` line, which the SDKs and
    Claude Code require (without it they see nothing)."""
    return b"".join(
        b"event: %s\ndata: %s\n\n"
        % (name.encode(), json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
        for name, data in events
    )
