"""Nothing lost, nothing stuck: the usage ledger through outages, shutdown
with idle clients and streams in flight, reloads with a broken file. Real
gunicorn processes, two workers where the issue asked for them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from .anthropic_grammar import validate
from .conftest import KEY, GatewayProcess, post
from .fake_backend import Pause, Sse, chunk, usage_chunk


def body(**fields) -> dict:
    return {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


def stats_requests(gw) -> int:
    return requests.get(gw.url + "/stats", headers={"x-api-key": KEY}, timeout=10).json()["totals"][
        "requests"
    ]


def wait_for_requests(gw, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    seen = stats_requests(gw)
    while seen < count and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = stats_requests(gw)
    return seen


def ledger_states(gw, tries: int = 12) -> list[dict]:
    """/health's ledger, as several workers see it."""
    return [requests.get(gw.url + "/health", headers={"x-api-key": KEY, "Connection": "close"},
                         timeout=10).json()["ledger"] for _ in range(tries)]  # fmt: skip


# The ledger ----------------------------------------------------------------------------------


def test_a_record_the_ledger_cannot_encode_stops_nothing(gateway_factory, tmp_path):
    """The request that used to stop the ledger for good (a lone surrogate in
    the model name), then 60 normal ones: all in /stats within two flush
    intervals."""
    gw = gateway_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(tmp_path / "u.db"), WORKERS="2",
                         TELEMETRY_FLUSH_INTERVAL="0.5")  # fmt: skip
    raw = '{"model": "claude-\\ud800", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}'
    assert post(gw, raw).status_code == 200
    for _ in range(60):
        assert post(gw, body()).status_code == 200
    time.sleep(2 * 0.5)
    assert stats_requests(gw) == 61
    assert "Traceback" not in gw.log()


def test_an_unwritable_record_is_dropped_and_counted_the_rest_written(tmp_path):
    from toktoken.telemetry import Recorder, SQLiteStore, UsageRecord
    from toktoken.telemetry.metrics import RECORDS_DROPPED

    def record(i: int, model: str) -> UsageRecord:
        return UsageRecord(ts=1.0 + i, request_id=f"req_{i}", route="/v1/messages", key_fp=None,
                           model=model, backend="b", backend_model="m", input_tokens=1, output_tokens=1,
                           cache_read_tokens=0, tokens_exact=True, latency_ms=1.0, ttft_ms=None,
                           stream=False, status=200, error_type=None)  # fmt: skip

    store = SQLiteStore(str(tmp_path / "u.db"))
    recorder = Recorder(store)
    before = RECORDS_DROPPED.labels("unwritable")._value.get()
    for i in range(5):
        recorder.add(record(i, "claude-\ud800" if i == 2 else "ok"))  # made outside RequestRecord
    assert recorder.flush() == 4
    assert [r[0] for r in store._execute("SELECT request_id FROM usage ORDER BY id")] == [
        "req_0", "req_1", "req_3", "req_4"]  # fmt: skip
    assert recorder.state()["dropped"] == {"unwritable": 1} and recorder.state()["state"] == "ok"
    assert RECORDS_DROPPED.labels("unwritable")._value.get() == before + 1


def _chattr(flag: str, *paths) -> None:
    for path in paths:
        subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


def test_sqlite_ledger_unwritable_then_writable_loses_nothing(gateway_factory, tmp_path):
    if shutil.which("chattr") is None:
        if os.environ.get("CI"):
            pytest.fail("chattr (e2fsprogs) is missing in CI")
        pytest.skip("chattr is not installed")
    db = tmp_path / "u.db"
    gw = gateway_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(db), WORKERS="2",
                         TELEMETRY_FLUSH_INTERVAL="0.2")  # fmt: skip
    for _ in range(10):
        assert post(gw, body()).status_code == 200
    assert wait_for_requests(gw, 10, 5) == 10
    # The database and its WAL immutable: every write fails (as on a read-only file
    # or a full disk); the shared-memory index stays writable (it is mapped).
    _chattr("+i", db, f"{db}-wal")
    try:
        for _ in range(40):
            assert post(gw, body()).status_code == 200  # requests are served
        deadline = time.monotonic() + 5
        while not any(s["state"] == "down" and s["backlog"] > 0 for s in ledger_states(gw)):
            assert time.monotonic() < deadline, "the ledger never reported being down"
        assert requests.get(gw.url + "/health/ready").status_code == 200
    finally:
        _chattr("-i", db, f"{db}-wal")
    assert wait_for_requests(gw, 50, 5) == 50
    assert all(s["state"] == "ok" and s["backlog"] == 0 for s in ledger_states(gw))
    assert gw.log().count("usage ledger unavailable") <= 2  # one line per worker, not one a second


def test_postgres_stopped_and_restarted_under_load_loses_nothing(backend, postgres, tmp_path):
    gw = GatewayProcess({"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY, "WORKERS": "2",
                         "TELEMETRY_ENABLED": "true", "TELEMETRY_DB": postgres.url,
                         "TELEMETRY_FLUSH_INTERVAL": "0.2"}, tmp_path / "gw.log")  # fmt: skip
    try:
        base = stats_requests(gw)
        sent = [0]
        stop = threading.Event()

        def load():
            while not stop.is_set():
                assert post(gw, body()).status_code == 200
                sent[0] += 1

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(1)
        postgres.stop()
        time.sleep(2)  # requests keep being served while the ledger is gone
        postgres.start()
        time.sleep(1)
        stop.set()
        for w in workers:
            w.join()
        assert sent[0] > 40
        assert wait_for_requests(gw, base + sent[0], 10) == base + sent[0]
    finally:
        gw.stop()


