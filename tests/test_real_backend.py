"""The real-model tier: the gateway in front of a real llama.cpp-based server
(llama-cpp-python + Gemma 3 270M, CPU). The model is a base model: its text is
nonsense, so these tests assert on protocol and shape, never on content."""

from __future__ import annotations

import anthropic
import pytest
import requests

from .anthropic_grammar import validate
from .claude_cli import run_claude
from .conftest import KEY, post

pytestmark = pytest.mark.real_backend

MODEL = "gemma-3-270m"
LONG_PROMPT = "Please repeat these words back to me: " + "apple banana cherry " * 1000


@pytest.fixture(scope="module")
def real_gateway(gateway_factory, real_backend):
    # llama-cpp-python reports its context window nowhere: configure it
    return gateway_factory(VLLM_URL=real_backend, VLLM_MODEL=MODEL, VLLM_CONTEXT="2048")


@pytest.fixture(scope="module")
def unconfigured_gateway(gateway_factory, real_backend):
    return gateway_factory(VLLM_URL=real_backend, VLLM_MODEL=MODEL)


def client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


def test_capabilities_are_discovered(real_gateway):
    caps = requests.get(real_gateway.url + "/health").json()["backends"][0]["capabilities"]
    assert caps["kind"] == "llamacpp" and caps["tokenizer"] == "llamacpp-python-text"
    assert caps["context"] == 2048 and caps["context_source"] == "configured"
    assert MODEL in caps["models"]


def test_text_non_streaming(real_gateway):
    msg = client(real_gateway).messages.create(
        model="claude-sonnet-5-5", max_tokens=12, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert msg.model == "claude-sonnet-5-5"
    assert msg.content and msg.content[0].type == "text"
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and 0 < msg.usage.output_tokens <= 12


def test_streaming_usage_is_counted_though_the_server_sends_none(real_gateway):
    r = post(real_gateway, {"model": "m", "max_tokens": 12, "stream": True,
                            "messages": [{"role": "user", "content": "Tell me a story."}]})  # fmt: skip
    t = validate(r.content)
    assert t.blocks and t.blocks[0]["type"] == "text"
    assert 0 < t.usage["output_tokens"] <= 12
    with client(real_gateway).messages.stream(
        model="m", max_tokens=8, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens > 0 and final.stop_reason in ("end_turn", "max_tokens")


def test_named_tool_call_streamed(real_gateway):
    r = post(real_gateway, {
        "model": "m", "max_tokens": 60, "stream": True,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    })  # fmt: skip
    t = validate(r.content)  # tool input parses at block stop, whatever the model wrote
    tools = [b for b in t.blocks if b["type"] == "tool_use"]
    assert tools and tools[0]["name"] == "get_weather" and isinstance(tools[0]["input"], dict)
    assert t.stop_reason in ("tool_use", "max_tokens", "model_context_window_exceeded")


def test_context_overflow_is_prompt_too_long(unconfigured_gateway):
    r = post(unconfigured_gateway, {"model": "m", "max_tokens": 10,
                                    "messages": [{"role": "user", "content": LONG_PROMPT}]})  # fmt: skip
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith("> 2048 maximum")


def test_overflowing_stream_gets_empty_200_and_ends_in_error_event(unconfigured_gateway):
    # llama-cpp-python answers a streamed prompt longer than its context with
    # HTTP 200 and an empty body: that must not look like a silent success.
    r = post(unconfigured_gateway, {"model": "m", "max_tokens": 10, "stream": True,
                                    "messages": [{"role": "user", "content": LONG_PROMPT}]})  # fmt: skip
    t = validate(r.content)
    assert t.error is not None and t.error["type"] == "api_error"


def test_count_tokens_equals_the_servers_own_count(gateway_factory, real_backend):
    gw = gateway_factory(VLLM_URL=real_backend, VLLM_MODEL=MODEL, VLLM_COUNT_TOKENS="probe")
    body = {"model": "m", "system": "Be brief.",
            "messages": [{"role": "user", "content": "How many tokens is this?"}]}  # fmt: skip
    counted = post(gw, body, path="/v1/messages/count_tokens").json()["input_tokens"]
    msg = client(gw).messages.create(max_tokens=1, **body)
    assert counted == msg.usage.input_tokens > 0


def test_claude_code_answers_through_the_real_model(real_gateway, tmp_path):
    """Every response Claude Code gets is a valid, complete stream. Whether the
    base model ends its turn within the output budget is up to the model:
    when it does not, Claude Code reports its output limit, which is the
    correct reaction to a correct max_tokens stop — not a gateway failure."""
    before = real_gateway.log().count("toktoken.request")
    result = run_claude(real_gateway, "say hello", tmp_path, tmp_path / "home",
                        env={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "48"})  # fmt: skip
    summary = {k: result.get(k) for k in ("is_error", "result", "terminal_reason", "stop_reason",
                                          "api_error_status", "num_turns", "_exit")}  # fmt: skip
    assert result.get("api_error_status") is None, summary
    if result["is_error"]:
        assert "48 output token maximum" in result["result"], summary
    else:
        assert result["_exit"] == 0 and isinstance(result["result"], str), summary
    lines = real_gateway.log().split("\n")
    ours = [x for x in lines if "toktoken.request" in x][before:]
    assert ours and all("stream=true" in x and "outcome=ok" in x for x in ours), ours
