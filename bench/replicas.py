"""The replica scenario of `make bench`: a backend with three replicas.

- The cost of choosing a replica, in process: ``ReplicaSet.choose`` (the
  session's rendezvous choice over three URLs, or the least busy) plus the
  in-flight bookkeeping, per request, beside the one-URL path.
- Through a gateway with three fake replicas: the CPU per request beside the
  one-URL gateway of the same run, and the latency one failover adds (the
  session's replica refuses connections, the request goes to the next one)
  beside a session whose replica is up.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from toktoken.backends import BackendClient  # noqa: E402
from toktoken.backends.replicas import ReplicaSet, weight  # noqa: E402
from toktoken.config import BackendSettings  # noqa: E402


def choice_cost(rounds: int = 5, count: int = 20000) -> dict:
    """Microseconds per request for choose + begin + end (best round)."""
    settings = BackendSettings("b", "http://r0:8000", None, "m")

    def group(n: int) -> ReplicaSet:
        clients = [BackendClient(settings, connect_timeout=1, read_timeout=1,
                                 url=f"http://r{i}:8000") for i in range(n)]  # fmt: skip
        return ReplicaSet(settings, clients)

    sessions = [f"2f1c9c4e-{i:04d}-4b7e-9a51-0c{i:010d}" for i in range(1000)]
    cases = {"one URL": (group(1), sessions), "3 replicas, session": (group(3), sessions),
             "3 replicas, no session": (group(3), [None] * len(sessions))}  # fmt: skip
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, (replicas, ids) in cases.items():
            started = time.process_time()
            for i in range(count):
                replica = replicas.choose(ids[i % len(ids)])
                replicas.begin(replica)
                replicas.end(replica)
            best[name] = min(best[name], (time.process_time() - started) / count * 1e6)
    return best


def run(bench, *, key: str, body: dict, cpu_seconds) -> dict:
    """``bench`` is bench/run.py's Bench (its fake backend, load generator
    and one-URL gateway); three more fake replicas and one more gateway."""
    from run import free_port, pinned, worker_when_up  # bench/run.py

    ports = [free_port() for _ in range(3)]
    fakes = [subprocess.Popen([*pinned(1), sys.executable, str(ROOT / "bench/fake_backend.py"), str(p)])
             for p in ports]  # fmt: skip
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", API_KEY=key,
               VLLM_URL=",".join(urls), VLLM_MODEL="bench", VLLM_KIND="openai",
               WORKER_CONNECTIONS="2000", HEALTH_INTERVAL="3600",
               REPLICA_FAILURES="1000")  # fmt: skip  # the dead one stays in: every request fails over
    proc = subprocess.Popen(
        [*pinned(0), sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT, env=env, stdout=open(bench.tmp / "replicas.log", "wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        worker = worker_when_up(proc, f"http://127.0.0.1:{port}/health")
        path = "/v1/messages"

        def session_on(url: str) -> str:
            return next(s for s in (f"bench-{i}" for i in range(10_000))
                        if max(urls, key=lambda u: weight(s, u)) == url)  # fmt: skip

        def load(p: int, session: str | None, concurrency: int, count: int) -> dict:
            headers = {"x-api-key": key}
            if session:
                headers["X-Claude-Code-Session-Id"] = session
            return bench.load(p, path, body, concurrency, count, headers)

        def cpu_per_request(p: int, pid: int, session: str) -> float:
            load(p, session, 8, 40)
            cpu0 = cpu_seconds(pid)
            load(p, session, 16, 1000)
            return 1000 * (cpu_seconds(pid) - cpu0) / 1000

        runs = {"one URL": [], "3 replicas": []}
        for _ in range(3):  # interleaved, the median of each
            runs["one URL"].append(cpu_per_request(bench.gateway_port, bench.worker, "s1"))
            runs["3 replicas"].append(cpu_per_request(port, worker, "s1"))
        cpu = {name: statistics.median(values) for name, values in runs.items()}

        live, dead = session_on(urls[1]), session_on(urls[0])
        fakes[0].send_signal(signal.SIGKILL)
        fakes[0].wait(10)
        load(port, dead, 1, 20)  # the pooled connections to it are reset once
        latency = {}
        for name, session in (("replica up", live), ("one failover", dead)):
            result = load(port, session, 1, 300)
            latency[name] = 1000 * statistics.median(result["total"])
        return {"choice_us": choice_cost(), "cpu_ms": cpu, "latency_ms": latency}
    finally:
        proc.terminate()
        proc.wait(20)
        for fake in fakes:
            if fake.poll() is None:
                fake.terminate()
                fake.wait(10)


def report(result: dict) -> None:
    print("\nreplicas: one backend, three replicas")
    choice = result["choice_us"]
    base = choice["one URL"]
    for name, us in choice.items():
        print(f"  choosing a replica (in process), {name:<24} {us:6.2f} us/request "
              f"(+{us - base:.2f} us over one URL; target <= 20 us)")  # fmt: skip
    cpu = result["cpu_ms"]
    print(f"  CPU per 4.7 KB request, c=16: one URL {cpu['one URL']:.3f} ms, three replicas "
          f"{cpu['3 replicas']:.3f} ms ({cpu['3 replicas'] / cpu['one URL']:.2f}x)")  # fmt: skip
    lat = result["latency_ms"]
    print(f"  p50 latency at c=1: replica up {lat['replica up']:.2f} ms, after one failover "
          f"(connection refused -> the next replica) {lat['one failover']:.2f} ms "
          f"(+{lat['one failover'] - lat['replica up']:.2f} ms)")  # fmt: skip
