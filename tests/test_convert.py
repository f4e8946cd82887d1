"""Request and response conversion: golden files from real Claude Code captures
plus one case per conversion rule."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from toktoken.convert import to_anthropic_message, to_openai_request
from toktoken.convert.tool_json import parse_arguments
from toktoken.schemas.anthropic import load_messages_request

from .conftest import fixture_names, load_fixture

GOLDEN = Path(__file__).resolve().parent / "golden"


def convert(body: dict, **kw) -> dict:
    return to_openai_request(load_messages_request(body), "backend-model", **kw)


def base(**fields) -> dict:
    return {"model": "claude-x", "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}], **fields}  # fmt: skip


# Golden files ----------------------------------------------------------------


@pytest.mark.parametrize("name", fixture_names())
def test_claude_code_capture_converts_to_golden_openai_body(name):
    body = load_fixture(name)["body"]
    converted = convert(body, stream=body.get("stream", False))
    path = GOLDEN / f"{name}.openai.json"
    if os.environ.get("TOKTOKEN_REGEN_GOLDEN"):
        path.write_text(json.dumps(converted, indent=1, ensure_ascii=False) + "\n")
    assert converted == json.loads(path.read_text())


@pytest.mark.parametrize("name", fixture_names())
def test_claude_code_capture_invariants(name):
    body = load_fixture(name)["body"]
    out = convert(body, stream=True)
    roles = [m["role"] for m in out["messages"]]
    assert roles[0] == "system" and "system" not in roles[1:]
    system = out["messages"][0]["content"]
    assert "x-anthropic-billing-header" not in system
    # the mid-list role:"system" entry was merged, in order, after the top-level system
    mid = [m for m in body["messages"] if m["role"] == "system"][0]["content"]
    mid_text = mid if isinstance(mid, str) else mid[0]["text"]
    assert system.endswith(mid_text)
    assert out["stream_options"] == {"include_usage": True}
    assert all(t["type"] == "function" and "parameters" in t["function"] for t in out["tools"])
    assert len(out["tools"]) == len(body["tools"])
    dumped = json.dumps(out)
    for dropped in ("cache_control", "defer_loading", "context_management", "signature"):
        assert dropped not in dumped


# Request rules ---------------------------------------------------------------


def test_system_entries_before_the_first_answer_join_the_system_message_later_ones_stay():
    out = convert(base(system=[{"type": "text", "text": "x-anthropic-billing-header: cc=1;"},
                               {"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
                       messages=[{"role": "user", "content": "u1"},
                                 {"role": "system", "content": [{"type": "text", "text": "C"}]},
                                 {"role": "system", "content": []},
                                 {"role": "assistant", "content": "a1"},
                                 {"role": "user", "content": "u2"},
                                 {"role": "system", "content": "D"},
                                 {"role": "assistant", "content": "a2"},
                                 {"role": "system", "content": "<system-reminder>E</system-reminder>"}]))  # fmt: skip
    assert out["messages"] == [
        {"role": "system", "content": "A\n\nB\n\nC"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2\n\n<system-reminder>\nD\n</system-reminder>"},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "<system-reminder>E</system-reminder>"},
    ]


def test_token_budget_countdown_never_enters_the_system_message():
    initial, now = (
        "<total_tokens>1000000 tokens left</total_tokens>",
        "<total_tokens>983215 tokens left</total_tokens>",
    )
    out = convert(base(system=f"Be careful. {initial}",
                       messages=[{"role": "user", "content": "u1"},
                                 {"role": "system", "content": f"Env block.\n{initial}"},
                                 {"role": "assistant", "content": "a1"},
                                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                               "content": "ok"}]},
                                 {"role": "system", "content": now}]))  # fmt: skip
    # the system field's own initial budget is the client's (constant) prompt text
    assert out["messages"][0] == {
        "role": "system",
        "content": f"Be careful. {initial}\n\nEnv block.",
    }
    # an entry's budget stays at its place, even before the first answer
    assert out["messages"][1] == {
        "role": "user",
        "content": f"u1\n\n<system-reminder>\n{initial}\n</system-reminder>",
    }
    assert out["messages"][-2]["role"] == "tool"
    assert out["messages"][-1] == {
        "role": "user",
        "content": f"<system-reminder>\n{now}\n</system-reminder>",
    }


def test_images_become_image_url_parts():
    out = convert(base(messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
    ]}]))  # fmt: skip
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,QUJD"}},
        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
    ]


def test_tools_and_tool_choice_mapping():
    tools = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"},
              "cache_control": {"type": "ephemeral"}, "defer_loading": True},
             {"type": "web_search_20250305", "name": "web_search"}]  # fmt: skip
    out = convert(base(tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True}))
    assert out["tools"] == [{"type": "function", "function": {
        "name": "Bash", "parameters": {"type": "object"}, "description": "run"}}]  # fmt: skip
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    for choice, expected in [({"type": "auto"}, "auto"), ({"type": "none"}, "none"),
                             ({"type": "tool", "name": "Bash"},
                              {"type": "function", "function": {"name": "Bash"}})]:  # fmt: skip
        assert convert(base(tools=tools, tool_choice=choice))["tool_choice"] == expected


def test_tool_use_and_results_round_trip_with_same_ids():
    out = convert(base(messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "secret", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xx"},
            {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"p": "a"}},
            {"type": "tool_use", "id": "toolu_2", "name": "ToolSearch", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
             "content": [{"type": "text", "text": "no such file"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
                {"type": "tool_reference", "tool_name": "WebFetch"},
                {"type": "text", "text": "found"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}}]},
            {"type": "text", "text": "and then?"},
        ]},
    ]))  # fmt: skip
    msgs = out["messages"]
    assert msgs[1] == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": '{"p": "a"}'}},
        {"id": "toolu_2", "type": "function", "function": {"name": "ToolSearch", "arguments": "{}"}}]}  # fmt: skip
    assert msgs[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: no such file"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_2",
                       "content": "Tool loaded: WebFetch\nfound"}  # fmt: skip
    assert msgs[4]["role"] == "user"
    parts = msgs[4]["content"]
    assert {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}} in parts
    assert parts[-1] == {"type": "text", "text": "and then?"}
    assert "secret" not in json.dumps(out)


def test_sampling_stop_metadata_and_output_format():
    out = convert(base(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["END"],
                       metadata={"user_id": "u-1"},
                       output_config={"effort": "high", "format": {"type": "json_schema",
                                      "schema": {"type": "object"}}}))  # fmt: skip
    assert out["temperature"] == 0.2 and out["top_p"] == 0.9 and out["top_k"] == 40
    assert out["stop"] == ["END"] and out["user"] == "u-1"
    assert out["response_format"] == {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": {"type": "object"}}}  # fmt: skip
    assert "effort" not in json.dumps(out)


def test_unknown_fields_roles_and_blocks_are_tolerated():
    body = base(future_field={"x": 1}, safeguards={"a": 1}, context_management={}, betas=["b"],
                messages=[{"role": "user", "content": [{"type": "hologram", "data": 1},
                                                       {"type": "text", "text": "hi", "citations": []}],
                           "weird": True},
                          {"role": "developer", "content": "be brief"}])  # fmt: skip
    out = convert(body)
    assert out["messages"] == [{"role": "user", "content": "hi"},
                               {"role": "user", "content": "be brief"}]  # fmt: skip
    assert set(out) == {"model", "messages", "max_tokens"}


# Response rules ----------------------------------------------------------------


def _completion(message, finish="stop", usage=None, **choice):
    body = {"choices": [{"index": 0, "message": message, "finish_reason": finish, **choice}]}
    if usage:
        body["usage"] = usage
    return body


def test_response_text_thinking_and_tools_in_order():
    msg = to_anthropic_message(_completion({
        "content": "Running.", "reasoning_content": "plan",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "Bash", "arguments": '{"command": "ls"}  '}}]},
        finish="tool_calls",
        usage={"prompt_tokens": 50, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 20}}),
        "claude-opus-5-5")  # fmt: skip
    assert msg["id"].startswith("msg_") and msg["model"] == "claude-opus-5-5"
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "tool_use"]
    assert msg["content"][0]["signature"]
    assert msg["content"][2] == {
        "type": "tool_use",
        "id": "call_9",
        "name": "Bash",
        "input": {"command": "ls"},
    }
    assert msg["stop_reason"] == "tool_use"
    assert msg["usage"] == {"input_tokens": 30, "output_tokens": 9,
                            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 20}  # fmt: skip


@pytest.mark.parametrize(
    "finish, extra, expected",
    [("stop", {}, ("end_turn", None)), ("length", {}, ("max_tokens", None)),
     ("content_filter", {}, ("refusal", None)), ("stop", {"stop_reason": "###"}, ("stop_sequence", "###")),
     ("stop", {"stop_reason": 2}, ("end_turn", None))],
)  # fmt: skip
def test_response_stop_reasons(finish, extra, expected):
    msg = to_anthropic_message(_completion({"content": "x"}, finish, **extra), "m")
    assert (msg["stop_reason"], msg["stop_sequence"]) == expected


@pytest.mark.parametrize(
    "raw, expected",
    [('{"a": 1}', {"a": 1}), ('{"a": 1}\n\n', {"a": 1}), ('{"a": 1}}', {"a": 1}),
     ("{'a': 'b', 'c': True}", {"a": "b", "c": True}), ('{"a": "tru', {"a": "tru"}),
     ("garbage", {}), (None, {}), ("[1, 2]", {"value": [1, 2]})],
)  # fmt: skip
def test_tool_arguments_repair(raw, expected):
    assert parse_arguments(raw) == expected


def test_response_without_usage_is_estimated_not_zero():
    msg = to_anthropic_message(
        _completion({"content": "some words here"}), "m", input_tokens_estimate=42
    )
    assert msg["usage"]["input_tokens"] == 42 and msg["usage"]["output_tokens"] > 0
