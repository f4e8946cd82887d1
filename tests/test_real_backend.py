"""The real-model tier: the gateway in front of llama.cpp's own server
(llama-server, built portably, serving Gemma 3 270M on the CPU with a 32k
window). The model is a base model: its text is nonsense, so these tests
assert on protocol, shape and the server's own counts, never on content."""

from __future__ import annotations

import anthropic
import pytest
import requests

from .anthropic_grammar import validate
from .claude_cli import run_claude
from .claude_sessions import claude_code_session
from .conftest import KEY, REAL_BACKEND_CONTEXT, post

pytestmark = pytest.mark.real_backend

MODEL = "gemma-3-270m"
# About 36k tokens: more than the server's 32k window.
LONG_PROMPT = "Please repeat these words back to me: " + "apple banana cherry " * 12000


@pytest.fixture(scope="module")
def real_gateway(gateway_factory, real_backend, tmp_path_factory):
    # Everything is discovered: kind, window (/props), tokenizer (/apply-template + /tokenize).
    ledger = tmp_path_factory.mktemp("real-ledger") / "usage.db"
    return gateway_factory(VLLM_URL=real_backend, VLLM_MODEL=MODEL, TELEMETRY_ENABLED="true",
                           TELEMETRY_DB=str(ledger))  # fmt: skip


def client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


def test_capabilities_are_discovered(real_gateway):
    health = requests.get(real_gateway.url + "/health", headers={"x-api-key": KEY}).json()
    caps = health["backends"][0]["capabilities"]
    assert caps["kind"] == "llamacpp" and caps["tokenizer"] == "llamacpp-template"
    assert caps["context"] == REAL_BACKEND_CONTEXT and caps["context_source"] == "discovered"
    models = requests.get(real_gateway.url + "/v1/models",
                          headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}).json()  # fmt: skip
    entry = next(m for m in models["data"] if m["id"] == MODEL)
    assert entry["max_input_tokens"] == REAL_BACKEND_CONTEXT


def test_text_non_streaming(real_gateway):
    msg = client(real_gateway).messages.create(
        model="claude-sonnet-5-5", max_tokens=12, messages=[{"role": "user", "content": "Hello!"}]
    )
    assert msg.model == "claude-sonnet-5-5"
    assert msg.content and msg.content[0].type == "text"
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens + msg.usage.cache_read_input_tokens > 0
    assert 0 < msg.usage.output_tokens <= 12


def test_streaming_usage_is_the_servers_own(real_gateway):
    with client(real_gateway).messages.stream(
        model="m", max_tokens=8, messages=[{"role": "user", "content": "Tell me a story."}]
    ) as stream:
        final = stream.get_final_message()
    assert 0 < final.usage.output_tokens <= 8 and final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens > 0


def test_tools_streamed_keep_the_event_grammar(real_gateway):
    # This server leaves tool calls in the text for a template without tool
    # support; whatever it sends, the stream stays valid and tool input parses.
    r = post(real_gateway, {
        "model": "m", "max_tokens": 40, "stream": True,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [{"name": "get_weather", "description": "Weather for a city",
                   "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                    "required": ["city"]}}],
        "tool_choice": {"type": "auto"},
    })  # fmt: skip
    t = validate(r.content)
    assert t.stop_reason in ("end_turn", "max_tokens", "tool_use")
    for block in t.blocks:
        if block["type"] == "tool_use":
            assert block["name"] == "get_weather" and isinstance(block["input"], dict)


def _overflow(gw, stream: bool) -> str:
    r = post(gw, {"model": "m", "max_tokens": 10, "stream": stream,
                  "messages": [{"role": "user", "content": LONG_PROMPT}]}, timeout=120)  # fmt: skip
    assert r.status_code == 400, r.text[:300]
    assert r.json()["error"]["type"] == "invalid_request_error"
    return r.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_is_prompt_too_long(real_gateway, gateway_factory, real_backend, stream):
    # the gateway's own exact count refuses it before the backend sees it ...
    message = _overflow(real_gateway, stream)
    assert message.startswith("prompt is too long: ")
    assert message.endswith(f" tokens > {REAL_BACKEND_CONTEXT} maximum")
    # ... and without a count, the server's own overflow error says the same
    estimating = gateway_factory(
        VLLM_URL=real_backend, VLLM_MODEL=MODEL, VLLM_COUNT_TOKENS="estimate"
    )
    assert _overflow(estimating, stream) == message


def test_count_tokens_equals_the_servers_own_count(real_gateway):
    body = {"model": "m", "system": "Be brief.",
            "messages": [{"role": "user", "content": "How many tokens is this?"}]}  # fmt: skip
    counted = post(real_gateway, body, path="/v1/messages/count_tokens").json()["input_tokens"]
    msg = client(real_gateway).messages.create(max_tokens=1, **body)
    assert counted == msg.usage.input_tokens + msg.usage.cache_read_input_tokens > 0


# The prefix cache across a Claude Code session -----------------------------------------


def _session(turns: int, *, busting: bool) -> list[dict]:
    """A Claude-Code-shaped session with its Bash and Read tools (smaller
    prompts, shorter prefill); ``busting``: the control."""
    return claude_code_session(
        turns, tools=("Bash", "Read"), busting=busting, model="m", max_tokens=4, stream=False
    )


def _run_session(gw, bodies: list[dict], session: str) -> list[dict]:
    usages = []
    for body in bodies:
        r = post(gw, body, headers={"X-Claude-Code-Session-Id": session}, timeout=300)
        assert r.status_code == 200, r.text[:300]
        usages.append(r.json()["usage"])
    return usages


def _reuse(usages: list[dict]) -> list[float]:
    """Per turn after the first: tokens the server reused from its cache, as
    a share of the whole previous prompt (the server's own counts)."""
    prompts = [u["input_tokens"] + u["cache_read_input_tokens"] for u in usages]
    return [u["cache_read_input_tokens"] / prompts[i] for i, u in enumerate(usages[1:])]


def test_a_session_keeps_the_servers_prefix_cache(real_gateway):
    kept = _reuse(_run_session(real_gateway, _session(3, busting=False), "sess-kept"))
    busted = _reuse(_run_session(real_gateway, _session(3, busting=True), "sess-busted"))
    assert all(share >= 0.95 for share in kept), kept
    # the control: the same session with a changing line at the front reuses far less
    assert all(share < 0.5 for share in busted), busted
    # the gateway's own measure agrees, per session, in /stats
    stats = requests.get(real_gateway.url + "/stats?group_by=session", headers={"x-api-key": KEY})
    rows = {g["key"]: g for g in stats.json()["groups"]}
    assert rows["sess-kept"]["avg_prefix_reuse"] > 0.95 > rows["sess-busted"]["avg_prefix_reuse"]
    assert rows["sess-kept"]["cache_read_tokens"] > rows["sess-busted"]["cache_read_tokens"]


def test_claude_code_answers_through_the_real_model(real_gateway, tmp_path):
    """Every response Claude Code gets is a valid, complete stream. Whether the
    base model ends its turn within the output budget is up to the model:
    when it does not, Claude Code reports its output limit, which is the
    correct reaction to a correct max_tokens stop — not a gateway failure."""
    before = real_gateway.log().count("toktoken.request")
    result = run_claude(real_gateway, "say hello", tmp_path, tmp_path / "home",
                        env={"CLAUDE_CODE_MAX_OUTPUT_TOKENS": "48"}, timeout=600)  # fmt: skip
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
