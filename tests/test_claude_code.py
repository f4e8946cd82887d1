"""The real Claude Code CLI, headless, through the gateway to the fake backend.

Needs the pinned CLI (``make claude-code`` installs it outside the repo; the
path comes from CLAUDE_BIN). Skipped locally when it is missing; in CI
(CI=true) a missing CLI is a failure, never a skip.
"""

from __future__ import annotations

import json

import pytest

from .claude_cli import run_claude
from .fake_backend import Sse, chunk, usage_chunk

pytestmark = pytest.mark.claude_code


def last_upstream_role(req) -> str:
    return req.body["messages"][-1]["role"]


def tool_call_stream(call_id: str, command: str, *, thinking: str | None = None) -> Sse:
    items = [chunk({"role": "assistant", "content": ""})]
    if thinking:
        items.append(chunk({"reasoning_content": thinking}))
    items.append(chunk({"content": "I'll run the command."}))
    args = json.dumps({"command": command, "description": "Write hi to out.txt"})
    items.append(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                        "function": {"name": "Bash", "arguments": ""}}]}))  # fmt: skip
    for i in range(0, len(args), 7):  # streamed in fragments, as vLLM does
        items.append(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 7]}}]})
        )
    items += [chunk({}, "tool_calls"), usage_chunk(900, 40)]
    return Sse(items)


def answer(text: str) -> Sse:
    words = text.split(" ")
    pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    return Sse([chunk({"content": p}) for p in pieces] + [chunk({}, "stop"), usage_chunk(900, 9)])


def test_plain_answer_arrives_intact(gateway, backend, tmp_path):
    text = "The answer is 42, and it arrived through Toktoken intact."
    backend.handler = lambda req: answer(text)
    result = run_claude(gateway, "What is the answer?", tmp_path, tmp_path / "home")
    assert result["_exit"] == 0, result
    assert result["is_error"] is False
    assert result["result"] == text
    main = [r for r in backend.chat_requests if r.body.get("tools")]
    assert main and main[0].stream and main[0].body["model"] == "fake-model"


def _tool_loop(gateway, backend, tmp_path, *, thinking):
    work = tmp_path / "work"
    work.mkdir()

    def handler(req):
        if not req.body.get("tools"):
            return answer("ok")  # any side request (titles, summaries)
        if last_upstream_role(req) == "tool":
            return answer("Done: out.txt now contains hi.")
        return tool_call_stream("call_bash_1", "echo hi > out.txt", thinking=thinking)

    backend.handler = handler
    result = run_claude(gateway, "create out.txt containing hi", work, tmp_path / "home",
                        "--allowedTools", "Bash")  # fmt: skip
    assert result["_exit"] == 0, result
    assert result["result"] == "Done: out.txt now contains hi."
    assert (work / "out.txt").read_text().strip() == "hi"
    second = [
        r for r in backend.chat_requests if r.body.get("tools") and last_upstream_role(r) == "tool"
    ]
    assert second, "Claude Code never sent the tool result back"
    messages = second[0].body["messages"]
    assistant = [m for m in messages if m["role"] == "assistant"][-1]
    assert assistant["tool_calls"][0]["id"] == "call_bash_1"
    assert assistant["tool_calls"][0]["function"]["name"] == "Bash"
    assert (
        json.loads(assistant["tool_calls"][0]["function"]["arguments"])["command"]
        == "echo hi > out.txt"
    )
    tool_msg = messages[-1]
    assert tool_msg["tool_call_id"] == "call_bash_1"
    return messages


def test_bash_tool_loop_runs_the_command_and_returns_the_result(gateway, backend, tmp_path):
    _tool_loop(gateway, backend, tmp_path, thinking=None)


def test_thinking_and_tool_turn_round_trips(gateway, backend, tmp_path):
    messages = _tool_loop(gateway, backend, tmp_path, thinking="The user wants a file; use Bash.")
    # the echoed thinking block was accepted and not replayed as text
    assert "The user wants a file" not in json.dumps(messages)
