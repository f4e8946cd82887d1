"""POST /v1/chat/completions with the openai SDK, over real HTTP."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from .conftest import KEY
from .fake_backend import Json, Sse, Text, chunk, completion, text_stream, usage_chunk


def client(gw, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, **kw)


def test_create_text(gateway, backend):
    r = client(gateway).chat.completions.create(
        model="my-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=20
    )
    assert r.choices[0].message.content == "Hello from the fake backend."
    assert r.model == "my-model" and r.usage.prompt_tokens == 12
    sent = backend.chat_requests[-1].body
    assert sent["model"] == "fake-model" and sent["messages"] == [{"role": "user", "content": "Hi"}]


def test_unknown_fields_pass_through(gateway, backend):
    client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi", "name": "bob"}],
        extra_body={"repetition_penalty": 1.1, "chat_template_kwargs": {"enable_thinking": False}},
    )  # fmt: skip
    sent = backend.chat_requests[-1].body
    assert sent["repetition_penalty"] == 1.1 and sent["messages"][0]["name"] == "bob"


def test_tool_calls_non_streaming(gateway, backend):
    backend.handler = lambda req: completion(
        None, tool_calls=[{"id": "call_1", "type": "function",
                           "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}],
        finish="tool_calls")  # fmt: skip
    r = client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )  # fmt: skip
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {
        "city": "Oslo"
    }


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_with_and_without_include_usage(gateway, backend, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], stream=True, **options
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake backend."
    usage_chunks = [c for c in chunks if not c.choices]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0].usage.completion_tokens == 5
    else:
        assert usage_chunks == [] and all(c.usage is None for c in chunks)
    assert all(c.model == "m" for c in chunks)
    # upstream, usage is always requested
    assert backend.chat_requests[-1].body["stream_options"]["include_usage"] is True


def test_stream_tool_call_arguments_are_joined_by_the_sdk(gateway, backend):
    args = '{"path": "/tmp/a.txt", "content": "hello"}'
    backend.handler = lambda req: Sse(
        [chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_w", "type": "function",
                                                     "function": {"name": "write", "arguments": ""}}]})]
        + [chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i:i + 5]}}]})
           for i in range(0, len(args), 5)]
        + [chunk({}, "tool_calls"), usage_chunk(10, 12)])  # fmt: skip
    with client(gateway).chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "write"}],
        tools=[{"type": "function", "function": {"name": "write", "parameters": {"type": "object"}}}],
    ) as stream:  # fmt: skip
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.id == "call_w" and json.loads(call.function.arguments) == json.loads(args)


def test_cut_stream_raises_in_the_sdk(gateway, backend):
    backend.handler = lambda req: Sse([chunk({"content": "par"})], done=False, cut=True)
    stream = client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        list(stream)


def test_empty_stream_is_an_error_not_silence(gateway, backend):
    backend.handler = lambda req: Sse([], done=False)
    r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    frames = [f for f in r.text.split("\n\n") if f.strip()]
    assert (
        len(frames) == 1 and json.loads(frames[0][len("data: ") :])["error"]["code"] == "api_error"
    )
    assert "[DONE]" not in r.text


def test_pings_are_comments(gateway, backend):
    from .fake_backend import Pause

    backend.handler = lambda req: Sse([Pause(2.3), chunk({"content": "x"}), chunk({}, "stop")])
    r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert r.text.startswith(": ping\n\n") and r.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    "setup, status, err_type",
    [
        (lambda b: None, 401, "invalid_request_error"),
        (lambda b: setattr(b, "handler", lambda req: Text("busy", 503)), 503, "server_error"),
        (lambda b: setattr(b, "handler", lambda req: Json({"error": {"message": "slow"}}, 429)), 429,
         "rate_limit_error"),
        (lambda b: setattr(b, "handler", lambda req: Json({"error": {"message": "bad tool"}}, 400)), 400,
         "invalid_request_error"),
    ],
)  # fmt: skip
def test_errors_have_openai_shape_and_status(gateway, backend, setup, status, err_type):
    setup(backend)
    key = "wrong" if status == 401 else KEY
    r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "m", "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == err_type


def test_validation_error_names_the_param(gateway):
    r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "m", "messages": "hi"})  # fmt: skip
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "messages" and "messages" in error["message"]
    with pytest.raises(openai.BadRequestError):
        client(gateway).chat.completions.create(model="m", messages=[])


def test_stream_from_llama_cpp_style_backend_without_usage(gateway, backend):
    backend.handler = lambda req: text_stream(["a", "b"], usage=None)
    chunks = list(client(gateway).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], stream=True,
        stream_options={"include_usage": True}))  # fmt: skip
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ab"


def test_client_disconnect_closes_upstream(gateway, backend):
    from .fake_backend import Pause

    items = [chunk({"content": "tick"}) if i % 2 == 0 else Pause(0.1) for i in range(200)]
    backend.handler = lambda req: Sse(items + [chunk({}, "stop")])
    r = requests.post(gateway.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "x"}]},
                      stream=True)  # fmt: skip
    next(r.iter_content(chunk_size=None))
    r.close()
    assert backend.wait_for_disconnect(5), "the backend never saw the disconnect"
