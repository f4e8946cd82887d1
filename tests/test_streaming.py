"""POST /v1/messages with stream: true, over real HTTP through gunicorn + gevent.

Every stream is checked by the grammar validator (tests/anthropic_grammar.py)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anthropic
import pytest

from .anthropic_grammar import parse_frames, validate
from .conftest import KEY, post
from .fake_backend import Pause, Sse, chunk, completion, default_handler, text_stream, usage_chunk


def body(**fields):
    return {"model": "claude-opus-5-5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": "hi"}], **fields}  # fmt: skip


def stream_events(gateway, payload=None):
    r = post(gateway, payload or body())
    assert r.status_code == 200, r.text
    return r, validate(r.content)


def tool(index, id=None, name=None, args=None):
    fn = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    call = {"index": index, "function": fn}
    if id:
        call.update(id=id, type="function")
    return chunk({"tool_calls": [call]})


def test_text_stream_headers_and_upstream_request(gateway, backend):
    r, t = stream_events(gateway)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["x-accel-buffering"] == "no"
    assert r.headers["request-id"].startswith("req_")
    assert t.text == "Hello from the fake backend."
    assert t.stop_reason == "end_turn" and t.usage["output_tokens"] == 5
    assert t.names == ["message_start", "content_block_start"] + ["content_block_delta"] * 5 + [
        "content_block_stop", "message_delta", "message_stop"]  # fmt: skip
    sent = backend.chat_requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_thinking_text_and_tool_call_golden_sequence(gateway, backend):
    backend.handler = lambda req: Sse([
        chunk({"role": "assistant", "content": None, "reasoning_content": "Plan:"}),
        chunk({"reasoning_content": " write file"}),
        chunk({"content": "Writing."}),
        tool(0, id="call_w", name="Write", args=""),
        tool(0, args='{"path": "out.txt", '),
        tool(0, args='"content": "hi"}'),
        chunk({}, "tool_calls"),
        usage_chunk(40, 17),
    ])  # fmt: skip
    _, t = stream_events(gateway)
    golden = [
        ("content_block_start", {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", {"type": "thinking_delta", "thinking": "Plan:"}),
        ("content_block_delta", {"type": "thinking_delta", "thinking": " write file"}),
        ("content_block_delta", {"type": "signature_delta"}),
        ("content_block_stop", None),
        ("content_block_start", {"type": "text", "text": ""}),
        ("content_block_delta", {"type": "text_delta", "text": "Writing."}),
        ("content_block_stop", None),
        ("content_block_start", {"type": "tool_use", "id": "call_w", "name": "Write", "input": {}}),
        # the comma is held until what follows it arrives (JsonPrefix)
        ("content_block_delta", {"type": "input_json_delta", "partial_json": '{"path": "out.txt"'}),
        ("content_block_delta", {"type": "input_json_delta", "partial_json": ', "content": "hi"}'}),
        ("content_block_stop", None),
    ]
    middle = t.events[1:-2]
    assert len(middle) == len(golden)
    for (name, data), (g_name, g_part) in zip(middle, golden, strict=False):
        assert name == g_name
        if g_part is not None:
            part = data.get("content_block") or data.get("delta")
            assert {k: part[k] for k in g_part} == g_part
            if part["type"] == "signature_delta":
                assert part["signature"]
    assert t.events[-2][1] == {"type": "message_delta",
                               "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                               "usage": {"input_tokens": 40, "output_tokens": 17,
                                         "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}  # fmt: skip


def test_two_parallel_tool_calls(gateway, backend):
    backend.handler = lambda req: Sse([
        tool(0, id="a", name="Read", args='{"file_path": "/a"}'),
        tool(1, id="b", name="Read", args='{"file_path": "/b"}'),
        chunk({}, "tool_calls"),
    ])  # fmt: skip
    _, t = stream_events(gateway)
    assert [(b["id"], b["input"]["file_path"]) for b in t.blocks] == [("a", "/a"), ("b", "/b")]
    assert t.stop_reason == "tool_use"


def test_arguments_split_mid_token(gateway, backend):
    args = '{"command": "printf \\"a\\\\nb\\" > f.txt", "timeout": 1200}'
    backend.handler = lambda req: Sse(
        [tool(0, id="c", name="Bash", args="")]
        + [tool(0, args=args[i : i + 2]) for i in range(0, len(args), 2)]
        + [chunk({}, "tool_calls")]
    )
    _, t = stream_events(gateway)
    assert t.blocks[0]["input"] == json.loads(args)


def test_llama_cpp_style_repeated_ids_without_usage(gateway, backend):
    def d(args):
        call = {"index": 0, "id": "call__0_f_cmpl-9", "type": "function",
                "function": {"name": "f", "arguments": args}}  # fmt: skip
        return chunk({"role": None, "content": None, "tool_calls": [call],
                      "function_call": {"name": "f", "arguments": args}})  # fmt: skip

    backend.handler = lambda req: Sse([chunk({"role": "assistant"}), d('{ "city"'), d(': "Paris"} '),
                                       chunk({"content": None}, "tool_calls")])  # fmt: skip
    _, t = stream_events(gateway)
    assert len(t.blocks) == 1 and t.blocks[0]["input"] == {"city": "Paris"}
    assert t.usage["output_tokens"] > 0  # counted, since no usage came


def test_finish_reason_length(gateway, backend):
    backend.handler = lambda req: text_stream(["a", "b"], finish="length", usage=(10, 100))
    _, t = stream_events(gateway, body(max_tokens=100))
    assert t.stop_reason == "max_tokens"


def test_length_is_the_context_window_only_when_prompt_and_output_reach_it(
    gateway_factory, backend
):
    # "length" when the window filled up (llama.cpp) and when max_tokens was
    # reached: the prompt + output against the known window tell them apart,
    # the same streamed and not.
    gw = gateway_factory(VLLM_CONTEXT="4096", VLLM_KIND="openai")
    for prompt, output, expected in [(4000, 80, "model_context_window_exceeded"),
                                     (100, 50, "max_tokens"), (100, 20, "max_tokens")]:  # fmt: skip
        backend.handler = lambda req, p=prompt, o=output: (
            text_stream(["a", "b"], finish="length", usage=(p, o)) if req.stream
            else completion("ab", finish="length", usage=(p, o)))  # fmt: skip
        _, t = stream_events(gw, body(max_tokens=50))
        assert t.stop_reason == expected, (prompt, output)
        r = post(gw, body(max_tokens=50, stream=False))
        assert r.json()["stop_reason"] == expected, (prompt, output)


def test_stop_sequence(gateway, backend):
    backend.handler = lambda req: Sse([chunk({"content": "x"}),
                                       chunk({}, "stop", choice_extra={"stop_reason": "\n\nHuman:"})])  # fmt: skip
    _, t = stream_events(gateway, body(stop_sequences=["\n\nHuman:"]))
    assert t.stop_reason == "stop_sequence" and t.stop_sequence == "\n\nHuman:"
    assert backend.chat_requests[-1].body["stop"] == ["\n\nHuman:"]


def test_empty_200_ends_in_error_event(gateway, backend):
    backend.handler = lambda req: Sse([], done=False)
    _, t = stream_events(gateway)
    assert t.error["type"] == "api_error" and t.blocks == []


def test_done_without_finish_reason_is_an_error(gateway, backend):
    backend.handler = lambda req: Sse([chunk({"content": "half"})], done=True)
    _, t = stream_events(gateway)
    assert t.blocks[0]["text"] == "half" and t.error is not None


def test_cut_mid_stream_closes_block_then_errors(gateway, backend):
    backend.handler = lambda req: Sse([chunk({"content": "partial "}), chunk({"content": "answer"})],
                                      done=False, cut=True)  # fmt: skip
    _, t = stream_events(gateway)
    assert t.blocks[0]["text"] == "partial answer"
    assert t.error["type"] == "api_error"


def test_backend_answering_json_to_a_stream_request_is_replayed_as_events(gateway, backend):
    backend.handler = lambda req: completion(
        "Plain JSON.", tool_calls=[{"id": "c9", "type": "function",
                                    "function": {"name": "T", "arguments": '{"a": 1}'}}],
        finish="tool_calls", usage=(9, 4))  # fmt: skip
    _, t = stream_events(gateway)
    assert [b["type"] for b in t.blocks] == ["text", "tool_use"]
    assert t.blocks[1]["input"] == {"a": 1} and t.stop_reason == "tool_use"
    assert t.usage["output_tokens"] == 4


def test_silent_upstream_gets_pings(gateway, backend):
    # the session gateway pings every 1 s
    backend.handler = lambda req: Sse([Pause(2.6), chunk({"content": "late"}), chunk({}, "stop")])
    _, t = stream_events(gateway)
    assert t.pings >= 2 and t.text == "late"
    assert t.events[0][0] == "message_start"  # sent before the upstream said anything


def test_backend_silent_past_the_read_timeout_ends_the_stream_with_an_error(
    gateway_factory, backend
):
    gw = gateway_factory(BACKEND_READ_TIMEOUT="1.5", STREAM_PING_INTERVAL="0.5")
    backend.handler = lambda req: Sse([chunk({"content": "a"}), Pause(6), chunk({}, "stop")])
    r = post(gw, body(), stream=True)
    pieces = r.iter_content(chunk_size=None)
    raw = next(pieces)
    first_byte = time.monotonic()
    raw += b"".join(pieces)
    assert time.monotonic() - first_byte < 4  # the timeout, not the whole pause
    t = validate(raw)
    assert t.text == "a" and t.pings >= 1
    assert t.error["type"] == "api_error"
    assert "went silent for more than 1.5s" in t.error["message"]
    assert backend.wait_for_disconnect(5), "the silent backend was never hung up on"


def test_events_are_relayed_as_they_arrive(gateway, backend):
    backend.handler = lambda req: Sse([Pause(0.8), chunk({"content": "a"}), Pause(0.8),
                                       chunk({"content": "b"}), Pause(0.8), chunk({}, "stop")])  # fmt: skip
    r = post(gateway, body(), stream=True)
    arrivals: list[tuple[float, str]] = []
    buffer = b""
    for piece in r.iter_content(chunk_size=None):
        buffer += piece
        while b"\n\n" in buffer:
            frame, buffer = buffer.split(b"\n\n", 1)
            for name, _ in parse_frames(frame + b"\n\n"):
                arrivals.append((time.monotonic(), name))
    times = {name: t for t, name in reversed(arrivals)}
    deltas = [t for t, name in arrivals if name == "content_block_delta"]
    # message_start long before the first token; each delta well before the next
    assert deltas[0] - times["message_start"] > 0.5
    assert deltas[1] - deltas[0] > 0.5


def test_sdk_stream_get_final_message(gateway, backend):
    backend.handler = lambda req: Sse([
        chunk({"reasoning_content": "hmm"}), chunk({"content": "Hi there"}),
        tool(0, id="call_1", name="Bash", args='{"command": "ls"}'),
        chunk({}, "tool_calls"), usage_chunk(20, 8)])  # fmt: skip
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    with client.messages.stream(model="claude-haiku-5-5", max_tokens=50,
                                messages=[{"role": "user", "content": "x"}]) as stream:  # fmt: skip
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Hi there"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[2].input == {"command": "ls"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 8
    assert final.model == "claude-haiku-5-5"


def test_sdk_raw_event_iteration(gateway, backend):
    client = anthropic.Anthropic(base_url=gateway.url, auth_token=KEY, api_key=None, max_retries=0)
    events = list(client.messages.create(model="m", max_tokens=20, stream=True,
                                         messages=[{"role": "user", "content": "x"}]))  # fmt: skip
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == (
        "Hello from the fake backend."
    )


def test_sdk_raises_on_mid_stream_error(gateway, backend):
    backend.handler = lambda req: Sse([chunk({"content": "x"})], done=False, cut=True)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="m", max_tokens=5,
                                    messages=[{"role": "user", "content": "x"}]) as s:  # fmt: skip
            s.get_final_message()
    assert info.value.body["error"]["type"] == "api_error"
    assert "broke the stream" in info.value.body["error"]["message"]


def test_client_disconnect_closes_upstream(gateway, backend):
    items = [chunk({"content": "tick"}) if i % 2 == 0 else Pause(0.1) for i in range(200)]
    backend.handler = lambda req: Sse(items + [chunk({}, "stop")])
    r = post(gateway, body(), stream=True)
    it = r.iter_content(chunk_size=None)
    next(it), next(it)
    request_id = r.headers["request-id"]
    r.close()  # the client goes away mid-stream
    closed_at = time.monotonic()
    assert backend.wait_for_disconnect(5), "the backend never saw the disconnect"
    assert backend.disconnects[0] - closed_at < 1.5
    # the relay ended cleanly: its one request line says what happened
    deadline = time.monotonic() + 5
    while f"request_id={request_id}" not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    [line] = [x for x in gateway.log().splitlines() if f"request_id={request_id}" in x]
    assert "outcome=client_gone" in line and "error=client_disconnected" in line


def test_client_disconnect_while_upstream_silent_closes_upstream(gateway, backend):
    backend.handler = lambda req: Sse([Pause(30), chunk({}, "stop")])
    r = post(gateway, body(), stream=True)
    next(r.iter_content(chunk_size=None))  # message_start arrived
    r.close()
    closed_at = time.monotonic()
    assert backend.wait_for_disconnect(5), "the backend never saw the disconnect"
    assert backend.disconnects[0] - closed_at < 2.5
    # and the worker is free again
    backend.handler = default_handler
    assert post(gateway, body(stream=False)).status_code == 200


def test_200_concurrent_streams_through_one_worker(gateway, backend):
    def handler(req):
        tag = req.body["messages"][-1]["content"]
        return Sse([chunk({"content": tag}), Pause(0.5), chunk({"content": "!"}),
                    chunk({}, "stop"), usage_chunk(5, 2)])  # fmt: skip

    backend.handler = handler
    barrier = threading.Barrier(200, timeout=30)

    def one(i):
        barrier.wait()
        r = post(gateway, body(messages=[{"role": "user", "content": f"req-{i}"}]), timeout=60)
        return validate(r.content).text

    with ThreadPoolExecutor(200) as pool:
        results = list(pool.map(one, range(200)))
    assert results == [f"req-{i}!" for i in range(200)]


def test_relay_with_threads_pings_relays_and_times_out(backend):
    """The relay outside gevent (a reader thread, timed queue waits): this
    test process is not monkey-patched, so relay.py takes its thread path."""
    from toktoken.backends import BackendClient
    from toktoken.config import BackendSettings
    from toktoken.convert import StreamTranslator
    from toktoken.relay import relay_anthropic

    settings = BackendSettings(name="b", url=backend.url, api_key=None, model="fake-model")
    client = BackendClient(settings, connect_timeout=2, read_timeout=1.5)
    request = {
        "model": "fake-model",
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }

    def run(items):
        backend.handler = lambda req: Sse(items)
        outcome = []
        out = b"".join(relay_anthropic(
            client.open_stream("/v1/chat/completions", request), StreamTranslator("m"),
            ping_interval=0.5, client_gone=lambda: False,
            on_done=lambda *args: outcome.append(args[0]),
        ))  # fmt: skip
        return validate(out), outcome

    t, outcome = run([Pause(1.2), chunk({"content": "late"}), chunk({}, "stop")])
    assert t.text == "late" and t.pings >= 1 and outcome == ["ok"]
    t, outcome = run([chunk({"content": "a"}), Pause(4), chunk({}, "stop")])
    assert t.text == "a" and "went silent" in t.error["message"] and outcome == ["error"]
