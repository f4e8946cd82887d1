"""Claude-Code-shaped sessions, turn by turn, for tests and benchmarks: the
captured request's system prompt, environment block and tools, then per turn
a Bash round trip and the token-budget countdown Claude Code sends with
CLAUDE_CODE_TOTAL_TOKENS_REMINDER=countdown (a system entry after the tool
result)."""

from __future__ import annotations

import json
from pathlib import Path

CAPTURE = Path(__file__).resolve().parent / "fixtures" / "claude-code" / "tool-bash.2.json"


def claude_code_session(
    turns: int,
    *,
    tools: tuple[str, ...] | None = None,
    output: str = "total 2\nfile.py\nREADME.md",
    busting: bool = False,
    **fields,
) -> list[dict]:
    """The request bodies of a session's ``turns`` turns. ``tools``: keep only
    these (default: all of the capture's). ``busting``: a line that changes
    every turn leads the system prompt — what a cache-busting client does."""
    capture = json.loads(CAPTURE.read_text())["body"]
    if tools is not None:
        capture["tools"] = [t for t in capture["tools"] if t["name"] in tools]
    messages = list(capture["messages"][:2])  # the prompt, the environment block
    bodies = []
    for turn in range(turns):
        if turn:
            call = f"toolu_{turn:024d}"
            messages += [
                {"role": "assistant", "content": [
                    {"type": "text", "text": f"Step {turn}."},
                    {"type": "tool_use", "id": call, "name": "Bash", "input": {"command": f"ls -l src/{turn}"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call, "content": output}]},
                {"role": "system", "content": f"<total_tokens>{990_000 - 2_500 * turn} tokens left</total_tokens>"},
            ]  # fmt: skip
        system = capture["system"]
        if busting:
            system = [{"type": "text", "text": f"Session turn {turn + 1}."}, *system]
        bodies.append(dict(capture, system=system, messages=[dict(m) for m in messages], **fields))
    return bodies