def test_a_long_outage_keeps_the_newest_records_within_the_bound(app_factory, tmp_path):
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    db = tmp_path / "u.db"
    client = app_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(db), TELEMETRY_BACKLOG="100")
    recorder = client.application.extensions["toktoken"].recorder
    post(client, body())
    recorder.flush()
    _chattr("+i", db, f"{db}-wal")
    try:
        for _ in range(150):
            post(client, body())
        recorder.flush()
        state = recorder.state()
        assert state["state"] == "down" and state["backlog"] == 100
        assert state["dropped"] == {"backlog_full": 50}
    finally:
        _chattr("-i", db, f"{db}-wal")
    assert recorder.flush() == 100
    ids = [r[0] for r in recorder.store._execute("SELECT request_id FROM usage")]
    assert len(ids) == 101


# Shutdown ------------------------------------------------------------------------------------


def _slow_stream(seconds: float) -> Sse:
    steps = int(seconds / 0.25)
    items = [chunk({"content": "x"}) if i % 2 == 0 else Pause(0.5) for i in range(steps)]
    return Sse([*items, chunk({}, "stop"), usage_chunk(5, steps)])


def test_sigterm_lets_the_stream_finish_and_exits_right_after(backend, tmp_path):
    gw = GatewayProcess({"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY},
                        tmp_path / "gw.log")  # fmt: skip
    try:
        idle = requests.Session()  # an SDK's keep-alive connection, idle
        assert idle.get(gw.url + "/", timeout=5).status_code == 200
        backend.handler = lambda req: _slow_stream(2.0)
        r = post(gw, body(stream=True), stream=True)
        chunks = r.iter_content(chunk_size=None)
        received = [next(chunks)]
        gw.proc.send_signal(signal.SIGTERM)
        received += list(chunks)
        ended = time.monotonic()
        gw.proc.wait(30)
        exited = time.monotonic()
        t = validate(b"".join(received))
        assert t.stop_reason == "end_turn" and t.error is None  # the stream completed
        assert exited - ended < 2.0, f"exited {exited - ended:.2f}s after the stream ended"
    finally:
        gw.stop()


def test_sigterm_with_only_idle_clients_exits_at_once(backend, tmp_path):
    gw = GatewayProcess({"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY, "WORKERS": "2",
                         "GRACEFUL_TIMEOUT": "120"}, tmp_path / "gw.log")  # fmt: skip
    try:
        sessions = [requests.Session() for _ in range(4)]
        for s in sessions:
            assert (
                s.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, json=body()).status_code
                == 200
            )
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, (
            f"took {elapsed:.2f}s with nothing in flight (GRACEFUL_TIMEOUT is 120)"
        )
    finally:
        gw.stop()


# Reload ---------------------------------------------------------------------------------------

CONFIG = """
[backends.default]
url = "{url}"
model = "{model}"
"""


def test_reload_takes_a_valid_edit_and_refuses_a_broken_one_without_cutting_streams(
    backend, tmp_path
):
    backend.serve("model-a", "model-b")
    path = tmp_path / "toktoken.toml"
    path.write_text(CONFIG.format(url=backend.url, model="model-a"))
    gw = GatewayProcess({"TOKTOKEN_CONFIG": str(path), "API_KEY": KEY, "STREAM_PING_INTERVAL": "1"},
                        tmp_path / "gw.log")  # fmt: skip
    try:
        post(gw, body())
        assert backend.chat_requests[-1].body["model"] == "model-a"
        # a valid edit, then SIGHUP: picked up by the new workers
        path.write_text(CONFIG.format(url=backend.url, model="model-b"))
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while True:
            post(gw, body(), headers={"Connection": "close"})
            if backend.chat_requests[-1].body["model"] == "model-b":
                break
            assert time.monotonic() < deadline, "the edit was never picked up"
            time.sleep(0.2)
        # a stream in flight, a broken edit, SIGHUP: refused with one line, stream intact
        backend.handler = lambda req: _slow_stream(2.0)
        r = post(gw, body(stream=True), stream=True)
        chunks = r.iter_content(chunk_size=None)
        received = [next(chunks)]
        path.write_text("[backends.default\nurl = ")
        gw.proc.send_signal(signal.SIGHUP)
        received += list(chunks)
        t = validate(b"".join(received))
        assert t.stop_reason == "end_turn" and t.error is None
        time.sleep(1)
        assert gw.proc.poll() is None, "the master went down"
        refused = [x for x in gw.log().splitlines() if "reload refused" in x]
        assert len(refused) == 1 and "TOKTOKEN_CONFIG" in refused[0] and "valid TOML" in refused[0]
        backend.reset()
        assert post(gw, body(), headers={"Connection": "close"}).status_code == 200
        assert backend.chat_requests[-1].body["model"] == "model-b"  # the last good configuration
    finally:
        gw.stop()
