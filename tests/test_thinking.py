"""Thinking dialects per backend kind, <think> tags, and a vLLM-style round trip."""

from __future__ import annotations

import anthropic
import pytest

from toktoken.convert import StreamTranslator, to_anthropic_message, to_openai_request
from toktoken.convert.thinking import ThinkTagSplitter, split_think_tags, thinking_fields

from .anthropic_grammar import validate
from .conftest import KEY
from .fake_backend import Json, Sse, chunk, usage_chunk

ENABLED = {"type": "enabled", "budget_tokens": 20000}
ADAPTIVE = {"type": "adaptive", "display": "omitted"}
DISABLED = {"type": "disabled"}


@pytest.mark.parametrize(
    "kind, thinking, effort, expected",
    [
        ("vllm", ENABLED, None, {"chat_template_kwargs": {"enable_thinking": True, "thinking": True},
                                 "reasoning_effort": "high"}),
        ("vllm", ADAPTIVE, "medium", {"chat_template_kwargs": {"enable_thinking": True, "thinking": True},
                                      "reasoning_effort": "medium"}),
        ("vllm", DISABLED, "high", {"chat_template_kwargs": {"enable_thinking": False, "thinking": False}}),
        ("vllm", None, None, {}),
        ("llamacpp", {"type": "enabled", "budget_tokens": 1024}, None,
         {"chat_template_kwargs": {"enable_thinking": True, "thinking": True}}),
        ("ollama", ADAPTIVE, "max", {"think": True, "reasoning_effort": "high"}),
        ("ollama", DISABLED, None, {"think": False, "reasoning_effort": "none"}),
        ("openai", {"type": "enabled", "budget_tokens": 2000}, None, {"reasoning_effort": "low"}),
        ("openai", ADAPTIVE, "medium", {}),  # generic servers may reject the field
        ("openai", DISABLED, None, {}),
    ],
)  # fmt: skip
def test_thinking_dialects(kind, thinking, effort, expected):
    assert thinking_fields(kind, thinking, effort) == expected


def test_history_thinking_is_reasoning_for_vllm_and_dropped_elsewhere():
    req = {"model": "m", "max_tokens": 10, "thinking": ADAPTIVE, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "plan", "signature": "s"},
                                          {"type": "text", "text": "answer"}]},
        {"role": "user", "content": "more"}]}  # fmt: skip
    vllm = to_openai_request(req, "m", kind="vllm")
    assert vllm["messages"][1] == {
        "role": "assistant",
        "content": "answer",
        "reasoning_content": "plan",
    }
    openai = to_openai_request(req, "m", kind="openai")
    assert openai["messages"][1] == {"role": "assistant", "content": "answer"}


def test_think_tags_split_at_every_position():
    reply = "\n<think>\nStep 1: read.\nStep 2: answer.\n</think>\n\nThe answer is 4 (not <think>)."
    for cut1 in range(len(reply)):
        for cut2 in range(cut1, len(reply), 7):
            s = ThinkTagSplitter()
            parts = (
                s.feed(reply[:cut1]) + s.feed(reply[cut1:cut2]) + s.feed(reply[cut2:]) + s.flush()
            )
            thinking = "".join(t for k, t in parts if k == "thinking")
            text = "".join(t for k, t in parts if k == "text")
            assert thinking == "\nStep 1: read.\nStep 2: answer.\n", (cut1, cut2)
            assert text == "The answer is 4 (not <think>).", (cut1, cut2)


def test_think_tag_only_at_the_start():
    assert split_think_tags("Use <think> tags like this: <think>x</think>") == (
        "", "Use <think> tags like this: <think>x</think>")  # fmt: skip
    assert split_think_tags("<think>cut short by max_tokens") == ("cut short by max_tokens", "")
    assert split_think_tags("<thi") == ("", "<thi")


def test_think_tags_in_non_streaming_content():
    msg = to_anthropic_message({"choices": [{"message": {"content": "<think>hmm</think>\n\nHi!"},
                                             "finish_reason": "stop"}]}, "m")  # fmt: skip
    assert [(b["type"], b.get("thinking") or b.get("text")) for b in msg["content"]] == [
        ("thinking", "hmm"), ("text", "Hi!")]  # fmt: skip


def test_think_tags_in_a_stream_become_a_thinking_block():
    t = StreamTranslator("m")
    events = t.start()
    for piece in ["<th", "ink>I should", " greet.</thi", "nk>", "\n\n", "Hello", "!"]:
        events += t.feed(chunk({"content": piece}))
    events += t.feed(chunk({}, "stop")) + t.finish()
    tr = validate(events)
    assert [(b["type"], b.get("thinking") or b.get("text")) for b in tr.blocks] == [
        ("thinking", "I should greet."), ("text", "Hello!")]  # fmt: skip


def test_thinking_round_trip_with_a_vllm_reasoning_backend(gateway_factory, backend):
    def handler(req):
        if req.path == "/v1/models":
            return Json({"object": "list", "data": [{"id": "qwen3-think", "max_model_len": 65536}]})
        if req.path == "/tokenize":
            return Json({"count": 100, "max_model_len": 65536, "tokens": []})
        if req.stream:
            return Sse([chunk({"role": "assistant", "reasoning_content": "The user greets; "}),
                        chunk({"reasoning_content": "greet back."}),
                        chunk({"content": "Hello!"}), chunk({}, "stop"), usage_chunk(100, 9)])  # fmt: skip
        return Json({"detail": "Not Found"}, 404)

    backend.handler = handler
    gw = gateway_factory(VLLM_MODEL="qwen3-think")
    client = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)
    first = [{"role": "user", "content": "Hi"}]
    with client.messages.stream(model="claude-opus-5-5", max_tokens=2000, messages=first,
                                thinking=ADAPTIVE, extra_body={"output_config": {"effort": "high"}}) as s:  # fmt: skip
        reply = s.get_final_message()
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert (
        reply.content[0].thinking == "The user greets; greet back." and reply.content[0].signature
    )
    sent = backend.chat_requests[-1].body
    assert sent["chat_template_kwargs"] == {"enable_thinking": True, "thinking": True}
    assert sent["reasoning_effort"] == "high"

    # the client echoes the thinking block back, as Claude Code does
    history = first + [{"role": "assistant", "content": [b.model_dump() for b in reply.content]},
                       {"role": "user", "content": "And now?"}]  # fmt: skip
    with client.messages.stream(model="claude-opus-5-5", max_tokens=2000, messages=history,
                                thinking=ADAPTIVE) as s:  # fmt: skip
        s.get_final_message()
    replayed = backend.chat_requests[-1].body["messages"][1]
    assert replayed == {"role": "assistant", "content": "Hello!",
                        "reasoning_content": "The user greets; greet back."}  # fmt: skip


def test_split_think_tags_shortcut_agrees_with_the_splitter():
    """split_think_tags skips the splitter when no tag can open thinking: the
    answers must be the same for any reply."""
    import random

    from toktoken.convert.thinking import ThinkTagSplitter, split_think_tags

    def by_splitter(content):
        splitter = ThinkTagSplitter()
        parts = splitter.feed(content) + splitter.flush()
        return (
            "".join(t for k, t in parts if k == "thinking"),
            "".join(t for k, t in parts if k == "text"),
        )

    pieces = ["<think>", "</think>", "<", "<th", " ", "\n", "a", "b c", "<b>"]
    rng = random.Random(7)
    replies = ["", " ", "x", "<", "<think>", " \n<think>a</think>\n b"] + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(2000)
    ]
    for reply in replies:
        assert split_think_tags(reply) == by_splitter(reply), reply
