"""Named keys, per-key limits and model access (config/keys.py, auth.py,
access.py): the configuration, the answers with the real SDKs over HTTP,
limits shared through a real redis-server by two instances of two workers,
and the keys themselves never showing anywhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from toktoken.config import ConfigError, Settings, key_digest

from .conftest import ROOT, GatewayProcess, free_port
from .fake_backend import Pause, Sse, chunk, completion, usage_chunk

ALICE, BOB, CAROL, ADMIN = "sk-alice-7f3e9a", "sk-bob-81c2d4", "sk-carol-55e0b1", "sk-admin-c0ffee"


def config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "toktoken.toml"
    path.write_text(body)
    return path


TEAM = f"""
[limits]
requests_per_minute = 1000

[keys.admin]
sha256 = "{key_digest(ADMIN)}"
admin = true

[keys.alice]
sha256 = "{key_digest(ALICE)}"
models = ["*haiku*", "qwen3-coder*"]

[keys.bob]
key_env = "BOB_KEY"
requests_per_minute = 3

[keys.carol]
sha256 = "{key_digest(CAROL)}"
tokens_per_hour = 1000
concurrent_streams = 1
"""


@pytest.fixture
def team(tmp_path, backend):
    """A gateway with the team's keys only (no API_KEY), telemetry on."""
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "BOB_KEY": BOB,
           "TOKTOKEN_CONFIG": str(config(tmp_path, TEAM)), "TELEMETRY_ENABLED": "true",
           "TELEMETRY_DB": str(tmp_path / "usage.db"), "TELEMETRY_FLUSH_INTERVAL": "0.2"}  # fmt: skip
    gw = GatewayProcess(env, tmp_path / "team.log")
    yield gw
    gw.stop()


