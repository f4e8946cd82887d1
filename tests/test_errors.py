"""One test per row of the error table: status, Anthropic shape, retry hint.

In-process (``client``): none of this needs a server; the SDK's retry
behaviour is checked against the real gateway."""

from __future__ import annotations

import re
import time

import anthropic
import pytest

from .conftest import KEY, get, post
from .fake_backend import Json, Text


def body(**fields):
    return {"model": "claude-x", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}], **fields}  # fmt: skip


def assert_error(r, status, err_type, *, retry=False, contains=None):
    assert r.status_code == status, r.text
    data = r.json()
    assert data["type"] == "error"
    assert data["error"]["type"] == err_type
    assert data["request_id"] == r.headers["request-id"]
    assert r.headers["x-should-retry"] == ("true" if retry else "false")
    assert "Traceback" not in r.text
    if contains:
        assert contains in data["error"]["message"], data["error"]["message"]
    return data


@pytest.mark.parametrize(
    "payload, field",
    [
        ("{not json", "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "JSON object"),
        ({"max_tokens": 10, "messages": []}, "model"),
        ({"model": "m", "messages": []}, "max_tokens"),
        ({"model": "m", "max_tokens": 10}, "messages"),
        (body(max_tokens="10"), "max_tokens"),
        (body(max_tokens=0), "max_tokens"),
        (body(messages="hi"), "messages"),
        (body(messages=[{"role": "user"}]), "messages.0.content"),
        (body(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
        (body(messages=[{"role": "user", "content": [{"text": "no type"}]}]), "messages.0.content.0"),
        (body(messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "x"}]}]),
         "messages.0.content.0: name"),
        (body(stream="yes"), "stream"),
        (body(tools=[{"description": "no name"}]), "tools.0.name"),
    ],
)  # fmt: skip
def test_invalid_request_is_400_naming_the_field(client, backend, payload, field):
    assert_error(post(client, payload), 400, "invalid_request_error", contains=field)
    assert not backend.chat_requests  # decided before any backend call


def test_missing_key_is_401(client):
    r = post(client, body(), headers={"x-api-key": ""})
    assert_error(r, 401, "authentication_error", contains="missing API key")


def test_wrong_key_is_401_both_header_styles(client):
    assert_error(post(client, body(), headers={"x-api-key": "nope"}), 401, "authentication_error")
    r = post(client, body(), headers={"x-api-key": "", "Authorization": "Bearer nope"})
    assert_error(r, 401, "authentication_error", contains="invalid API key")


def test_unknown_route_is_404(client):
    assert_error(post(client, body(), path="/v1/nothing"), 404, "not_found_error")
    assert_error(get(client, "/nope"), 404, "not_found_error")


def test_body_over_limit_is_413(app_factory):
    big = body(messages=[{"role": "user", "content": "x" * 5000}])
    r = post(app_factory(MAX_REQUEST_BYTES="2048"), big)
    assert_error(r, 413, "request_too_large", contains="2048")


def test_backend_4xx_is_400_with_backends_message(client, backend):
    msg = "'tool_choice' must be one of auto, none, required"
    backend.handler = lambda req: Json(
        {"error": {"message": msg, "type": "invalid_request_error"}}, 400
    )
    assert_error(post(client, body()), 400, "invalid_request_error", contains=msg)


# Claude Code compacts on exactly this wording, reading both numbers:
# /prompt is too long[^0-9]*(\d+)\s*tokens?\s*>\s*(\d+)/i (docs/claude-code.md). Never change it.
CLAUDE_CODE_OVERFLOW = re.compile(r"prompt is too long[^0-9]*(\d+)\s*tokens?\s*>\s*(\d+)", re.I)

OVERFLOW_WORDINGS = {
    "openai": ({"error": {"message": "This model's maximum context length is 2048 tokens. However, you "
                                     "requested 3034 tokens (3024 in the messages, 10 in the completion).",
                          "type": "invalid_request_error", "code": "context_length_exceeded"}}, (3024, 2048)),
    "llama.cpp": ({"error": {"code": 400, "message": "request (5000 tokens) exceeds the available context "
                             "size (4096 tokens), try increasing it", "type": "exceed_context_size_error",
                             "n_prompt_tokens": 5000, "n_ctx": 4096}}, (5000, 4096)),
    "vllm": ({"object": "error", "message": "This model's maximum context length is 32768 tokens. However, "
              "your request has 40000 input tokens. Please reduce the length of the input messages.",
              "type": "BadRequestError", "code": 400}, (40000, 32768)),
}  # fmt: skip


