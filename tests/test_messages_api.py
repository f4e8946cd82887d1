"""POST /v1/messages (non-streaming) and the other endpoints, over real HTTP:
client -> gunicorn/gevent gateway -> scripted fake backend."""

from __future__ import annotations

import json
import time

import anthropic
import pytest
import requests

from .conftest import KEY, fixture_names, load_fixture, post
from .fake_backend import Json, completion


def body(**fields):
    return {"model": "claude-opus-5-5", "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}], **fields}  # fmt: skip


def test_anthropic_sdk_bearer_gets_text_and_tool_use(gateway, backend):
    backend.handler = lambda req: completion(
        "Let me check.",
        tool_calls=[{"id": "call_7", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}],
        finish="tool_calls", usage=(31, 12))  # fmt: skip
    client = anthropic.Anthropic(base_url=gateway.url, auth_token=KEY, api_key=None, max_retries=0)
    msg = client.messages.create(
        model="claude-sonnet-5-5", max_tokens=64,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[{"name": "get_weather", "description": "w",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    )  # fmt: skip
    assert msg.model == "claude-sonnet-5-5"
    assert msg.content[0].type == "text" and msg.content[0].text == "Let me check."
    assert msg.content[1].type == "tool_use" and msg.content[1].id == "call_7"
    assert msg.content[1].input == {"city": "Paris"}
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (31, 12)
    sent = backend.chat_requests[-1]
    assert sent.body["model"] == "fake-model" and "stream" not in sent.body
    assert sent.body["tools"][0]["function"]["name"] == "get_weather"


def test_raw_x_api_key_and_beta_query_string(gateway, backend):
    r = post(gateway, body(), path="/v1/messages?beta=true")
    assert r.status_code == 200, r.text
    data = r.json()
    assert (
        data["type"] == "message" and data["content"][0]["text"] == "Hello from the fake backend."
    )
    assert r.headers["request-id"].startswith("req_")


def test_sdk_x_api_key_style_client(gateway, backend):
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    msg = client.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert msg.content[0].text == "Hello from the fake backend."


def test_several_comma_separated_keys(gateway_factory):
    gw = gateway_factory(API_KEY="alpha, beta")
    for key in ("alpha", "beta"):
        assert post(gw, body(), headers={"x-api-key": key}).status_code == 200
    assert post(gw, body(), headers={"x-api-key": KEY}).status_code == 401


@pytest.mark.parametrize("name", fixture_names())
def test_every_captured_claude_code_request_is_accepted(gateway, backend, name):
    capture = load_fixture(name)
    headers = {k: v for k, v in capture["headers"]
               if k.lower() not in ("content-length", "host", "authorization", "accept-encoding")}  # fmt: skip
    headers["Authorization"] = f"Bearer {KEY}"
    headers.pop("x-api-key", None)
    payload = dict(capture["body"], stream=False)
    r = post(gateway, payload, path=capture["path"], headers=headers)
    assert r.status_code == 200, r.text
    sent = backend.chat_requests[-1].body
    assert sent["messages"][0]["role"] == "system"
    assert "x-anthropic-billing-header" not in json.dumps(sent)


def test_backend_reply_with_thinking_and_broken_arguments(gateway, backend):
    backend.handler = lambda req: completion(
        "", reasoning_content="thinking hard",
        tool_calls=[{"id": "c1", "type": "function",
                     "function": {"name": "Write", "arguments": "{'path': 'a.txt'} trailing"}}],
        finish="tool_calls")  # fmt: skip
    data = post(gateway, body()).json()
    assert [b["type"] for b in data["content"]] == ["thinking", "tool_use"]
    assert data["content"][1]["input"] == {"path": "a.txt"}


def test_models_in_both_shapes(gateway_factory):
    # a gateway of its own: what it discovers depends on the fake's handler
    gateway = gateway_factory(VLLM_MODEL="fake-model", STREAM_PING_INTERVAL="2")
    openai_shape = requests.get(gateway.url + "/v1/models", headers={"x-api-key": KEY}).json()
    assert openai_shape["object"] == "list"
    assert openai_shape["data"][0] == {"id": "fake-model", "object": "model",
                                       "created": openai_shape["data"][0]["created"], "owned_by": "toktoken"}  # fmt: skip
    anth = requests.get(gateway.url + "/v1/models",
                        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}).json()  # fmt: skip
    assert anth["data"][0]["type"] == "model" and anth["data"][0]["id"] == "fake-model"
    assert anth["has_more"] is False and anth["first_id"] == "fake-model"
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY, max_retries=0)
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "fake-model" and "fake-model-2" in ids  # then what the backend lists


def test_backends_are_probed_at_startup_with_one_line(gateway):
    def lines():
        return [x for x in gateway.log().splitlines() if ": backend default at " in x]

    deadline = time.monotonic() + 10  # the probe runs beside the worker's start-up
    while not lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = lines()
    assert len(lines) == 1 and "is reachable" in lines[0]


def test_health_and_head_need_no_key_and_tell_strangers_little(gateway, backend):
    assert requests.head(gateway.url + "/").status_code == 200
    h = requests.get(gateway.url + "/health")
    assert h.status_code == 200
    assert h.json() == {"status": "ok", "backends": [{"name": "default", "up": True}]}
    assert backend.url not in h.text
    r = requests.get(gateway.url + "/health/ready")
    assert r.status_code == 200 and backend.url not in r.text
    # a key holder sees the details
    h = requests.get(gateway.url + "/health", headers={"x-api-key": KEY})
    backend_health = h.json()["backends"][0]
    assert backend_health["url"] == backend.url and backend_health["reachable"] is True
    assert backend_health["latency_ms"] is not None and "capabilities" in backend_health
    assert h.json()["ledger"] == {"state": "disabled"}


def test_health_with_backend_down(gateway_factory):
    gw = gateway_factory(VLLM_URL="http://127.0.0.1:9")
    h = requests.get(gw.url + "/health")
    assert h.status_code == 200
    assert h.json()["status"] == "degraded" and h.json()["backends"][0]["up"] is False
    assert requests.get(gw.url + "/health/ready").status_code == 503


def test_count_tokens_estimate(gateway):
    capture = load_fixture("text.1")["body"]
    r = post(gateway, {k: v for k, v in capture.items() if k != "max_tokens"},
             path="/v1/messages/count_tokens?beta=true")  # fmt: skip
    assert r.status_code == 200
    assert r.json()["input_tokens"] > 5000  # ~49 KB of prompt and tools


def test_backend_api_key_and_model_are_sent_upstream(gateway_factory, backend):
    backend.serve("qwen-x")
    gw = gateway_factory(VLLM_API_KEY="upstream-secret", VLLM_MODEL="qwen-x")
    post(gw, body())
    sent = backend.chat_requests[-1]
    assert sent.headers["Authorization"] == "Bearer upstream-secret"
    assert sent.body["model"] == "qwen-x"
    assert KEY not in json.dumps(sent.headers)  # the client's key never goes upstream


def test_backend_url_with_v1_suffix_is_normalised(gateway_factory, backend):
    gw = gateway_factory(VLLM_URL=backend.url + "/v1/")
    assert post(gw, body()).status_code == 200
    assert backend.chat_requests[-1].path == "/v1/chat/completions"


def test_unknown_top_level_fields_never_4xx(client, backend):
    r = post(client, body(brand_new_feature={"on": True}, context_management={"edits": []},
                          messages=[{"role": "user", "content": [{"type": "future_block", "x": 1},
                                                                  {"type": "text", "text": "hi"}]}]))  # fmt: skip
    assert r.status_code == 200
    sent = backend.chat_requests[-1].body
    # unknown fields and block types are dropped, the rest converted as ever
    assert "brand_new_feature" not in sent and "context_management" not in sent
    assert sent["messages"] == [{"role": "user", "content": "hi"}]


def test_backend_json_error_without_choices_is_api_error(gateway, backend):
    backend.handler = lambda req: Json({"unexpected": True})
    r = post(gateway, body())
    assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
    assert "Traceback" not in r.text


def test_json_corner_cases_the_stdlib_accepts_are_accepted(gateway, backend):
    # a lone UTF-16 surrogate (e.g. a tool result cut mid-emoji) and a huge integer:
    # valid JSON; the surrogate, which nothing downstream can encode, becomes U+FFFD
    raw = ('{"model": "m", "max_tokens": 10, "metadata": {"n": 123456789012345678901234567890},'
           ' "messages": [{"role": "user", "content": "half an emoji: \\ud83d, a whole one: \\ud83d\\ude00"}]}')  # fmt: skip
    r = post(gateway, raw)
    assert r.status_code == 200, r.text
    sent = backend.chat_requests[-1].body["messages"][-1]["content"]
    assert sent == "half an emoji: \ufffd, a whole one: \U0001f600"
