"""Several replicas behind one backend: session affinity, health ejection,
failover (backends/replicas.py, pipeline.py). Real HTTP throughout: gunicorn
gateways in front of three scripted fake replicas that can be killed (every
connection reset) and brought back on the same port."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter

import pytest
import requests

from toktoken.backends import BackendClient
from toktoken.backends.replicas import ReplicaSet, weight
from toktoken.config import BackendSettings, ConfigError, Settings

from .conftest import KEY, GatewayProcess
from .fake_backend import FakeBackend, Json, Pause, Sse, chunk, completion, usage_chunk

HEADER = "x-session-id"  # FORWARD_SESSION_HEADER: how the test sees where a session went


@pytest.fixture
def fakes():
    replicas = [FakeBackend() for _ in range(3)]
    yield replicas
    for replica in replicas:
        replica.kill()


@pytest.fixture
def start(tmp_path):
    started: list[GatewayProcess] = []

    def start(urls: list[str], **env) -> GatewayProcess:
        env = {"VLLM_URL": ",".join(urls), "VLLM_MODEL": "fake-model", "API_KEY": KEY,
               "WORKERS": "1", "REPLICA_FAILURES": "2", "REPLICA_EJECT_SECONDS": "1",
               "HEALTH_INTERVAL": "60", "FORWARD_SESSION_HEADER": HEADER, **env}  # fmt: skip
        gw = GatewayProcess(env, tmp_path / f"gateway-{len(started)}.log")
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


def ask(gw, session: str | None = None, *, stream=False, path="/v1/messages"):
    headers = {"x-api-key": KEY}
    if session:
        headers["X-Claude-Code-Session-Id"] = session
    body = {"model": "m", "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    return requests.post(gw.url + path, json=body, headers=headers, timeout=30, stream=stream)


def header(req, name: str) -> str | None:
    return next((v for k, v in req.headers.items() if k.lower() == name), None)


def homes(fakes) -> dict[str, set[int]]:
    """session -> the replicas (indexes) its requests reached."""
    where: dict[str, set[int]] = {}
    for i, fake in enumerate(fakes):
        for req in fake.chat_requests:
            where.setdefault(header(req, HEADER), set()).add(i)
    return where


def metric(gw, name: str, **labels) -> float:
    text = requests.get(gw.url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def replica_state(gw, url: str) -> dict:
    health = requests.get(gw.url + "/health", headers={"x-api-key": KEY}, timeout=10).json()
    return next(r for r in health["backends"][0]["replicas"] if r["url"] == url)


# Choice ------------------------------------------------------------------------------


def test_sessions_stick_to_one_replica_and_spread_over_all(fakes, start):
    gw = start([f.url for f in fakes])
    for _ in range(5):
        for s in range(30):
            assert ask(gw, f"session-{s}").status_code == 200
    where = homes(fakes)
    assert len(where) == 30 and all(len(replicas) == 1 for replicas in where.values())
    urls = [f.url for f in fakes]
    for session, [replica] in where.items():  # the rendezvous choice, nothing else
        assert max(urls, key=lambda u: weight(session, u)) == urls[replica]
    # Spread: each replica serves sessions. Which ones is a hash of the session id
    # and the URL (random ports here), so 30 sessions split like 30 dice: the
    # bound is loose (a split worse than 20/30 has odds below 1 in 10^4); the
    # balance itself is measured over 2000 sessions below.
    counts = [len(f.chat_requests) for f in fakes]
    assert sum(counts) == 150 and all(0 < c <= 100 for c in counts), counts


def test_without_a_session_the_least_busy_replica_is_chosen(fakes, start):
    gw = start([f.url for f in fakes])
    for fake in fakes:  # every stream stays open for a while
        fake.handler = lambda req: Sse([chunk({"content": "x"}), Pause(1.5), chunk({}, "stop")])
    threads = [threading.Thread(target=lambda: ask(gw, stream=True).content) for _ in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.1)  # each arrives while the earlier ones are in flight
    for t in threads:
        t.join(30)
    assert [len(f.chat_requests) for f in fakes] == [2, 2, 2]
    for fake in fakes:
        fake.reset()
    for _ in range(30):  # sequential, nothing in flight: ties broken at random
        assert ask(gw).status_code == 200
    assert all(len(f.chat_requests) > 0 for f in fakes)


def test_count_tokens_follows_the_session(fakes, start):
    gw = start([f.url for f in fakes], VLLM_COUNT_TOKENS="probe")
    for s in range(6):
        assert ask(gw, f"s{s}").status_code == 200
        r = ask(gw, f"s{s}", path="/v1/messages/count_tokens")
        assert r.status_code == 200 and r.json()["input_tokens"] > 0
    assert all(len(replicas) == 1 for replicas in homes(fakes).values())


def test_two_gateways_choose_the_same_replica_for_a_session(fakes, start):
    urls = [f.url for f in fakes]
    one, two = start(urls), start(list(reversed(urls)))  # the order does not matter
    for s in range(20):
        assert ask(one, f"shared-{s}").status_code == 200
        assert ask(two, f"shared-{s}").status_code == 200
    where = homes(fakes)
    assert len(where) == 20 and all(len(replicas) == 1 for replicas in where.values())


def test_rendezvous_moves_only_the_sessions_of_the_replica_that_left():
    settings = BackendSettings("b", "http://a:1", None, "m")
    clients = [BackendClient(settings, connect_timeout=1, read_timeout=1, url=f"http://r{i}:8000")
               for i in range(4)]  # fmt: skip
    group = ReplicaSet(settings, clients)
    sessions = [f"session-{i}" for i in range(2000)]
    before = {s: group.choose(s).url for s in sessions}
    spread = Counter(before.values())
    assert len(spread) == 4 and all(400 <= n <= 600 for n in spread.values()), spread
    gone = group.replicas[1]
    gone.ejected_until = float("inf")  # ejected
    after = {s: group.choose(s).url for s in sessions}
    for s in sessions:
        if before[s] == gone.url:
            assert after[s] != gone.url
        else:
            assert after[s] == before[s]  # nobody else moved
    gone.ejected_until = None  # back: they return
    assert {s: group.choose(s).url for s in sessions} == before


# Health and failover ------------------------------------------------------------------


def test_a_dead_replica_is_ejected_its_sessions_move_and_return(fakes, start):
    gw = start([f.url for f in fakes])
    sessions = [f"s{i}" for i in range(30)]
    for s in sessions:
        assert ask(gw, s).status_code == 200
    home = {s: next(iter(r)) for s, r in homes(fakes).items()}
    victim = next(i for i in range(3) if list(home.values()).count(i) >= 2)
    victim_url, port = fakes[victim].url, fakes[victim].port
    fakes[victim].kill()
    for fake in fakes:
        fake.reset()

    for s in sessions:  # requests that had not started: no error
        r = ask(gw, s)
        assert r.status_code == 200, r.text
    moved = homes(fakes)
    for s in sessions:
        if home[s] != victim:
            assert moved[s] == {home[s]}  # only the victim's sessions moved
        else:
            assert victim not in moved[s]
    assert replica_state(gw, victim_url)["state"] == "ejected"
    tried = metric(gw, "toktoken_replica_requests_total", replica=victim_url)
    assert tried == 2 + list(home.values()).count(victim)  # 1st turn + the two that failed over
    for s in sessions:
        assert ask(gw, s).status_code == 200
    assert metric(gw, "toktoken_replica_requests_total", replica=victim_url) == tried
    assert metric(gw, "toktoken_replica_ejections_total", replica=victim_url) >= 1  # re-probed
    assert metric(gw, "toktoken_failovers_total", backend="default") == 2

    fakes[victim] = FakeBackend(port=port)  # back, on the same address
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and replica_state(gw, victim_url)["state"] != "up":
        ask(gw, "anything")  # a choice starts the re-admission probe once the back-off is over
        time.sleep(0.3)
    assert replica_state(gw, victim_url)["state"] == "up"
    for fake in fakes:
        fake.reset()
    for s in sessions:
        assert ask(gw, s).status_code == 200
    assert {s: next(iter(r)) for s, r in homes(fakes).items()} == home  # they returned
    assert "replica" in gw.log() and "ejected" in gw.log() and "re-admitted" in gw.log()


def test_a_502_fails_over_once_and_the_record_says_where(fakes, start, tmp_path):
    gw = start([f.url for f in fakes], TELEMETRY_ENABLED="true",
               TELEMETRY_DB=str(tmp_path / "u.db"), TELEMETRY_FLUSH_INTERVAL="0.2")  # fmt: skip
    assert ask(gw, "s-502").status_code == 200
    first = next(i for i, f in enumerate(fakes) if f.chat_requests)
    fakes[first].handler = lambda req: Json({"error": "bad gateway"}, 502)
    r = ask(gw, "s-502")
    assert r.status_code == 200 and r.json()["content"][0]["text"]
    assert len(fakes[first].chat_requests) == 2
    other = next(i for i, f in enumerate(fakes) if i != first and f.chat_requests)
    assert sum(len(f.chat_requests) for f in fakes) == 3
    time.sleep(0.5)
    stats = requests.get(gw.url + "/stats?group_by=replica", headers={"x-api-key": KEY},
                         timeout=10).json()  # fmt: skip
    by_replica = {g["key"]: g["requests"] for g in stats["groups"]}
    assert by_replica == {fakes[first].url: 1, fakes[other].url: 1}
    line = [ln for ln in gw.log().splitlines() if "failover" in ln]
    assert line and fakes[first].url in line[-1] and fakes[other].url in line[-1]


def test_both_replicas_failing_gives_the_usual_error(fakes, start):
    gw = start([fakes[0].url, fakes[1].url])
    for fake in fakes[:2]:
        fake.handler = lambda req: Json({"error": "overloaded"}, 503)
    r = ask(gw, "s")
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    assert [len(f.chat_requests) for f in fakes[:2]] == [1, 1]  # one retry, no more


def test_a_stream_cut_after_bytes_is_never_retried(fakes, start):
    gw = start([f.url for f in fakes])
    for fake in fakes:
        fake.handler = lambda req: Sse(
            [chunk({"role": "assistant", "content": ""}), chunk({"content": "partial"})],
            done=False, cut=True)  # fmt: skip
    r = ask(gw, "s-cut", stream=True)
    assert r.status_code == 200
    text = r.content.decode()
    assert "partial" in text and "event: error" in text
    assert sum(len(f.chat_requests) for f in fakes) == 1


def test_a_400_is_never_retried(fakes, start):
    gw = start([f.url for f in fakes])
    message = ("This model's maximum context length is 1000 tokens. However, you requested "
               "5000 tokens (4980 in the messages, 20 in the completion).")  # fmt: skip
    for fake in fakes:
        fake.handler = lambda req: Json({"error": {"message": message}}, 400)
    r = ask(gw, "s-400")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "prompt is too long: 4980 tokens > 1000 maximum"
    assert sum(len(f.chat_requests) for f in fakes) == 1


def test_a_stream_that_fails_before_its_first_byte_fails_over(fakes, start):
    gw = start([f.url for f in fakes[:2]])
    assert ask(gw, "s-st").status_code == 200
    first = next(i for i, f in enumerate(fakes[:2]) if f.chat_requests)
    fakes[first].kill()
    r = ask(gw, "s-st", stream=True)
    text = r.content.decode()
    assert r.status_code == 200 and "message_stop" in text and "event: error" not in text


# Visibility ---------------------------------------------------------------------------


def test_health_metrics_and_dashboard_show_each_replica(fakes, start, tmp_path):
    gw = start([f.url for f in fakes], TELEMETRY_ENABLED="true",
               TELEMETRY_DB=str(tmp_path / "u.db"), TELEMETRY_FLUSH_INTERVAL="0.2")  # fmt: skip
    for s in range(9):
        assert ask(gw, f"v{s}").status_code == 200
    fakes[2].kill()
    # Enough sessions that at least REPLICA_FAILURES (2) of them hash to the
    # dead replica whatever its port (with 9, about one run in seven had one).
    for s in range(40):
        ask(gw, f"w{s}")
    health = requests.get(gw.url + "/health", headers={"x-api-key": KEY}, timeout=10).json()
    [backend] = health["backends"]
    assert [r["url"] for r in backend["replicas"]] == [f.url for f in fakes]
    states = {r["url"]: r for r in backend["replicas"]}
    assert states[fakes[2].url]["state"] == "ejected"
    assert "refused" in states[fakes[2].url]["last_error"]
    assert all(states[f.url]["state"] == "up" and states[f.url]["in_flight"] == 0
               for f in fakes[:2])  # fmt: skip
    public = requests.get(gw.url + "/health", timeout=10).json()
    assert "replicas" not in json.dumps(public) and fakes[0].url not in json.dumps(public)
    assert metric(gw, "toktoken_replica_up", replica=fakes[2].url) == 0
    assert metric(gw, "toktoken_replica_up", replica=fakes[0].url) == 1
    assert metric(gw, "toktoken_replica_errors_total", replica=fakes[2].url) >= 2
    assert metric(gw, "toktoken_replica_in_flight", replica=fakes[0].url) == 0
    page = requests.get(gw.url + "/dashboard", headers={"x-api-key": KEY}, timeout=10).text
    for fake in fakes:
        assert fake.url in page
    assert "ejected" in page


def test_the_session_header_is_forwarded_only_when_configured(fakes, start):
    gw = start([fakes[0].url], FORWARD_SESSION_HEADER="")
    assert ask(gw, "quiet").status_code == 200
    assert header(fakes[0].chat_requests[0], HEADER) is None
    gw = start([fakes[1].url], FORWARD_SESSION_HEADER="x-session-affinity")
    assert ask(gw, "loud").status_code == 200
    assert header(fakes[1].chat_requests[0], "x-session-affinity") == "loud"


# Configuration ------------------------------------------------------------------------


def test_urls_from_the_environment_and_the_file(tmp_path):
    s = Settings.from_env({"VLLM_URL": "http://a:8000/v1, http://b:8000"})
    assert s.backend.urls == ("http://a:8000", "http://b:8000") and s.backend.url == "http://a:8000"
    assert Settings.from_env({"VLLM_URL": "http://a:8000"}).backend.urls == ("http://a:8000",)
    with pytest.raises(ConfigError, match="VLLM_URL"):
        Settings.from_env({"VLLM_URL": "http://a:8000,http://a:8000/"})
    with pytest.raises(ConfigError, match="VLLM_URL"):
        Settings.from_env({"VLLM_URL": "http://a:8000,,http://b"})
    with pytest.raises(ConfigError, match="REPLICA_FAILURES"):
        Settings.from_env({"REPLICA_FAILURES": "0"})

    def load(lines: str):
        path = tmp_path / "t.toml"
        path.write_text(f'[backends.gpu]\nmodel = "m"\n{lines}\n')
        return Settings.from_env({"TOKTOKEN_CONFIG": str(path)}).backends[0]

    assert load('urls = ["http://g1:8000", "http://g2:8000/v1"]').urls == (
        "http://g1:8000",
        "http://g2:8000",
    )
    assert load('url = "http://g1:8000"').urls == ("http://g1:8000",)
    for bad in ('urls = []', 'urls = "http://g1"', 'url = "http://a"\nurls = ["http://b"]',
                'urls = ["http://g1", 3]'):  # fmt: skip
        with pytest.raises(ConfigError, match=r"backends\.gpu\.urls"):
            load(bad)


def test_one_url_reports_like_before(gateway):
    """One URL: the same /health shape as ever, plus its one replica."""
    health = requests.get(gateway.url + "/health", headers={"x-api-key": KEY}, timeout=10).json()
    [backend] = health["backends"]
    assert backend["reachable"] is True and len(backend["replicas"]) == 1
    assert backend["replicas"][0]["url"] == backend["url"]


def test_failover_latency_is_small_and_reported(fakes, start):
    """Not a timing assertion: the added latency is in `make bench`. Here only
    that a refused replica costs one extra attempt and nothing more."""
    gw = start([fakes[0].url, fakes[1].url], REPLICA_FAILURES="100")
    assert ask(gw, "lat").status_code == 200
    first = next(i for i in range(2) if fakes[i].chat_requests)
    fakes[first].kill()
    for _ in range(3):
        assert ask(gw, "lat").status_code == 200
    assert len(fakes[1 - first].chat_requests) == 3
    assert re.search(r"failover", gw.log())


def test_no_stream_is_lost_on_the_way_while_a_replica_dies(fakes, start):
    """Streams in flight on a replica that dies end with event: error; new
    ones go elsewhere. Nothing hangs."""
    gw = start([fakes[0].url, fakes[1].url])
    for fake in fakes[:2]:
        fake.handler = lambda req: Sse([chunk({"content": "a"}), Pause(2), chunk({}, "stop"),
                                        usage_chunk(3, 1)])  # fmt: skip
    results: list[str] = []

    def stream(session: str) -> None:
        results.append(ask(gw, session, stream=True).content.decode())

    threads = [threading.Thread(target=stream, args=(f"d{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    fakes[0].kill()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    assert all(("message_stop" in r) != ("event: error" in r) for r in results)
    assert any("event: error" in r for r in results) or not fakes[0].chat_requests
    fakes[1].handler = lambda req: completion("ok")
    assert ask(gw, "after").status_code == 200