def _assert_overflow_wording(r, numbers):
    data = assert_error(r, 400, "invalid_request_error")
    message = data["error"]["message"]
    assert message == f"prompt is too long: {numbers[0]} tokens > {numbers[1]} maximum"
    assert CLAUDE_CODE_OVERFLOW.search(message).groups() == tuple(map(str, numbers))


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("wording", sorted(OVERFLOW_WORDINGS))
def test_backend_context_overflow_speaks_anthropics_exact_words(
    app_factory, backend, wording, stream
):
    error_body, numbers = OVERFLOW_WORDINGS[wording]
    client = app_factory(VLLM_KIND="openai")
    backend.handler = lambda req: Json(error_body, 400)
    _assert_overflow_wording(post(client, body(stream=stream)), numbers)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_the_gateways_own_count_speaks_anthropics_exact_words(app_factory, backend, stream):
    """An exact count (vLLM /tokenize) that alone overflows the window: refused
    before the backend sees the request."""

    def handler(req):
        if req.path.endswith("/models"):
            return Json({"data": [{"id": "fake-model", "max_model_len": 4096}]})
        if req.path == "/tokenize":
            return Json({"count": 5000, "max_model_len": 4096})
        raise AssertionError("the request reached the backend")

    backend.handler = handler
    client = app_factory(VLLM_MODEL="counting-model")
    long = [{"role": "user", "content": "word " * 1000}]  # big enough to need a count
    _assert_overflow_wording(post(client, body(stream=stream, messages=long)), (5000, 4096))
    assert not backend.chat_requests


def test_backend_422_detail_is_400(client, backend):
    backend.handler = lambda req: Json({"detail": [{"msg": "field required"}]}, 422)
    assert_error(post(client, body()), 400, "invalid_request_error", contains="field required")


def test_backend_429_is_429_and_retryable(client, backend):
    backend.handler = lambda req: Json({"error": {"message": "slow down"}}, 429)
    assert_error(post(client, body()), 429, "rate_limit_error", retry=True, contains="slow down")


def test_backend_503_is_529_overloaded(client, backend):
    backend.handler = lambda req: Text("Service Unavailable", 503)
    assert_error(post(client, body()), 529, "overloaded_error", retry=True)


def test_backend_500_is_502_api_error_without_retry(client, backend):
    backend.handler = lambda req: Text("Internal Server Error: pydantic says no", 500)
    assert_error(post(client, body()), 502, "api_error", contains="pydantic says no")


def test_backend_unreachable_names_the_url(app_factory):
    client = app_factory(VLLM_URL="http://127.0.0.1:9")
    assert_error(post(client, body()), 502, "api_error", contains="http://127.0.0.1:9")
    r = post(client, body(stream=True))
    assert_error(r, 502, "api_error", contains="unreachable (connection refused)")


def test_backend_timeout_is_504(app_factory, backend):
    client = app_factory(BACKEND_READ_TIMEOUT="0.5")
    backend.handler = lambda req: (time.sleep(1.5), Json({}))[1]
    assert_error(post(client, body()), 504, "api_error", contains="did not answer within 0.5s")


def test_streaming_errors_before_first_byte_are_http_errors(client, backend):
    backend.handler = lambda req: Json({"error": {"message": "slow down"}}, 429)
    r = post(client, body(stream=True))
    assert r.headers["content-type"].startswith("application/json")
    assert_error(r, 429, "rate_limit_error", retry=True)


def test_sdk_does_not_retry_errors_that_will_not_clear(gateway, backend):
    backend.handler = lambda req: Text("boom", 500)
    client = anthropic.Anthropic(base_url=gateway.url, api_key=KEY)  # default: 2 retries
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    assert len(backend.chat_requests) == 1  # x-should-retry: false was honoured


def test_method_not_allowed_is_clean(client):
    r = get(client, "/v1/messages", headers={"x-api-key": KEY})
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
