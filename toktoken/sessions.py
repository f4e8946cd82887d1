"""Claude Code sessions: who a request belongs to, and how much of its prompt
repeats the session's previous request.

A session is identified by the ``X-Claude-Code-Session-Id`` header, else by
the ``session_id`` inside ``metadata.user_id`` (a JSON string Claude Code and
the Agent SDK send). Requests without either belong to no session.

``PrefixTracker`` is the gateway's own measure of prefix-cache friendliness,
for backends that report no cache hits: per session, the share of the
upstream prompt (tools, then message after message) that is byte-identical
to the start of the session's previous request — exactly what a backend's
prefix cache can reuse. It keeps one hash and one length per message, in
memory, per worker; no prompt text is kept. A client or setting that busts
the cache shows as a low share turn after turn.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping

from . import jsonio

SESSION_HEADER = "X-Claude-Code-Session-Id"
_MAX_ID = 128


def session_id(headers: Mapping[str, str], req: dict) -> str | None:
    sid = headers.get(SESSION_HEADER)
    if not sid:
        user = (req.get("metadata") or {}).get("user_id") if isinstance(req, dict) else None
        if isinstance(user, str) and user.startswith("{") and '"session_id"' in user:
            try:
                sid = json.loads(user).get("session_id")
            except (ValueError, AttributeError):
                sid = None
    if not isinstance(sid, str) or not sid.strip():
        return None
    return sid.strip()[:_MAX_ID]


class PrefixTracker:
    def __init__(self, max_sessions: int = 4096):
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, tuple[list[int], list[int]]] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, session: str | None, body: dict) -> float | None:
        """The share (0..1) of ``body``'s prompt that repeats the session's
        previous request, and remember this one; None for the first request
        of a session, or without a session."""
        if session is None:
            return None
        chain, ends = _fingerprint(body)
        with self._lock:
            previous = self._sessions.pop(session, None)
            self._sessions[session] = (chain, ends)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        if previous is None or not ends[-1]:
            return None
        old_chain, old_ends = previous
        common = 0
        for mine, theirs in zip(chain, old_chain, strict=False):
            if mine != theirs:
                break
            common += 1
        reused = ends[common - 1] if common else 0
        return round(reused / ends[-1], 4)


def _fingerprint(body: dict) -> tuple[list[int], list[int]]:
    """A chained hash per prompt part (tools first, then each message) and the
    byte length up to the end of each part. Python's hash: per process,
    never stored, and a fraction of a cryptographic hash's cost."""
    parts = [jsonio.dumps([body.get("tools"), body.get("system")])]
    parts += [jsonio.dumps(m) for m in body.get("messages") or []]
    chain, ends = [], []
    running, size = 0, 0
    for part in parts:
        running = hash((running, part))
        size += len(part)
        chain.append(running)
        ends.append(size)
    return chain, ends