def ask(gw, key: str, *, model="claude-haiku-4", stream=False, path="/v1/messages", **extra):
    body = {"model": model, "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}], **extra}  # fmt: skip
    return requests.post(gw.url + path, json=body, headers={"x-api-key": key}, timeout=30,
                         stream=stream)  # fmt: skip


def stats(gw, key: str, **params) -> dict:
    return requests.get(gw.url + "/stats", params=params, headers={"x-api-key": key},
                        timeout=10).json()  # fmt: skip


# Configuration ------------------------------------------------------------------------


def test_keys_by_hash_and_by_environment(tmp_path):
    s = Settings.from_env({"TOKTOKEN_CONFIG": str(config(tmp_path, TEAM)), "BOB_KEY": BOB})
    names = {k.name: k for k in s.keys}
    assert set(names) == {"admin", "alice", "bob", "carol"}  # no default key without API_KEY
    assert names["bob"].sha256 == key_digest(BOB) and names["admin"].admin
    assert names["bob"].limits.requests_per_minute == 3
    assert names["alice"].limits.requests_per_minute == 1000  # the [limits] default
    assert names["carol"].limits.tokens_per_hour == 1000
    both = Settings.from_env({"TOKTOKEN_CONFIG": str(config(tmp_path, TEAM)), "BOB_KEY": BOB,
                              "API_KEY": "k1,k2"})  # fmt: skip
    assert [k.name for k in both.keys][:2] == ["key-1", "key-2"] and both.keys[0].admin
    assert both.keys[0].limits.requests_per_minute == 1000  # defaults hold for every key
    alone = Settings.from_env({"API_KEY": "one,two"})
    assert [(k.name, k.sha256) for k in alone.keys] == [
        ("key-1", key_digest("one")),
        ("key-2", key_digest("two")),
    ]


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('[keys.x]\nadmin = true', "keys.x"),
        ('[keys.x]\nsha256 = "abc"', "keys.x.sha256"),
        (f'[keys.x]\nsha256 = "{key_digest("a")}"\nkey_env = "A"', "keys.x"),
        ('[keys.x]\nkey_env = "NOT_SET_ANYWHERE"', "keys.x.key_env"),
        (f'[keys.x]\nsha256 = "{key_digest("a")}"\nmodels = "all"', "keys.x.models"),
        (f'[keys.x]\nsha256 = "{key_digest("a")}"\ntokens_per_day = -5', "keys.x.tokens_per_day"),
        (f'[keys.x]\nsha256 = "{key_digest("a")}"\nrate = 5', "keys.x.rate"),
        (f'[keys.x]\nsha256 = "{key_digest("a")}"\n[keys.y]\nsha256 = "{key_digest("a")}"',
         "keys.y"),
        ("[limits]\nrequests_per_minute = 0", "limits.requests_per_minute"),
        ('[keys."bad name"]\nsha256 = "x"', "keys.bad name"),
    ],
)  # fmt: skip
def test_a_malformed_keys_table_names_itself(tmp_path, table, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        Settings.from_env({"TOKTOKEN_CONFIG": str(config(tmp_path, table))})


def test_a_malformed_keys_table_stops_start_up_with_one_line(tmp_path):
    env = dict(os.environ, TOKTOKEN_CONFIG=str(config(tmp_path, '[keys.ci]\nsha256 = "nope"')))
    proc = subprocess.run([sys.executable, "-m", "toktoken", "check"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "keys.ci.sha256" in lines[0], proc.stderr


def test_hash_key_prints_the_line_for_the_table():
    proc = subprocess.run([sys.executable, "-m", "toktoken", "hash-key"], input=ALICE + "\n",
                          cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout == f'sha256 = "{key_digest(ALICE)}"\n'
    assert ALICE not in proc.stdout + proc.stderr


# Model access ---------------------------------------------------------------------------


def test_a_key_gets_only_its_models(team, backend):
    assert ask(team, ALICE).status_code == 200
    assert ask(team, ALICE, model="qwen3-coder-30b").status_code == 200
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = ask(team, ALICE, model="claude-opus-4", path=path)
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert "claude-opus-4" in r.json()["error"]["message"]
        assert "alice" not in r.text and ALICE not in r.text
    r = openai.OpenAI(base_url=team.url + "/v1", api_key=ALICE, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="claude-opus-4"):
        r.chat.completions.create(
            model="claude-opus-4", messages=[{"role": "user", "content": "x"}]
        )
    listed = requests.get(team.url + "/v1/models", headers={"x-api-key": ALICE}, timeout=10).json()
    assert all("haiku" in m["id"] or "qwen3-coder" in m["id"] for m in listed["data"])
    assert "fake-model" not in {m["id"] for m in listed["data"]}  # served, but not for alice
    everything = requests.get(team.url + "/v1/models", headers={"x-api-key": ADMIN}, timeout=10)
    assert {m["id"] for m in everything.json()["data"]} >= {"fake-model"}


# Limits ---------------------------------------------------------------------------------


def test_requests_per_minute_on_both_routes_and_count_tokens(team):
    for _ in range(3):
        assert ask(team, BOB).status_code == 200
    r = ask(team, BOB)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers["x-should-retry"] == "true" and 1 <= int(r.headers["retry-after"]) <= 60
    assert "3 requests per minute" in r.json()["error"]["message"]
    r = ask(team, BOB, path="/v1/messages/count_tokens")
    assert r.status_code == 429 and r.headers["retry-after"]
    r = requests.post(team.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {BOB}"},
                      json={"model": "m", "messages": [{"role": "user", "content": "x"}]}, timeout=30)  # fmt: skip
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert r.headers["retry-after"] and r.headers["x-should-retry"] == "true"
    with pytest.raises(anthropic.RateLimitError):
        anthropic.Anthropic(base_url=team.url, api_key=BOB, max_retries=0).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.RateLimitError):
        openai.OpenAI(
            base_url=team.url + "/v1", api_key=BOB, max_retries=0
        ).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ask(team, ALICE).status_code == 200  # another key is not held back


def test_tokens_per_hour_refuse_on_what_was_charged_never_mid_stream(team, backend):
    backend.handler = lambda req: (
        Sse([chunk({"content": "one "}), chunk({"content": "two"}), chunk({}, "stop"),
             usage_chunk(300, 100)]) if req.stream else completion("ok", usage=(300, 100))
    )  # fmt: skip
    told = 0
    for _ in range(2):  # 400 tokens each: 800 charged
        r = ask(team, CAROL)
        assert r.status_code == 200
        told += r.json()["usage"]["input_tokens"] + r.json()["usage"]["output_tokens"]
    with anthropic.Anthropic(base_url=team.url, api_key=CAROL, max_retries=0).messages.stream(
        model="claude-haiku-4", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    ) as stream:  # admitted at 800: it crosses 1000 and still ends normally
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].text == "one two"
    told += final.usage.input_tokens + final.usage.output_tokens
    assert told == 1200
    r = ask(team, CAROL)
    assert r.status_code == 429 and "1000 tokens per hour" in r.json()["error"]["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    time.sleep(0.6)
    mine = stats(team, CAROL)
    assert mine["totals"]["input_tokens"] + mine["totals"]["output_tokens"] == told
    [use] = mine["keys"]
    assert use["name"] == "carol" and use["tokens_this_hour"] == told


def test_concurrent_streams(team, backend):
    backend.handler = lambda req: Sse([chunk({"content": "a"}), Pause(2), chunk({}, "stop"),
                                       usage_chunk(3, 1)])  # fmt: skip
    first = threading.Thread(target=lambda: ask(team, CAROL, stream=True).content)
    first.start()
    time.sleep(0.7)
    r = ask(team, CAROL, stream=True)
    assert r.status_code == 429 and "1 concurrent streams" in r.json()["error"]["message"]
    assert r.headers["retry-after"]
    backend.handler = lambda req: completion("ok", usage=(3, 1))
    assert ask(team, CAROL).status_code == 200  # a request that does not stream is not held
    first.join(30)
    backend.handler = lambda req: Sse(
        [chunk({"content": "b"}), chunk({}, "stop"), usage_chunk(3, 1)]
    )
    assert ask(team, CAROL, stream=True).status_code == 200  # the slot was given back


# Shared limits: a real redis-server, two instances of two workers ------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing in CI: .ci/run should have installed it")
        pytest.skip("redis-server is not installed")
    port = free_port()
    work = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            import redis

            redis.Redis(port=port).ping()
            break
        except Exception:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


SHARED = f"""
[keys.dev]
sha256 = "{key_digest(ALICE)}"
requests_per_minute = 10
concurrent_streams = 2
"""


def test_limits_hold_across_two_instances_of_two_workers(tmp_path, backend, redis_url):
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "WORKERS": "2",
           "TOKTOKEN_CONFIG": str(config(tmp_path, SHARED)), "LIMITS_STORAGE": redis_url}  # fmt: skip
    one, two = (GatewayProcess(env, tmp_path / f"gw{i}.log") for i in (1, 2))
    try:
        statuses = []
        for i in range(24):  # new connections: both workers of both instances answer
            gw = (one, two)[i % 2]
            r = requests.post(gw.url + "/v1/messages", headers={"x-api-key": ALICE, "Connection": "close"},
                              json={"model": "m", "max_tokens": 5,
                                    "messages": [{"role": "user", "content": "x"}]}, timeout=30)  # fmt: skip
            statuses.append(r.status_code)
        assert statuses.count(200) == 10 and statuses.count(429) == 14, statuses
        assert "counted in memory" not in one.log()
    finally:
        one.stop()
        two.stop()


def test_open_streams_are_counted_across_instances(tmp_path, backend, redis_url):
    shared = SHARED.replace("requests_per_minute = 10", "requests_per_minute = 1000")
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "WORKERS": "2",
           "TOKTOKEN_CONFIG": str(config(tmp_path, shared)), "LIMITS_STORAGE": redis_url}  # fmt: skip
    one, two = (GatewayProcess(env, tmp_path / f"gw{i}.log") for i in (1, 2))
    backend.handler = lambda req: Sse([chunk({"content": "a"}), Pause(2), chunk({}, "stop")])
    try:
        held = [threading.Thread(target=lambda gw=gw: ask(gw, ALICE, stream=True).content)
                for gw in (one, two)]  # fmt: skip
        for t in held:
            t.start()
        time.sleep(0.7)
        for gw in (one, two):
            assert ask(gw, ALICE, stream=True).status_code == 429
        for t in held:
            t.join(30)
        backend.handler = lambda req: Sse([chunk({"content": "b"}), chunk({}, "stop")])
        assert ask(two, ALICE, stream=True).status_code == 200
    finally:
        one.stop()
        two.stop()


def test_in_memory_limits_with_several_workers_warn_at_start_up(tmp_path, backend):
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "WORKERS": "2",
           "TOKTOKEN_CONFIG": str(config(tmp_path, SHARED))}  # fmt: skip
    gw = GatewayProcess(env, tmp_path / "mem.log")
    try:
        deadline = time.monotonic() + 10
        while "counted in memory" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "counted in memory, so per worker" in gw.log()
    finally:
        gw.stop()


