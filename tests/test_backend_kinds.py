"""Knowing the backend: kind detection, context windows, exact token counts,
max_tokens fitted to the context — against scripted fakes that follow vLLM's,
llama.cpp server's, llama-cpp-python's and Ollama's documented behaviour."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import fixture_names, load_fixture, post
from .fake_backend import Json, completion, text_stream


def fake_count(body: dict) -> int:
    """The fake tokenizer: deterministic, roughly 1 token per 4 bytes."""
    data = json.dumps([body.get("messages"), body.get("tools")], sort_keys=True)
    return len(data) // 4 + 3 * len(body.get("messages") or [])


class VllmLike:
    def __init__(self, context=32768, model="qwen-coder"):
        self.context, self.model = context, model
        self.tokenize_calls = 0
        self.lock = threading.Lock()

    def __call__(self, req):
        if req.path == "/v1/models":
            return Json({"object": "list", "data": [{"id": self.model, "object": "model",
                         "owned_by": "vllm", "max_model_len": self.context}]})  # fmt: skip
        if req.path == "/tokenize":
            with self.lock:
                self.tokenize_calls += 1
            n = fake_count(req.body)
            return Json({"count": n, "max_model_len": self.context, "tokens": [1] * n})
        if req.path.startswith("/v1/chat/completions"):
            prompt = fake_count(req.body)
            wanted = req.body.get("max_tokens") or 0
            if prompt + wanted > self.context:
                return Json({"object": "error", "type": "BadRequestError", "code": 400,
                             "message": f"This model's maximum context length is {self.context} tokens. "
                                        f"However, you requested {wanted} output tokens and your prompt "
                                        f"contains at least {prompt} input tokens, for a total of at "
                                        f"least {prompt + wanted} tokens."}, 400)  # fmt: skip
            if req.stream:
                return text_stream(["ok"], usage=(prompt, 1))
            return completion("ok", usage=(prompt, 1))
        return Json({"detail": "Not Found"}, 404)


class LlamaServerLike(VllmLike):
    def __call__(self, req):
        if req.path == "/v1/models":
            return Json({"object": "list", "data": [{"id": self.model, "owned_by": "llamacpp"}]})
        if req.path == "/props":
            return Json({"default_generation_settings": {"n_ctx": self.context}, "total_slots": 1})
        if req.path == "/apply-template":
            return Json({"prompt": json.dumps([req.body.get("messages"), req.body.get("tools")],
                                              sort_keys=True)})  # fmt: skip
        if req.path == "/tokenize":
            with self.lock:
                self.tokenize_calls += 1
            return Json({"tokens": [1] * (len(req.body["content"]) // 4)})
        if req.path.startswith("/v1/chat"):
            return super().__call__(req)
        return Json({"detail": "Not Found"}, 404)


class OllamaLike(VllmLike):
    def __call__(self, req):
        if req.path == "/v1/models":
            return Json({"object": "list", "data": [{"id": self.model, "owned_by": "library"}]})
        if req.path == "/api/version":
            return Json({"version": "0.12.0"})
        if req.path == "/api/show":
            return Json({"parameters": f"num_ctx {self.context}\nstop <|im_end|>",
                         "model_info": {"qwen2.context_length": 131072}})  # fmt: skip
        if req.path.startswith("/v1/chat"):
            return completion("ok", usage=(50, 1))
        return Json({}, 404)


def claude_code_body(name="text.1", **overrides):
    return {**load_fixture(name)["body"], "stream": False, **overrides}


def test_vllm_context_clamps_claude_codes_max_tokens(gateway_factory, backend):
    fake = VllmLike(context=32768, model="m-clamp")
    backend.handler = fake
    gw = gateway_factory(VLLM_MODEL="m-clamp")
    r = post(gw, claude_code_body())  # max_tokens 128000
    assert r.status_code == 200, r.text
    sent = backend.chat_requests[-1].body
    assert sent["max_tokens"] == 32768 - fake_count(sent) - 64
    assert fake.tokenize_calls == 1


def test_small_request_into_large_window_needs_no_count(gateway_factory, backend):
    fake = VllmLike(context=32768, model="m-small")
    backend.handler = fake
    gw = gateway_factory(VLLM_MODEL="m-small")
    r = post(
        gw, {"model": "x", "max_tokens": 1000, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 200
    assert backend.chat_requests[-1].body["max_tokens"] == 1000 and fake.tokenize_calls == 0


def test_prompt_that_cannot_fit_is_refused_with_anthropics_wording(gateway_factory, backend):
    backend.handler = VllmLike(context=4096, model="m-small-ctx")
    gw = gateway_factory(VLLM_MODEL="m-small-ctx")
    r = post(gw, claude_code_body())
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 4096 maximum")
    assert not backend.chat_requests  # refused before the backend was asked to generate
    # streaming: the same HTTP error, before any event
    r = post(gw, claude_code_body(stream=True))
    assert r.status_code == 400 and "prompt is too long" in r.json()["error"]["message"]


@pytest.mark.parametrize("name", fixture_names())
def test_count_tokens_equals_the_backends_own_count(gateway_factory, backend, name):
    fake = VllmLike(context=200000, model=f"m-count-{name}")
    backend.handler = fake
    gw = gateway_factory(VLLM_MODEL=f"m-count-{name}")
    body = {
        k: v for k, v in load_fixture(name)["body"].items() if k not in ("max_tokens", "stream")
    }
    r = post(gw, body, path="/v1/messages/count_tokens?beta=true")
    assert r.status_code == 200, r.text
    sent = [x for x in backend.requests if x.path == "/tokenize"][-1].body
    assert r.json()["input_tokens"] == fake_count(sent)
    assert sent["add_generation_prompt"] is True
    assert len(sent["tools"]) == len(body["tools"])  # tool definitions are counted
    # and the same number the backend reports as prompt_tokens for that request
    create = post(gw, dict(body, max_tokens=100))
    assert create.json()["usage"]["input_tokens"] == r.json()["input_tokens"]


def test_25_concurrent_count_tokens_share_one_backend_call(gateway_factory, backend):
    fake = VllmLike(context=200000, model="m-25")
    backend.handler = fake
    gw = gateway_factory(VLLM_MODEL="m-25")
    body = {
        k: v for k, v in load_fixture("text.1")["body"].items() if k not in ("max_tokens", "stream")
    }
    with ThreadPoolExecutor(25) as pool:
        results = list(
            pool.map(lambda _: post(gw, body, path="/v1/messages/count_tokens"), range(25))
        )
    assert {r.status_code for r in results} == {200}
    assert len({r.json()["input_tokens"] for r in results}) == 1
    assert fake.tokenize_calls == 1


def test_llama_cpp_server_props_and_template_tokenizer(gateway_factory, backend):
    fake = LlamaServerLike(context=8192, model="m-llama")
    backend.handler = fake
    gw = gateway_factory(VLLM_MODEL="m-llama")
    body = {
        k: v for k, v in load_fixture("text.1")["body"].items() if k not in ("max_tokens", "stream")
    }
    r = post(gw, body, path="/v1/messages/count_tokens")
    rendered = [x for x in backend.requests if x.path == "/apply-template"][-1].body
    expected = len(json.dumps([rendered["messages"], rendered["tools"]], sort_keys=True)) // 4
    assert r.json()["input_tokens"] == expected
    r = post(gw, claude_code_body())
    assert r.status_code == 400 and "> 8192 maximum" in r.json()["error"]["message"]


def test_ollama_num_ctx_is_the_context(gateway_factory, backend):
    backend.handler = OllamaLike(context=16384, model="m-ollama")
    gw = gateway_factory(VLLM_MODEL="m-ollama")
    r = post(gw, claude_code_body())
    assert r.status_code == 200
    sent = backend.chat_requests[-1].body
    # no tokenizer: an estimate, and the answer gets what is left of 16384
    assert 0 < sent["max_tokens"] < 16384


def test_configured_context_overrides_discovery(gateway_factory, backend):
    backend.handler = VllmLike(context=200000, model="m-conf")
    gw = gateway_factory(VLLM_MODEL="m-conf", VLLM_CONTEXT="20000")
    assert post(gw, claude_code_body()).status_code == 200
    assert backend.chat_requests[-1].body["max_tokens"] < 20000


def test_unknown_window_is_learned_from_the_backends_error_and_retried(gateway_factory, backend):
    # a plain OpenAI-style server that reports its window only in errors
    fake = VllmLike(context=30000, model="m-learn")

    def handler(req):
        if req.path == "/v1/models":
            return Json({"object": "list", "data": [{"id": "m-learn"}]})
        if req.path.startswith("/v1/chat"):
            return fake(req)
        return Json({"detail": "Not Found"}, 404)

    backend.handler = handler
    gw = gateway_factory(VLLM_MODEL="m-learn", VLLM_KIND="openai")
    r = post(gw, claude_code_body())
    assert r.status_code == 200, r.text
    first, second = backend.chat_requests[-2:]
    assert first.body["max_tokens"] == 128000
    assert second.body["max_tokens"] == 30000 - fake_count(second.body) - 64
    # learned: the next request is fitted before it is sent
    post(gw, claude_code_body())
    assert backend.chat_requests[-1].body["max_tokens"] < 30000
    assert len(backend.chat_requests) == 3


def test_fit_policy_exact_and_estimated():
    from toktoken.errors import PromptTooLong
    from toktoken.tokens import TokenCount, fit_max_tokens

    exact, est = TokenCount(10000, True), TokenCount(10000, False)
    assert fit_max_tokens(128000, exact, 32768, 64) == 32768 - 10000 - 64
    assert fit_max_tokens(1000, exact, 32768, 64) == 1000
    with pytest.raises(PromptTooLong, match="prompt is too long: 10000 tokens > 8192 maximum"):
        fit_max_tokens(100, exact, 8192, 64)
    # an estimate shrinks the answer only while it leaves real room...
    assert fit_max_tokens(128000, est, 32768, 64) == 32768 - 10000 - 64
    # ...and otherwise never refuses, only caps at the window
    assert fit_max_tokens(128000, est, 8192, 64) == 8192
    assert fit_max_tokens(128000, None, None, 64) == 128000
