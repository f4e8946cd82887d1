"""Cache-safe conversion: for a conversation that only grows, the upstream
messages of turn N+1 begin with exactly the upstream messages of turn N
(same order, same bytes once serialised), and the tools are the same bytes —
so the backend's chat template renders the same token prefix and its prefix
cache holds.

Checked on the captured Claude Code sessions and on generated sessions with
changing reminders (hypothesis)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from toktoken import jsonio
from toktoken.convert import apply_quirks, to_openai_request

from .claude_sessions import claude_code_session
from .conftest import load_fixture

KINDS = ("vllm", "llamacpp", "ollama", "openai")


def upstream(req: dict, kind: str = "vllm", quirks=()) -> dict:
    return apply_quirks(to_openai_request(req, "local-model", stream=True, kind=kind), quirks)


def assert_prefix(before: dict, after: dict) -> None:
    """``after``'s messages begin with ``before``'s, byte for byte."""
    old = [jsonio.dumps(m) for m in before["messages"]]
    new = [jsonio.dumps(m) for m in after["messages"]]
    assert len(new) >= len(old)
    for i, (a, b) in enumerate(zip(old, new, strict=False)):
        assert a == b, f"message {i} changed:\n{a[:300]!r}\n{b[:300]!r}"
    assert jsonio.dumps(before.get("tools")) == jsonio.dumps(after.get("tools"))


def test_captured_claude_code_sessions_keep_their_prefix():
    for first, second in [("tool-bash.1", "tool-bash.2"),
                          ("thinking-tool-roundtrip.1", "thinking-tool-roundtrip.2")]:  # fmt: skip
        for kind in KINDS:
            assert_prefix(upstream(load_fixture(first)["body"], kind),
                          upstream(load_fixture(second)["body"], kind))  # fmt: skip


def test_token_budget_reminders_keep_the_prefix_turn_after_turn():
    session = claude_code_session(6)
    for kind in KINDS:
        bodies = [upstream(r, kind) for r in session]
        for before, after in zip(bodies, bodies[1:], strict=False):
            assert_prefix(before, after)
        # the reminders stay in the conversation, never in the system message
        assert "total_tokens" not in bodies[-1]["messages"][0]["content"]
        assert sum("total_tokens" in json.dumps(m) for m in bodies[-1]["messages"]) == 5


# Generated sessions --------------------------------------------------------------

_text = st.text(alphabet="abc <>/\n", min_size=0, max_size=12)
_reminder = st.one_of(
    st.builds(lambda n: f"<total_tokens>{n} tokens left</total_tokens>", st.integers(0, 10**6)),
    st.builds(lambda t: f"<system-reminder>{t}</system-reminder>", _text),
    _text.filter(bool),
)
_system_content = st.one_of(
    _reminder, st.lists(st.builds(lambda t: {"type": "text", "text": t}, _reminder), max_size=2)
)


@st.composite
def _user_turn(draw, call_ids: list[str]) -> dict:
    blocks = [{"type": "tool_result", "tool_use_id": i, "is_error": draw(st.booleans()),
               "content": draw(st.one_of(_text, st.just([{"type": "text", "text": "r"},
                                                          {"type": "image", "source": {
                                                              "type": "base64", "media_type": "image/png",
                                                              "data": "QUJD"}}])))}
              for i in call_ids]  # fmt: skip
    blocks += [{"type": "text", "text": t} for t in draw(st.lists(_text, max_size=2))]
    return {"role": "user", "content": blocks or draw(_text)}


@st.composite
def _assistant_turn(draw, turn: int) -> tuple[dict, list[str]]:
    blocks: list[dict] = []
    if draw(st.booleans()):
        blocks.append({"type": "thinking", "thinking": draw(_text), "signature": "sig"})
    blocks += [{"type": "text", "text": t} for t in draw(st.lists(_text, max_size=2))]
    ids = [f"toolu_{turn}_{k}" for k in range(draw(st.integers(0, 2)))]
    blocks += [{"type": "tool_use", "id": i, "name": "Bash", "input": {"command": draw(_text)}}
               for i in ids]  # fmt: skip
    return {"role": "assistant", "content": blocks}, ids


@st.composite
def sessions(draw) -> list[dict]:
    """Requests of one growing session: the system prompt stays (but for its
    billing header line), reminders arrive with each turn."""
    system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1;"},
              {"type": "text", "text": draw(st.one_of(_text, _reminder))}]  # fmt: skip
    messages = [{"role": "user", "content": draw(_text)}]
    messages += [
        {"role": "system", "content": c} for c in draw(st.lists(_system_content, max_size=2))
    ]
    base = {"model": "claude-x", "max_tokens": 1000, "system": system,
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}]}  # fmt: skip
    requests = [dict(base, messages=list(messages))]
    for turn in range(draw(st.integers(1, 5))):
        assistant, ids = draw(_assistant_turn(turn))
        messages = messages + [assistant, draw(_user_turn(ids))]
        messages += [
            {"role": "system", "content": c} for c in draw(st.lists(_system_content, max_size=2))
        ]
        billing = {"type": "text", "text": f"x-anthropic-billing-header: cc_version=1.{turn};"}
        requests.append(dict(base, system=[billing, system[1]], messages=list(messages)))
    return requests


@settings(max_examples=300, deadline=None)
@given(sessions(), st.sampled_from(KINDS), st.sampled_from([(), ("mistral",)]))
def test_generated_sessions_keep_their_prefix(requests, kind, quirks):
    bodies = [upstream(r, kind, quirks) for r in requests]
    for before, after in zip(bodies, bodies[1:], strict=False):
        assert_prefix(before, after)
