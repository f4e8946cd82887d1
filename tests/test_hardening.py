"""Hostile and broken input: a 4xx in the route's shape, decided before any
backend call, recorded in the ledger with its status — never a 5xx."""

from __future__ import annotations

import json
import socket

import pytest

from .conftest import KEY, post
from .fake_backend import Json

DEEP = "[" * 3000 + "]" * 3000


def anthropic(**fields) -> dict:
    return {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def openai(**fields) -> dict:
    return {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], **fields}


ANTHROPIC_CASES = [
    ("/v1/messages", anthropic(stream=1), "stream"),
    ("/v1/messages", anthropic(stream="true"), "stream"),
    ("/v1/messages", anthropic(system=[{"type": "text"}]), "system.0.text"),
    ("/v1/messages", anthropic(system=[{"type": True, "text": "x"}]), "system.0.type"),
    ("/v1/messages", anthropic(system=[{"type": 3, "text": "x"}]), "system.0.type"),
    ("/v1/messages", anthropic(thinking={"budget_tokens": 2000}), "thinking.type"),
    ("/v1/messages", anthropic(tool_choice={"name": "Bash"}), "tool_choice.type"),
    ("/v1/messages", anthropic(tool_choice={"type": "tool"}), "tool_choice.name"),
    ("/v1/messages", anthropic(messages=[]), "messages"),
    ("/v1/messages/count_tokens", {"model": "m", "messages": []}, "messages"),
    ("/v1/messages", anthropic(temperature={"value": 1}), "temperature"),
    ("/v1/messages", anthropic(temperature="0.5"), "temperature"),
    ("/v1/messages", anthropic(max_tokens=True), "max_tokens"),
    ("/v1/messages", anthropic(top_k=1.5), "top_k"),
    ("/v1/messages", anthropic(tools=[{"name": "f", "input_schema": "object"}]), "tools.0.input_schema"),
    ("/v1/messages", DEEP, "nested more than 1024 levels"),
    ("/v1/messages/count_tokens", DEEP, "nested more than 1024 levels"),
]  # fmt: skip
OPENAI_CASES = [
    ("/v1/chat/completions", openai(stream=1), "stream"),
    ("/v1/chat/completions", openai(temperature={"value": 1}), "temperature"),
    ("/v1/chat/completions", openai(temperature="hot"), "temperature"),
    ("/v1/chat/completions", openai(max_tokens=True), "max_tokens"),
    ("/v1/chat/completions", openai(messages=[]), "messages"),
    ("/v1/chat/completions", openai(stop=[1]), "stop"),
    ("/v1/chat/completions", DEEP, "nested more than 1024 levels"),
]  # fmt: skip


@pytest.fixture
def ledger_client(app_factory, tmp_path):
    client = app_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(tmp_path / "usage.db"))
    recorder = client.application.extensions["toktoken"].recorder
    return client, recorder


def _statuses(recorder) -> list[int]:
    recorder.flush()
    rows = recorder.store._execute("SELECT status FROM usage ORDER BY id").fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    "path, payload, named", ANTHROPIC_CASES + OPENAI_CASES, ids=lambda v: str(v)[:40]
)
def test_refused_with_400_in_the_routes_shape_naming_the_field(
    ledger_client, backend, path, payload, named
):
    client, recorder = ledger_client
    r = post(client, payload, path=path)
    assert r.status_code == 400, r.text
    if path.startswith("/v1/chat/"):
        err = r.json()["error"]  # OpenAI's shape
    else:
        assert r.json()["type"] == "error"
        err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and named in err["message"], err

    def discovery(q) -> bool:  # capability discovery may run in the background meanwhile
        return q.method == "GET" or (q.path, q.body) == ("/extras/tokenize/count", {"input": "a"})

    assert not [q for q in backend.requests if not discovery(q)]  # no backend call
    if path != "/v1/messages/count_tokens":  # count_tokens makes no usage record
        assert _statuses(recorder) == [400]


def test_lone_surrogates_are_replaced_not_a_5xx(ledger_client, backend):
    client, recorder = ledger_client
    raw = ('{"model": "claude-\\ud800", "max_tokens": 10,'
           ' "messages": [{"role": "user", "content": "a\\ud83d"}]}')  # fmt: skip
    r = post(client, raw)
    assert r.status_code == 200, r.text
    assert backend.chat_requests[-1].body["messages"][-1]["content"] == "a\ufffd"
    assert r.json()["model"] == "claude-\ufffd"
    assert _statuses(recorder) == [200]


def test_openai_route_overflow_speaks_openai(app_factory, backend):
    client = app_factory(VLLM_KIND="openai")
    backend.handler = lambda req: Json({"error": {"message": "This model's maximum context length is 4096 "
                                                              "tokens. However, your request has 5000 input tokens.",
                                                   "type": "BadRequestError", "code": 400}}, 400)  # fmt: skip
    for stream in (False, True):
        r = post(client, openai(stream=stream, max_tokens=10), path="/v1/chat/completions")
        assert r.status_code == 400
        assert r.json() == {"error": {
            "message": "This model's maximum context length is 4096 tokens. However, your messages "
                       "resulted in 5000 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}  # fmt: skip
    # the Anthropic routes keep Anthropic's wording (Claude Code parses it)
    r = post(client, anthropic())
    assert r.json()["error"]["message"] == "prompt is too long: 5000 tokens > 4096 maximum"


# Errors gunicorn answers itself ------------------------------------------------------------


def _raw(gateway, data: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
        conn.sendall(data)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    "path, dialect", [("/v1/messages", "anthropic"), ("/v1/chat/completions", "openai")]
)
def test_gunicorn_level_errors_are_json_in_the_routes_shape(gateway, path, dialect):
    big_header = f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 40000}\r\n\r\n".encode()
    bad_length = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".encode()
    for request, status in [(big_header, 431), (bad_length, 400)]:
        code, headers, body = _raw(gateway, request)
        assert code == status and headers["Content-Type"] == "application/json", body[:300]
        data = json.loads(body)
        if dialect == "openai":
            assert data["error"]["type"] == "invalid_request_error" and data["error"]["message"]
        else:
            assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    # a request line over the limit has no path gunicorn could read: Anthropic's shape
    code, headers, body = _raw(gateway, f"GET /{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert code == 414 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["type"] == "invalid_request_error"


def test_no_key_needed_for_the_error_shape(gateway):
    code, _, body = _raw(
        gateway, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
    )
    assert code == 400 and json.loads(body)["type"] == "error"
    assert KEY not in body.decode()
