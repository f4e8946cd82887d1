"""Named backend quirks: Mistral-family tool ids and turn order."""

from __future__ import annotations

import re

import pytest

from toktoken.config import BackendSettings, ConfigError, Settings
from toktoken.config.model import implied_quirks
from toktoken.convert import to_openai_request
from toktoken.convert.quirks import apply_quirks, mistral_tool_id

from .conftest import load_fixture, post


@pytest.mark.parametrize("model", ["mistral-small-3.2", "Devstral-Small-2507", "mixtral-8x7b",
                                   "mistralai/Magistral-Small"])  # fmt: skip
def test_mistral_family_is_detected_by_name(model):
    assert implied_quirks(model) == ("mistral",)
    assert BackendSettings("b", "http://x", None, model).quirks == ("mistral",)


def test_other_models_have_no_quirks_unless_configured():
    assert implied_quirks("qwen3-coder") == ()
    assert implied_quirks("my-finetune", ("mistral",)) == ("mistral",)
    assert Settings.from_env({"VLLM_QUIRKS": "mistral"}).backend.quirks == ("mistral",)
    with pytest.raises(ConfigError, match="VLLM_QUIRKS"):
        Settings.from_env({"VLLM_QUIRKS": "gemma"})


def test_mistral_ids_are_9_alphanumerics_and_deterministic():
    for original in ["toolu_BXIFk7uUUM7hkB63HuOK9YSj", "call_1", "x", "chatcmpl-tool-1a2b"]:
        mapped = mistral_tool_id(original)
        assert re.fullmatch(r"[A-Za-z0-9]{9}", mapped)
        assert mistral_tool_id(original) == mapped  # same input, same id
        assert mistral_tool_id(mapped) == mapped  # the backend's own ids survive the echo
    assert mistral_tool_id("call_1") != mistral_tool_id("call_2")


def test_mistral_tool_use_and_result_still_match():
    body = load_fixture("tool-bash.2")["body"]
    out = apply_quirks(to_openai_request(body, "devstral"), ("mistral",))
    call = [m for m in out["messages"] if m.get("tool_calls")][0]["tool_calls"][0]
    result = [m for m in out["messages"] if m["role"] == "tool"][0]
    assert re.fullmatch(r"[A-Za-z0-9]{9}", call["id"]) and result["tool_call_id"] == call["id"]


def test_mistral_conversation_never_ends_on_assistant():
    req = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "user", "content": "Write a haiku"}, {"role": "assistant", "content": "Autumn"}]}  # fmt: skip
    out = apply_quirks(to_openai_request(req, "m"), ("mistral",))
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    req["messages"][-1]["content"] = ""
    out = apply_quirks(to_openai_request(req, "m"), ("mistral",))
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_mistral_backend_over_http(gateway_factory, backend):
    gw = gateway_factory(VLLM_MODEL="devstral-small-2507")
    body = dict(load_fixture("tool-bash.2")["body"], stream=False)
    assert post(gw, body).status_code == 200
    sent = backend.chat_requests[-1].body["messages"]
    call_id = [m for m in sent if m.get("tool_calls")][0]["tool_calls"][0]["id"]
    assert re.fullmatch(r"[A-Za-z0-9]{9}", call_id)
    assert [m for m in sent if m["role"] == "tool"][0]["tool_call_id"] == call_id
