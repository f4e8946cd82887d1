"""Vision routing on both routes, and an Anthropic-native vision backend."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from .anthropic_grammar import validate
from .conftest import KEY, post
from .fake_backend import Json, Sse

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}


def anthropic_body(messages, **kw):
    return {"model": "claude-sonnet-5-5", "max_tokens": 50, "messages": messages, **kw}


CASES = {
    "last message": [{"role": "user", "content": [{"type": "text", "text": "What is this?"}, IMAGE]}],
    "history": [{"role": "user", "content": [IMAGE, {"type": "text", "text": "Remember this."}]},
                {"role": "assistant", "content": "OK."},
                {"role": "user", "content": "What colour was it?"}],
    "tool result": [{"role": "user", "content": "Take a screenshot"},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                                  "content": [{"type": "text", "text": "here"}, IMAGE]}]}],
}  # fmt: skip


@pytest.fixture
def vision_gateway(gateway_factory, backend):
    backend.serve("vision-model")
    return gateway_factory(VISION_URL=backend.url, VISION_MODEL="vision-model", VISION_API_KEY="vk")


@pytest.mark.parametrize("case", list(CASES))
def test_images_anywhere_go_to_the_vision_backend(vision_gateway, backend, case):
    assert post(vision_gateway, anthropic_body(CASES[case])).status_code == 200
    sent = backend.chat_requests[-1]
    assert sent.body["model"] == "vision-model" and sent.headers["Authorization"] == "Bearer vk"
    assert "image_url" in json.dumps(sent.body)


def test_text_only_goes_to_the_default_backend(vision_gateway, backend):
    post(vision_gateway, anthropic_body([{"role": "user", "content": "hi"}]))
    assert backend.chat_requests[-1].body["model"] == "fake-model"


def test_openai_image_url_goes_to_vision(vision_gateway, backend):
    c = openai.OpenAI(base_url=vision_gateway.url + "/v1", api_key=KEY, max_retries=0)
    c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])  # fmt: skip
    assert backend.chat_requests[-1].body["model"] == "vision-model"


def test_without_vision_url_images_go_to_the_default_backend(gateway, backend):
    assert post(gateway, anthropic_body(CASES["last message"])).status_code == 200
    assert backend.chat_requests[-1].body["model"] == "fake-model"


def test_vision_backend_down_gives_the_right_error_on_each_route(gateway_factory):
    gw = gateway_factory(VISION_URL="http://127.0.0.1:9", VISION_MODEL="v")
    r = post(gw, anthropic_body(CASES["last message"]))
    assert r.status_code == 502 and r.json()["error"]["type"] == "api_error"
    assert "http://127.0.0.1:9" in r.json()["error"]["message"]
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="m", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}])  # fmt: skip
    assert info.value.status_code == 502 and "http://127.0.0.1:9" in info.value.message


# An Anthropic-native vision backend ---------------------------------------------------------


def native_events(text="A red square.", tool=None, usage=(30, 7), cut=False):
    events = [
        {"type": "message_start", "message": {"id": "msg_native", "type": "message", "role": "assistant",
                                              "model": "vision-model", "content": [], "stop_reason": None,
                                              "stop_sequence": None,
                                              "usage": {"input_tokens": usage[0], "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[:5]}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text[5:]}},
    ]  # fmt: skip
    if cut:
        return events
    events.append({"type": "content_block_stop", "index": 0})
    if tool:
        args = json.dumps(tool["input"])
        events += [
            {"type": "content_block_start", "index": 1,
             "content_block": {"type": "tool_use", "id": tool["id"], "name": tool["name"], "input": {}}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": args[:6]}},
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": args[6:]}},
            {"type": "content_block_stop", "index": 1},
        ]  # fmt: skip
    events += [
        {"type": "message_delta", "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": usage[1]}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return events


def native_message(text="A red square.", tool=None):
    content = [{"type": "text", "text": text}]
    if tool:
        content.append({"type": "tool_use", **tool})
    return {"id": "msg_native", "type": "message", "role": "assistant", "model": "vision-model",
            "content": content, "stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 30, "output_tokens": 7, "cache_read_input_tokens": 4}}  # fmt: skip


def frames(events):
    return [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]


class NativeBackend:
    def __init__(self, events=None, message=None):
        self.events = events or native_events()
        self.message = message or native_message()

    def __call__(self, req):
        if req.path.startswith("/v1/messages"):
            if req.body.get("stream"):
                return Sse(frames(self.events), done=False)
            return Json(self.message)
        if req.path.startswith("/v1/chat"):
            return Json(
                {"choices": [{"message": {"content": "text backend"}, "finish_reason": "stop"}]}
            )
        return Json({"data": []})


@pytest.fixture
def native_gateway(gateway_factory, backend):
    return gateway_factory(VISION_URL=backend.url, VISION_MODEL="vision-model", VISION_API_KEY="vk",
                           VISION_ANTHROPIC_NATIVE="true")  # fmt: skip


def test_anthropic_request_is_forwarded_as_is(native_gateway, backend):
    backend.handler = NativeBackend()
    body = anthropic_body(CASES["last message"], system="Describe images.", temperature=0.1)
    r = post(native_gateway, body, headers={"anthropic-beta": "some-beta-2026"})
    assert r.status_code == 200
    assert (
        r.json()["content"][0]["text"] == "A red square."
        and r.json()["model"] == "claude-sonnet-5-5"
    )
    sent = [x for x in backend.requests if x.path == "/v1/messages"][-1]
    assert sent.body == dict(body, model="vision-model")
    assert sent.headers["x-api-key"] == "vk" and KEY not in json.dumps(sent.headers)
    assert sent.headers["anthropic-beta"] == "some-beta-2026"


def test_anthropic_stream_is_relayed_event_for_event(native_gateway, backend):
    upstream = native_events(tool={"id": "toolu_1", "name": "zoom", "input": {"x": 1, "y": 2}})
    backend.handler = NativeBackend(events=upstream)
    r = post(native_gateway, anthropic_body(CASES["last message"], stream=True))
    t = validate(r.content)
    assert [e[1] for e in t.events[1:]] == upstream[1:]  # identical after message_start
    assert t.message["model"] == "claude-sonnet-5-5"
    assert t.blocks[1]["input"] == {"x": 1, "y": 2}


def test_anthropic_stream_cut_ends_with_error(native_gateway, backend):
    backend.handler = NativeBackend(events=native_events(cut=True))
    t = validate(post(native_gateway, anthropic_body(CASES["last message"], stream=True)).content)
    assert t.blocks[0]["text"] == "A red square." and t.error["type"] == "api_error"


def test_openai_client_gets_openai_answers_from_a_native_backend(native_gateway, backend):
    tool = {"id": "toolu_9", "name": "zoom", "input": {"factor": 2}}
    backend.handler = NativeBackend(message=native_message(tool=tool))
    c = openai.OpenAI(base_url=native_gateway.url + "/v1", api_key=KEY, max_retries=0)
    r = c.chat.completions.create(model="gpt-v", max_tokens=100, messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}],
        tools=[{"type": "function", "function": {"name": "zoom", "parameters": {"type": "object"}}}])  # fmt: skip
    msg = r.choices[0].message
    assert msg.content == "A red square." and r.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].id == "toolu_9" and json.loads(
        msg.tool_calls[0].function.arguments
    ) == {"factor": 2}
    assert r.usage.prompt_tokens == 34 and r.usage.prompt_tokens_details.cached_tokens == 4
    assert r.model == "gpt-v"
    sent = [x for x in backend.requests if x.path == "/v1/messages"][-1].body
    assert (
        sent["model"] == "vision-model"
        and sent["system"] == "Be brief."
        and sent["max_tokens"] == 100
    )
    assert sent["messages"][0]["content"][1] == IMAGE
    assert sent["tools"] == [{"name": "zoom", "input_schema": {"type": "object"}}]


def test_openai_stream_from_a_native_backend(native_gateway, backend):
    backend.handler = NativeBackend(events=native_events(tool={"id": "toolu_2", "name": "zoom",
                                                               "input": {"factor": 3}}))  # fmt: skip
    c = openai.OpenAI(base_url=native_gateway.url + "/v1", api_key=KEY, max_retries=0)
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}
    chunks = list(c.chat.completions.create(
        model="gpt-v", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": [image]}]))  # fmt: skip
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "A red square."
    args = "".join(tc.function.arguments or "" for ch in chunks if ch.choices
                   for tc in ch.choices[0].delta.tool_calls or [])  # fmt: skip
    assert json.loads(args) == {"factor": 3}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == 7 and chunks[-1].usage.prompt_tokens == 30
    assert [x for x in backend.requests if x.path == "/v1/messages"][-1].body["messages"][0]["content"][0] == {
        "type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.png"}}  # fmt: skip
    # the SDK's stream helper accumulates the same thing
    with c.chat.completions.stream(
        model="gpt-v", messages=[{"role": "user", "content": [image]}]
    ) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "zoom"


def test_openai_stream_cut_from_a_native_backend_raises(native_gateway, backend):
    backend.handler = NativeBackend(events=native_events(cut=True))
    c = openai.OpenAI(base_url=native_gateway.url + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIError):
        list(c.chat.completions.create(model="m", stream=True, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}]}]))  # fmt: skip


def test_text_requests_still_go_to_the_openai_default_backend(native_gateway, backend):
    backend.handler = NativeBackend()
    c = anthropic.Anthropic(base_url=native_gateway.url, api_key=KEY, max_retries=0)
    msg = c.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "text backend"
    assert backend.chat_requests and not [x for x in backend.requests if x.path == "/v1/messages"]