# Visibility -----------------------------------------------------------------------------


def test_stats_admin_sees_everyone_others_only_themselves(team, backend):
    backend.handler = lambda req: completion("ok", usage=(10, 5))
    for key in (ALICE, ALICE, CAROL):
        assert ask(team, key).status_code == 200
    time.sleep(0.6)
    everyone = stats(team, ADMIN, group_by="key")
    assert everyone["scope"] == "all keys"
    assert {g["key"]: g["requests"] for g in everyone["groups"]} == {"alice": 2, "carol": 1}
    assert {k["name"] for k in everyone["keys"]} == {"admin", "alice", "bob", "carol"}
    carol = next(k for k in everyone["keys"] if k["name"] == "carol")
    assert carol["limits"]["tokens_per_hour"] == 1000 and carol["tokens_this_hour"] == 15
    alice = stats(team, ALICE, group_by="key")
    assert alice["scope"] == "alice" and alice["totals"]["requests"] == 2
    assert [g["key"] for g in alice["groups"]] == ["alice"]
    assert [k["name"] for k in alice["keys"]] == ["alice"]


def test_the_key_itself_appears_nowhere(team, backend):
    backend.handler = lambda req: completion("ok", usage=(10, 5))
    for key in (ALICE, BOB, CAROL, ADMIN):
        ask(team, key)
    ask(team, "sk-wrong-key-123")
    time.sleep(0.6)
    seen = {
        "stats": json.dumps(stats(team, ADMIN, group_by="key")),
        "metrics": requests.get(team.url + "/metrics", timeout=10).text,
        "dashboard": requests.get(
            team.url + "/dashboard", headers={"x-api-key": ADMIN}, timeout=10
        ).text,  # fmt: skip
        "health": requests.get(team.url + "/health", headers={"x-api-key": ADMIN}, timeout=10).text,
        "log": team.log(),
    }
    for where, text in seen.items():
        for key in (ALICE, BOB, CAROL, ADMIN, "sk-wrong-key-123"):
            assert key not in text, (where, key)
    assert re.search(r'toktoken_requests_total\{[^}]*key="alice"', seen["metrics"])
    assert "alice" in seen["dashboard"] and "carol" in seen["dashboard"]
    assert re.search(r"key=alice\b", seen["log"])


def test_the_dashboard_is_for_admin_keys(team):
    r = requests.get(team.url + "/dashboard", headers={"x-api-key": ALICE}, timeout=10)
    assert r.status_code == 403 and "not an admin key" in r.text
    r = requests.post(team.url + "/dashboard/login", data={"key": ALICE}, timeout=10,
                      allow_redirects=False)  # fmt: skip
    assert r.status_code == 403
    session = requests.Session()
    r = session.post(team.url + "/dashboard/login", data={"key": ADMIN}, timeout=10)
    assert r.status_code == 200 and "By key" in r.text
    assert ADMIN not in json.dumps(dict(session.cookies))
    assert session.cookies.get("toktoken_dashboard", path="/dashboard").startswith("admin.")


def test_limits_storage_is_checked_at_start_up():
    with pytest.raises(ConfigError, match="LIMITS_STORAGE"):
        Settings.from_env({"LIMITS_STORAGE": "memcached://x"})
