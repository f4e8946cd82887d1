"""The stream translator as a pure state machine: chunks in, events out."""

from __future__ import annotations

import json

import pytest

from toktoken.convert import StreamTranslator
from toktoken.errors import Overloaded

from .anthropic_grammar import GrammarError, validate
from .fake_backend import chunk, usage_chunk


def run(chunks, *, finish=True, model="claude-test", input_tokens=7):
    t = StreamTranslator(model, input_tokens=input_tokens)
    events = t.start()
    for c in chunks:
        events += t.feed(c)
    if finish:
        events += t.finish()
    return events, t


def tool_delta(index, *, id=None, name=None, args=None, **extra):
    function = {}
    if name is not None:
        function["name"] = name
    if args is not None:
        function["arguments"] = args
    call = {"index": index, "function": function}
    if id is not None:
        call["id"] = id
        call["type"] = "function"
    call.update(extra)
    return call


def test_plain_text_stream_is_one_text_block():
    events, _ = run([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}),
                     chunk({"content": "lo"}), chunk({}, "stop"), usage_chunk(11, 2)])  # fmt: skip
    t = validate(events)
    assert t.names == ["message_start", "content_block_start", "content_block_delta",
                       "content_block_delta", "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    assert t.text == "Hello"
    assert t.stop_reason == "end_turn"
    assert t.usage["output_tokens"] == 2 and t.usage["input_tokens"] == 11
    assert t.message["model"] == "claude-test"
    assert t.message["usage"]["input_tokens"] == 7  # the estimate, until the backend tells


def test_thinking_then_text_then_tool_call():
    events, _ = run([
        chunk({"role": "assistant", "reasoning_content": "Let me"}),
        chunk({"reasoning_content": " think."}),
        chunk({"content": "I'll run it."}),
        chunk({"tool_calls": [tool_delta(0, id="call_1", name="Bash", args="")]}),
        chunk({"tool_calls": [tool_delta(0, args='{"command": "ls"}')]}),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    t = validate(events)
    assert [b["type"] for b in t.blocks] == ["thinking", "text", "tool_use"]
    assert t.blocks[0]["thinking"] == "Let me think." and t.blocks[0]["signature"]
    assert t.blocks[2]["id"] == "call_1" and t.blocks[2]["name"] == "Bash"
    assert t.blocks[2]["input"] == {"command": "ls"}
    assert t.stop_reason == "tool_use"


def test_reasoning_field_also_becomes_thinking():
    events, _ = run([chunk({"reasoning": "hmm"}), chunk({"content": "ok"}), chunk({}, "stop")])
    assert [b["type"] for b in validate(events).blocks] == ["thinking", "text"]


def test_parallel_tool_calls_stream_as_separate_blocks():
    events, _ = run([
        chunk({"tool_calls": [tool_delta(0, id="a", name="Read", args='{"path"')]}),
        chunk({"tool_calls": [tool_delta(0, args=': "x"}')]}),
        chunk({"tool_calls": [tool_delta(1, id="b", name="Read", args='{"path": "y"}')]}),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    t = validate(events)
    assert [(b["id"], b["input"]) for b in t.blocks] == [("a", {"path": "x"}), ("b", {"path": "y"})]
    # the first call was closed as soon as the second began: live, not at the end
    names = t.names
    assert names.index("content_block_stop") < len(names) - 4


def test_interleaved_tool_calls_wait_for_the_open_block():
    events, _ = run([
        chunk({"tool_calls": [tool_delta(0, id="a", name="A", args='{"x": ')]}),
        chunk({"tool_calls": [tool_delta(1, id="b", name="B", args='{"y": ')]}),
        chunk({"tool_calls": [tool_delta(0, args="1}")]}),
        chunk({"tool_calls": [tool_delta(1, args="2}")]}),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    t = validate(events)
    assert [(b["name"], b["input"]) for b in t.blocks] == [("A", {"x": 1}), ("B", {"y": 2})]


def test_arguments_split_mid_token_and_mid_escape():
    args = json.dumps({"command": 'echo "héllo\\n" > out.txt', "n": -12.5e1, "ok": True})
    pieces = [args[i : i + 3] for i in range(0, len(args), 3)]
    events, _ = run(
        [chunk({"tool_calls": [tool_delta(0, id="c", name="Bash", args="")]})]
        + [chunk({"tool_calls": [tool_delta(0, args=p)]}) for p in pieces]
        + [chunk({}, "tool_calls")]
    )
    t = validate(events)
    assert t.blocks[0]["input"] == json.loads(args)


def test_llama_cpp_style_repeated_ids_nulls_and_legacy_function_call():
    def d(args):
        call = {"index": 0, "id": "call__0_get_weather_cmpl-1", "type": "function",
                "function": {"name": "get_weather", "arguments": args}}  # fmt: skip
        return chunk({"role": None, "content": None, "tool_calls": [call],
                      "function_call": {"name": "get_weather", "arguments": args}})  # fmt: skip

    events, _ = run([chunk({"role": "assistant"}), d('{ "city"'), d(': "Paris"} '),
                     chunk({"role": None, "content": None, "tool_calls": None}, "tool_calls")])  # fmt: skip
    t = validate(events)
    assert len(t.blocks) == 1
    assert t.blocks[0]["id"] == "call__0_get_weather_cmpl-1"
    assert t.blocks[0]["input"] == {"city": "Paris"}


def test_legacy_function_call_alone_is_a_tool_call():
    events, _ = run([chunk({"function_call": {"name": "f", "arguments": '{"a": 1}'}}),
                     chunk({}, "function_call")])  # fmt: skip
    t = validate(events)
    assert t.blocks[0]["name"] == "f" and t.blocks[0]["id"].startswith("toolu_")
    assert t.stop_reason == "tool_use"


def test_missing_usage_is_counted_never_zero():
    events, tr = run([chunk({"content": "one"}), chunk({"content": " two"}),
                      chunk({"content": " three"}), chunk({}, "stop")])  # fmt: skip
    t = validate(events)
    assert t.usage["output_tokens"] >= 3
    assert not tr.usage().exact and tr.usage().output_tokens == t.usage["output_tokens"]


def test_usage_with_cached_tokens():
    events, _ = run([chunk({"content": "x"}), chunk({}, "stop"), usage_chunk(100, 1, cached=60)])
    t = validate(events)
    assert t.usage["input_tokens"] == 40 and t.usage["cache_read_input_tokens"] == 60


def test_length_cut_tool_arguments_are_repaired_at_close():
    events, _ = run([
        chunk({"tool_calls": [tool_delta(0, id="c", name="Write", args='{"path": "a.txt", "content": "hel')]}),
        chunk({}, "length"),
    ])  # fmt: skip
    t = validate(events)
    assert t.blocks[0]["input"] == {"path": "a.txt", "content": "hel"}
    assert t.stop_reason == "max_tokens"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("{'a': 'b'}", {"a": "b"}),  # single quotes: nothing forwarded, repaired at close
        ('{"a": 1} <|im_end|>', {"a": 1}),  # trailing garbage
        ('{"a": [1, 2,', {"a": [1, 2]}),  # cut after a comma
        ("not json at all", {}),
        ("", {}),
    ],
)
def test_broken_tool_arguments_still_parse(raw, expected):
    events, _ = run([chunk({"tool_calls": [tool_delta(0, id="c", name="T", args=raw)]}),
                     chunk({}, "tool_calls")])  # fmt: skip
    assert validate(events).blocks[0]["input"] == expected


def test_stop_sequence_named_by_vllm():
    events, _ = run(
        [chunk({"content": "a"}), chunk({}, "stop", choice_extra={"stop_reason": "END"})]
    )
    t = validate(events)
    assert t.stop_reason == "stop_sequence" and t.stop_sequence == "END"


def test_content_filter_is_refusal():
    events, _ = run([chunk({"content": "a"}), chunk({}, "content_filter")])
    assert validate(events).stop_reason == "refusal"


def test_empty_upstream_is_an_error_not_silence():
    events, _ = run([])
    t = validate(events)
    assert t.error["type"] == "api_error" and "empty" in t.error["message"]
    assert t.blocks == []


def test_stream_cut_before_finish_closes_block_then_errors():
    events, _ = run([chunk({"content": "partial"})])
    t = validate(events)
    assert t.blocks[0]["text"] == "partial"  # what arrived is kept
    assert t.error["type"] == "api_error"


def test_fail_mid_tool_call_closes_it_with_valid_json():
    t = StreamTranslator("m")
    events = t.start() + t.feed(
        chunk({"tool_calls": [tool_delta(0, id="c", name="T", args='{"a": "b')]})
    )
    events += t.fail(Overloaded("busy"))
    tr = validate(events)
    assert tr.blocks[0]["input"] == {"a": "b"}
    assert tr.error == {"type": "overloaded_error", "message": "busy"}
    assert t.feed(chunk({"content": "late"})) == [] and t.finish() == []


def test_error_object_inside_the_stream_becomes_error_event():
    events, _ = run([chunk({"content": "a"}), {"error": {"message": "CUDA out of memory"}}])
    t = validate(events)
    assert "CUDA out of memory" in t.error["message"]


def test_text_after_tool_call_gets_its_own_block():
    events, _ = run([chunk({"tool_calls": [tool_delta(0, id="c", name="T", args="{}")]}),
                     chunk({"content": "done"}), chunk({}, "tool_calls")])  # fmt: skip
    t = validate(events)
    assert [b["type"] for b in t.blocks] == ["tool_use", "text"]


def test_tool_name_arriving_after_id_opens_block_once_known():
    events, _ = run([
        chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"name": "Late", "arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 1}"}}]}),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    t = validate(events)
    assert t.blocks[0]["name"] == "Late" and t.blocks[0]["input"] == {"a": 1}


def test_validator_rejects_a_block_left_open():
    t = StreamTranslator("m")
    events = t.start() + t.feed(chunk({"content": "x"}))
    events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                  "usage": {"output_tokens": 1}}),
               ("message_stop", {"type": "message_stop"})]  # fmt: skip
    with pytest.raises(GrammarError):
        validate(events)


def test_capacity_error_inside_the_stream_is_overloaded():
    events, _ = run(
        [chunk({"content": "a"}), {"error": {"message": "Server overloaded", "code": 503}}]
    )
    assert validate(events).error["type"] == "overloaded_error"


def test_length_stop_is_the_context_window_only_when_the_window_was_reached():
    def final(prompt, output, window, max_tokens=50):
        t = StreamTranslator("m", input_tokens=prompt, max_tokens=max_tokens, window=window)
        events = t.start() + t.feed(chunk({"content": "x"})) + t.feed(chunk({}, "length"))
        if output is not None:
            events += t.feed(usage_chunk(prompt, output))
        return validate(events + t.finish()).stop_reason

    assert final(100, 50, window=4032) == "max_tokens"  # max_tokens reached, far below the window
    assert (
        final(100, 20, window=4032) == "max_tokens"
    )  # below max_tokens, still far from the window
    assert final(4000, 40, window=4032) == "model_context_window_exceeded"
    assert final(4000, 40, window=None) == "max_tokens"  # an unknown window says nothing
    assert final(4032, None, window=4032) == "model_context_window_exceeded"  # counted output
