"""Usage records: one per request on either route, across gunicorn workers,
nothing lost on SIGTERM, /stats sums equal what clients saw."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from toktoken.telemetry import key_fingerprint

from .anthropic_grammar import validate
from .conftest import KEY, GatewayProcess
from .fake_backend import Pause, Sse, Text, chunk, completion, text_stream

HEADERS = {"x-api-key": KEY, "Connection": "close"}


def anthropic(gw, stream=False, model="claude-a", **kw):
    body = {"model": model, "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}], **kw}  # fmt: skip
    return requests.post(gw.url + "/v1/messages", json=body, headers=HEADERS, timeout=30)


def openai_call(gw, stream=False, model="gpt-b"):
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return requests.post(gw.url + "/v1/chat/completions", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {KEY}", "Connection": "close"})  # fmt: skip


def rows(db_path) -> list[sqlite3.Row]:
    with sqlite3.connect(db_path) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM usage ORDER BY id").fetchall()


def wait_for_rows(db_path, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = rows(db_path)
        except sqlite3.OperationalError:
            found = []
        if len(found) >= n:
            return found
        time.sleep(0.1)
    return rows(db_path)


@pytest.fixture
def telemetry_gateway(gateway_factory, tmp_path):
    db = tmp_path / "usage.db"
    gw = gateway_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(db), WORKERS="2",
                         TELEMETRY_FLUSH_INTERVAL="0.5")  # fmt: skip
    return gw, db


def handler(req):
    if req.path.endswith("/models"):
        return completion()
    if req.body["messages"][-1]["content"] == "fail":
        return Text("boom", 500)
    if req.stream:
        return text_stream(["a", "b", "c"], usage=(11, 3))
    return completion("ok", usage=(11, 3))


def test_every_request_on_both_routes_yields_exactly_one_record(telemetry_gateway, backend):
    gw, db = telemetry_gateway
    backend.handler = handler
    calls = [lambda: anthropic(gw), lambda: anthropic(gw, stream=True),
             lambda: openai_call(gw), lambda: openai_call(gw, stream=True),
             lambda: anthropic(gw, messages=[{"role": "user", "content": "fail"}]),
             lambda: requests.post(gw.url + "/v1/messages", json={"model": "x"}, headers=HEADERS),
             lambda: requests.post(gw.url + "/v1/messages", json={}, headers={"x-api-key": "wrong"})] * 6  # fmt: skip
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda call: call(), calls))
    ids = [r.headers["request-id"] for r in responses]
    recorded = wait_for_rows(db, len(calls))
    assert sorted(r["request_id"] for r in recorded) == sorted(ids)  # one each, none extra
    by_id = {r["request_id"]: r for r in recorded}
    for response in responses:
        row = by_id[response.headers["request-id"]]
        assert row["status"] == response.status_code
        if response.status_code == 200:
            assert (row["input_tokens"], row["output_tokens"]) == (11, 3) and row[
                "tokens_exact"
            ] == 1
            assert row["backend"] == "default" and row["backend_model"] == "fake-model"
        else:
            assert row["error_type"] in (
                "api_error",
                "invalid_request_error",
                "authentication_error",
            )
    assert {r["key_fp"] for r in recorded if r["status"] != 401} == {key_fingerprint(KEY)}
    assert KEY not in str([dict(r) for r in recorded])  # never the key itself
    streamed = [r for r in recorded if r["stream"] and r["status"] == 200]
    assert streamed and all(
        r["ttft_ms"] is not None and r["ttft_ms"] <= r["latency_ms"] for r in streamed
    )


def test_stats_sums_equal_what_clients_saw(telemetry_gateway, backend):
    gw, db = telemetry_gateway
    backend.handler = handler
    seen_in = seen_out = 0
    for i in range(5):
        data = anthropic(gw, model=f"claude-{i % 2}").json()
        seen_in += data["usage"]["input_tokens"]
        seen_out += data["usage"]["output_tokens"]
    t = validate(anthropic(gw, stream=True, model="claude-0").content)
    seen_in += t.usage["input_tokens"]
    seen_out += t.usage["output_tokens"]
    wait_for_rows(db, 6)
    stats = requests.get(gw.url + "/stats?group_by=model", headers=HEADERS).json()
    assert stats["telemetry"] is True
    assert stats["totals"]["requests"] == 6
    assert (stats["totals"]["input_tokens"], stats["totals"]["output_tokens"]) == (
        seen_in,
        seen_out,
    )
    groups = {g["key"]: g["requests"] for g in stats["groups"]}
    assert groups == {"claude-0": 4, "claude-1": 2}
    by_key = requests.get(gw.url + "/stats?group_by=key", headers=HEADERS).json()["groups"]
    assert [g["key"] for g in by_key] == ["key-1"]  # API_KEY's first key, by name
    hourly = requests.get(gw.url + "/stats?group_by=hour", headers=HEADERS).json()["groups"]
    assert sum(g["requests"] for g in hourly) == 6 and hourly[0]["key"].endswith(":00:00Z")
    future = requests.get(gw.url + "/stats?since=2999-01-01T00:00:00Z", headers=HEADERS).json()
    assert future["totals"]["requests"] == 0
    past = requests.get(gw.url + f"/stats?until={time.time() + 60}", headers=HEADERS).json()
    assert past["totals"]["requests"] == 6


def test_stats_needs_a_key_and_checks_parameters(telemetry_gateway):
    gw, _ = telemetry_gateway
    assert requests.get(gw.url + "/stats").status_code == 401
    r = requests.get(gw.url + "/stats?group_by=colour", headers=HEADERS)
    assert r.status_code == 400 and "group_by" in r.json()["error"]["message"]
    assert requests.get(gw.url + "/stats?since=yesterday", headers=HEADERS).status_code == 400


def test_stats_says_clearly_when_telemetry_is_off(gateway):
    data = requests.get(gateway.url + "/stats", headers=HEADERS).json()
    assert data["telemetry"] is False and "TELEMETRY_ENABLED" in data["message"]


def test_a_client_disconnect_is_recorded(telemetry_gateway, backend):
    gw, db = telemetry_gateway
    items = [chunk({"content": "tick"}) if i % 2 == 0 else Pause(0.1) for i in range(100)]
    backend.handler = lambda req: Sse(items + [chunk({}, "stop")])
    r = requests.post(gw.url + "/v1/messages", headers=HEADERS, stream=True, timeout=30,
                      json={"model": "m", "max_tokens": 5, "stream": True,
                            "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    next(r.iter_content(chunk_size=None))
    r.close()
    [row] = wait_for_rows(db, 1)
    assert row["error_type"] == "client_disconnected" and row["stream"] == 1


def test_sigterm_loses_nothing(backend, tmp_path):
    db = tmp_path / "usage.db"
    backend.handler = handler
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY, "WORKERS": "2",
           "TELEMETRY_ENABLED": "true", "TELEMETRY_DB": str(db),
           "TELEMETRY_FLUSH_INTERVAL": "30"}  # fmt: skip  # nothing is flushed before the stop
    gw = GatewayProcess(env, tmp_path / "gw.log")
    try:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda i: anthropic(gw, stream=bool(i % 2)), range(40)))
        assert {r.status_code for r in responses} == {200}
        assert not db.exists() or rows(db) == []
    finally:
        gw.stop()
    assert gw.proc.returncode == 0
    assert sorted(r["request_id"] for r in rows(db)) == sorted(
        r.headers["request-id"] for r in responses
    )


def _samples(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_metrics_across_workers_match_what_clients_saw(telemetry_gateway, backend):
    gw, db = telemetry_gateway
    backend.handler = handler
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: (anthropic if i % 2 else openai_call)(gw, stream=bool(i % 3)),
                                  range(24)))  # fmt: skip
    assert {r.status_code for r in responses} == {200}
    for _ in range(20):  # several scrapes land on both workers
        r = requests.get(gw.url + "/metrics", headers={"Connection": "close"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        samples = _samples(r.text)
        total = sum(s.value for s in samples["toktoken_requests_total"])
        if total == 24:
            break
        time.sleep(0.1)
    assert total == 24
    assert sum(s.value for s in samples["toktoken_output_tokens_total"]) == 24 * 3
    assert sum(s.value for s in samples["toktoken_input_tokens_total"]) == 24 * 11
    routes = {s.labels["route"] for s in samples["toktoken_requests_total"]}
    assert routes == {"/v1/messages", "/v1/chat/completions"}
    assert sum(s.value for s in samples["toktoken_request_duration_seconds_count"]) == 24
    assert sum(s.value for s in samples["toktoken_active_streams"]) == 0
    # the records in the ledger agree
    assert len(wait_for_rows(db, 24)) == 24


def test_backend_health_gauge(gateway_factory):
    gw = gateway_factory(VLLM_URL="http://127.0.0.1:9", VLLM_MODEL="down-model")
    requests.get(gw.url + "/health")
    samples = _samples(requests.get(gw.url + "/metrics").text)
    assert [
        s.value for s in samples["toktoken_backend_up"] if s.labels["backend"] == "default"
    ] == [0.0]


def test_a_backend_that_comes_back_is_noticed_without_a_restart(gateway_factory):
    from .conftest import free_port
    from .fake_backend import FakeBackend

    port = free_port()
    gw = gateway_factory(VLLM_URL=f"http://127.0.0.1:{port}", HEALTH_INTERVAL="0.3")
    assert requests.get(gw.url + "/health/ready").status_code == 503
    revived = FakeBackend(port=port)
    try:
        deadline = time.monotonic() + 10
        while requests.get(gw.url + "/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the gateway never noticed the backend came back"
            time.sleep(0.1)
        samples = _samples(requests.get(gw.url + "/metrics").text)
        assert [s.value for s in samples["toktoken_backend_up"]] == [1.0]
        deadline = time.monotonic() + 5
        while "is reachable again" not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "is reachable again" in gw.log()
    finally:
        revived.close()


def test_json_logs_one_line_per_request_without_secrets(gateway_factory, backend):
    import json as _json

    gw = gateway_factory(LOG_FORMAT="json", VLLM_API_KEY="upstream-secret-xyz")
    r = anthropic(gw, messages=[{"role": "user", "content": "my secret prompt text"}])
    request_id = r.headers["request-id"]
    deadline = time.monotonic() + 5
    while request_id not in gw.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    entries = [_json.loads(line) for line in gw.log().splitlines() if line.startswith("{")]
    [entry] = [e for e in entries if e.get("request_id") == request_id]
    assert (
        entry["event"] == "request" and entry["status"] == 200 and entry["route"] == "/v1/messages"
    )
    assert entry["model"] == "claude-a" and entry["backend"] == "default" and "ms" in entry
    log_text = gw.log()
    assert KEY not in log_text and "upstream-secret-xyz" not in log_text
    assert "my secret prompt text" not in log_text


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    from toktoken.telemetry import open_store

    if request.param == "sqlite":
        return open_store(str(tmp_path / "unit.db"))
    url = request.getfixturevalue("postgres_url")
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS usage")
    return open_store(url)


def test_both_stores_aggregate_alike(store):
    from toktoken.telemetry import UsageRecord

    def rec(i, ts, model, status=200):
        return UsageRecord(ts, f"r{i}", "/v1/messages", "fp", model, "default", "bm", 10, 2, 1, True,
                           100.0 + i, 50.0, True, status, None if status == 200 else "api_error")  # fmt: skip

    base = 1_790_000_000  # an exact hour: 2026-09-21T12:53:20Z is not; use multiples below
    hour = base - base % 3600
    store.insert([rec(0, hour + 10, "a"), rec(1, hour + 3599, "a"), rec(2, hour + 3600, "b"),
                  rec(3, hour + 7300, "b", status=500)])  # fmt: skip
    stats = store.stats(None, None, "hour")
    assert stats["totals"]["requests"] == 4 and stats["totals"]["errors"] == 1
    assert stats["totals"]["input_tokens"] == 40 and stats["totals"]["cache_read_tokens"] == 4
    assert [(g["key"], g["requests"]) for g in stats["groups"]] == [(hour, 2), (hour + 3600, 1),
                                                                   (hour + 7200, 1)]  # fmt: skip
    assert {g["key"]: g["requests"] for g in store.stats(hour + 3600, None, "model")["groups"]} == {
        "b": 2
    }
    assert store.stats(None, hour + 3600, None)["totals"]["requests"] == 2
    assert store.prune(hour + 3600) == 2
    assert store.stats(None, None, None)["totals"]["requests"] == 2


def test_postgres_ledger_shared_by_two_instances(backend, tmp_path, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS usage")
    backend.handler = handler
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY, "WORKERS": "2",
           "TELEMETRY_ENABLED": "true", "TELEMETRY_DB": postgres_url,
           "TELEMETRY_FLUSH_INTERVAL": "30"}  # fmt: skip  # only the graceful stop writes
    machines = [GatewayProcess(env, tmp_path / f"gw{i}.log") for i in range(2)]
    try:
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(
                lambda i: (anthropic if i % 2 else openai_call)(machines[i % 2], stream=bool(i % 3)),
                range(40)))  # fmt: skip
        assert {r.status_code for r in responses} == {200}
    finally:
        for gw in machines:
            gw.stop()
    assert [gw.proc.returncode for gw in machines] == [0, 0]
    with psycopg.connect(postgres_url) as db:
        ids = [row[0] for row in db.execute("SELECT request_id FROM usage")]
    assert sorted(ids) == sorted(r.headers["request-id"] for r in responses)
    # and /stats on a fresh instance sees every machine's records
    gw = GatewayProcess(dict(env, TELEMETRY_FLUSH_INTERVAL="1"), tmp_path / "gw-stats.log")
    try:
        stats = requests.get(gw.url + "/stats?group_by=route", headers=HEADERS).json()
    finally:
        gw.stop()
    assert stats["totals"]["requests"] == 40 and stats["totals"]["output_tokens"] == 40 * 3
    assert {g["key"]: g["requests"] for g in stats["groups"]} == {
        "/v1/messages": 20,
        "/v1/chat/completions": 20,
    }


def test_postgres_schema_created_by_many_starters_at_once(postgres_url):
    """Every worker of every instance creates the schema at start-up; on a
    fresh database they race, and PostgreSQL's CREATE ... IF NOT EXISTS is not
    safe against that (a unique violation in pg_class kills the worker)."""
    import threading

    import psycopg

    from toktoken.telemetry.store import PostgresStore

    for _ in range(5):
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("DROP TABLE IF EXISTS usage")
        barrier, errors = threading.Barrier(12), []

        def start(barrier, errors):
            barrier.wait()
            try:
                PostgresStore(postgres_url)
            except Exception as exc:  # noqa: BLE001 - the test reports any failure
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(barrier, errors)) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
