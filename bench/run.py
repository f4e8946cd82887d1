"""`make bench`: what the gateway adds, measured against the backend directly.

The gateway runs as in production (gunicorn + gevent) with one worker pinned
to core 0; the fake backend and the load generator share core 1. Every
workload runs twice in the same session — directly against the backend and
through the gateway — and is reported as a difference or a ratio, plus the
worker's own CPU time from /proc, which is stable on a noisy machine.

``--baseline REV`` (``make bench BASELINE=REV``) also runs the gateway as it
was at git revision REV (a temporary worktree), workload by workload beside
the current one in the same session, and reports the current CPU per
request as a ratio of the baseline's: the way to show a change is not slower.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import convert_chunks  # noqa: E402  (bench/convert_chunks.py)
import replicas  # noqa: E402  (bench/replicas.py)
import session  # noqa: E402  (bench/session.py)

from toktoken.convert import to_openai_request  # noqa: E402

KEY = "bench-key"
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if CORES > 1 and shutil_which("taskset") else []


def shutil_which(name: str) -> str | None:
    from shutil import which

    return which(name)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def small_body() -> dict:
    """A ~4.7 KB Claude-Code-like request."""
    schema = {"type": "object", "properties": {
        "command": {"type": "string", "description": "The command to execute in the shell. " * 6},
        "timeout": {"type": "number", "description": "Optional timeout in milliseconds."},
        "description": {"type": "string", "description": "What the command does, in a few words. " * 4}},
        "required": ["command"], "additionalProperties": False}  # fmt: skip
    return {
        "model": "claude-opus-5-5", "max_tokens": 32000, "stream": False,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332;"},
                   {"type": "text", "text": "You are a careful coding agent. " * 55,
                    "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "Runs a shell command. " * 20, "input_schema": schema},
                  {"name": "Read", "description": "Reads a file. " * 20, "input_schema": schema}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Please look at the failing test. " * 12}]}],
        "metadata": {"user_id": "bench:50:0"},
        "thinking": {"type": "adaptive"}, "output_config": {"effort": "medium"},
    }  # fmt: skip


def big_body() -> dict:
    body = json.loads((ROOT / "tests/fixtures/claude-code/text.1.json").read_text())["body"]
    return dict(body, stream=False, metadata={"user_id": "bench:50:0"})


class Bench:
    ROUNDS = 3  # per workload, when there is a baseline

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="toktoken-bench-"))
        self.backend_port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.baseline: tuple[int, int] | None = None  # (port, worker pid)

    def start(self, baseline_root: Path | None = None) -> None:
        self.procs.append(subprocess.Popen(
            [*pinned(1), sys.executable, str(ROOT / "bench/fake_backend.py"), str(self.backend_port)]))  # fmt: skip
        self.gateway_port, self.worker = self.start_gateway(ROOT, "gateway")
        if baseline_root is not None:
            self.baseline = self.start_gateway(baseline_root, "baseline")

    def start_gateway(self, root: Path, name: str) -> tuple[int, int]:
        """A gateway served from the tree at ``root``: (port, worker pid)."""
        port = free_port()
        env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", API_KEY=KEY,
                   VLLM_URL=f"http://127.0.0.1:{self.backend_port}", VLLM_MODEL="bench", VLLM_KIND="openai",
                   WORKER_CONNECTIONS="2000")  # fmt: skip
        proc = subprocess.Popen(
            [*pinned(0), sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=root, env=env, stdout=open(self.tmp / f"{name}.log", "wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs.append(proc)
        return port, worker_when_up(proc, f"http://127.0.0.1:{port}/health")

    def floor(self, body: dict, concurrency: int, count: int) -> dict:
        """CPU per request of bench/bare_relay.py — the same stack with nothing
        of the gateway's work — run like the gateway (one gevent worker on
        core 0), with the body the gateway would send upstream."""
        port = free_port()
        env = dict(os.environ, VLLM_URL=f"http://127.0.0.1:{self.backend_port}")
        proc = subprocess.Popen(
            [*pinned(0), sys.executable, "-m", "gunicorn", "-c", os.devnull, "-k", "gevent", "-w", "1",
             "--worker-connections", "2000", "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT / "bench"),
             "bare_relay:app"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            worker = worker_when_up(proc, f"http://127.0.0.1:{port}/")
            path = "/v1/chat/completions"
            self.load(port, path, body, min(concurrency, 8), 40)  # warm up
            cpu0 = cpu_seconds(worker)
            self.load(port, path, body, concurrency, count)
            return {
                "concurrency": concurrency,
                "cpu_ms_per_request": 1000 * (cpu_seconds(worker) - cpu0) / count,
            }
        finally:
            proc.terminate()
            proc.wait(20)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(20)

    def load(
        self, port: int, path: str, body: dict, concurrency: int, count: int, headers=None
    ) -> dict:
        body_file = self.tmp / f"body-{abs(hash(json.dumps(body, sort_keys=True)))}.json"
        body_file.write_bytes(json.dumps(body).encode())
        spec = {"port": port, "path": path, "body_file": str(body_file), "headers": headers or {},
                "concurrency": concurrency, "requests": count}  # fmt: skip
        out = subprocess.run([*pinned(1), sys.executable, str(ROOT / "bench/loadgen.py"), json.dumps(spec)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(out.stdout)

    def compare(
        self, name: str, body: dict, concurrency: int, count: int, route: str = "anthropic"
    ) -> dict:
        """The same workload directly and through the gateway."""
        stream = bool(body.get("stream"))
        if route == "anthropic":
            direct_body = to_openai_request(body, "bench", stream=stream)
            path, headers = "/v1/messages", {"x-api-key": KEY}
        else:
            direct_body = dict(body, model="bench")
            if stream:
                direct_body["stream_options"] = {"include_usage": True}
            path, headers = "/v1/chat/completions", {"Authorization": f"Bearer {KEY}"}
        self.load(self.gateway_port, path, body, min(concurrency, 8), 40, headers)  # warm up
        direct = self.load(
            self.backend_port, "/v1/chat/completions", direct_body, concurrency, count
        )

        def run(port: int, worker: int):
            cpu0 = cpu_seconds(worker)
            sampler = RssSampler(worker)
            result = self.load(port, path, body, concurrency, count, headers)
            sampler.stop()
            return result, (cpu_seconds(worker) - cpu0), sampler.peak

        rss0 = rss_mb(self.worker)
        via, cpu, peak = run(self.gateway_port, self.worker)
        baseline_cpu = None
        if self.baseline is not None:
            # Interleaved rounds (baseline, current, baseline, current, ...)
            # and the median of each: a noisy neighbour slows both alike.
            self.load(self.baseline[0], path, body, min(concurrency, 8), 40, headers)
            base_runs, runs = [], [cpu]
            for _ in range(self.ROUNDS):
                base_runs.append(run(*self.baseline)[1])
                runs.append(run(self.gateway_port, self.worker)[1])
            baseline_cpu, cpu = statistics.median(base_runs), statistics.median(runs)
        return {
            "name": name, "concurrency": concurrency, "requests": count,
            "direct_p50_ms": 1000 * statistics.median(direct["total"]),
            "gateway_p50_ms": 1000 * statistics.median(via["total"]),
            "direct_wall_s": direct["wall"], "gateway_wall_s": via["wall"],
            "ttfb_p50_ms": 1000 * statistics.median(via["ttfb"]),
            "ttfb_p99_ms": 1000 * quantile(via["ttfb"], 0.99),
            "cpu_ms_per_request": 1000 * cpu / count,
            "baseline_cpu_ms_per_request": None if baseline_cpu is None else 1000 * baseline_cpu / count,
            "rss_mb_before": rss0, "rss_mb_peak": peak,
        }  # fmt: skip


def worker_when_up(master: subprocess.Popen, url: str) -> int:
    """Wait until a gunicorn answers at ``url``; its (one) worker's pid."""
    for _ in range(300):
        try:
            requests.get(url, timeout=2)
            break
        except requests.RequestException:
            time.sleep(0.05)
    children = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True)
    return int(children.stdout.split()[0])


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", metavar="REV", help="also run the gateway as of git revision REV"
    )
    parser.add_argument("--only", choices=["session", "replicas"], help="run one scenario only")
    args = parser.parse_args()
    bench = Bench()
    baseline_root = worktree(args.baseline, bench.tmp) if args.baseline else None
    bench.start(baseline_root)
    results, floor = [], None
    try:
        if args.only == "session":
            session.report(session.run(bench, key=KEY, cpu_seconds=cpu_seconds))
            return 0
        if args.only == "replicas":
            replicas.report(
                replicas.run(bench, key=KEY, body=small_body(), cpu_seconds=cpu_seconds)
            )
            return 0
        small, big = small_body(), big_body()
        print(f"bodies: small {len(json.dumps(small))} B, big {len(json.dumps(big))} B; gateway worker "
              f"pid {bench.worker} on core 0, backend + load generator on core 1", flush=True)  # fmt: skip
        for concurrency, count in ((1, 400), (16, 1500), (64, 1500)):
            results.append(
                bench.compare(f"4.7 KB, non-streaming, c={concurrency}", small, concurrency, count)
            )
        for concurrency, count in ((1, 200), (16, 600)):
            results.append(
                bench.compare(f"49 KB, non-streaming, c={concurrency}", big, concurrency, count)
            )
        stream = dict(small, stream=True, metadata={"user_id": "bench:50:0"})
        results.append(bench.compare("stream 50 chunks, c=1", stream, 1, 300))
        results.append(bench.compare("stream 50 chunks, c=16", stream, 16, 800))
        openai_body = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi " * 800}],
                       "user": "bench:50:0"}  # fmt: skip
        results.append(
            bench.compare(
                "OpenAI route, non-streaming, c=16", openai_body, 16, 1500, route="openai"
            )
        )
        results.append(bench.compare("OpenAI route, stream 50 chunks, c=16", dict(openai_body, stream=True),
                                     16, 800, route="openai"))  # fmt: skip
        hold = dict(small, stream=True, metadata={"user_id": "bench:100:50"})
        results.append(bench.compare("hold: 500 streams x 100 chunks 50 ms apart", hold, 500, 500))
        floor = bench.floor(to_openai_request(small, "bench", stream=False), 16, 1500)
        session_rows = session.run(bench, key=KEY, cpu_seconds=cpu_seconds)
        replica_rows = replicas.run(bench, key=KEY, body=small, cpu_seconds=cpu_seconds)
    finally:
        bench.stop()
        if baseline_root is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline_root)],
                           capture_output=True)  # fmt: skip
            shutil.rmtree(baseline_root, ignore_errors=True)
    report(results, floor, args.baseline)
    session.report(session_rows)
    replicas.report(replica_rows)
    chunk_costs = convert_chunks.measure()
    convert_chunks.report(chunk_costs)
    Path(ROOT / "bench" / "last-results.json").write_text(
        json.dumps(
            {
                "workloads": results,
                "floor": floor,
                "session": session_rows,
                "stream_machine_us_per_chunk": {k: v * 1e6 for k, v in chunk_costs.items()},
                "replicas": replica_rows,
            },
            indent=1,
        )  # fmt: skip
    )
    return 0


def worktree(rev: str, tmp: Path) -> Path:
    """The tree of ``rev`` in a temporary git worktree."""
    path = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                   check=True, capture_output=True)  # fmt: skip
    return path


def report(results: list[dict], floor: dict, baseline: str | None = None) -> None:
    print()
    print(
        "CPU/req: the gateway worker's CPU time per request (/proc); CPU/chunk: CPU/req / chunks (an upper bound)"
    )
    if baseline:
        print(f"vs {baseline}: CPU/req as a ratio of the gateway at {baseline}, measured beside it")
    print(
        f"{'workload':44} {'direct p50':>11} {'added p50':>10} {'wall ratio':>10} {'CPU/req':>9} {'CPU/chunk':>10}"
        + (f" {'vs base':>8}" if baseline else "")
    )
    for r in results:
        chunks = 100 if r["name"].startswith("hold") else 50 if "stream 50" in r["name"] else 0
        per_chunk = f"{r['cpu_ms_per_request'] / chunks:.4f}" if chunks else ""
        versus = ""
        if r.get("baseline_cpu_ms_per_request"):
            versus = f" {r['cpu_ms_per_request'] / r['baseline_cpu_ms_per_request']:7.3f}x"
        print(f"{r['name']:44} {r['direct_p50_ms']:9.2f}ms {r['gateway_p50_ms'] - r['direct_p50_ms']:8.2f}ms "
              f"{r['gateway_wall_s'] / r['direct_wall_s']:9.2f}x {r['cpu_ms_per_request']:7.3f}ms {per_chunk:>10}"
              + versus)  # fmt: skip
    hold = results[-1]
    print()
    print(f"hold test: completion {hold['gateway_wall_s']:.2f} s through the gateway vs {hold['direct_wall_s']:.2f} s "
          f"direct ({hold['gateway_wall_s'] / hold['direct_wall_s']:.2f}x); time to first byte p50 "
          f"{hold['ttfb_p50_ms']:.0f} ms, p99 {hold['ttfb_p99_ms']:.0f} ms; worker RSS peak {hold['rss_mb_peak']:.0f} MB")  # fmt: skip
    small = next(r for r in results if r["name"] == "4.7 KB, non-streaming, c=16")
    print(f"stack floor (bench/bare_relay.py: Flask + gunicorn/gevent + requests, nothing else), 4.7 KB, "
          f"c=16: {floor['cpu_ms_per_request']:.3f} ms CPU/req; the gateway: {small['cpu_ms_per_request']:.3f} ms "
          f"({small['cpu_ms_per_request'] / floor['cpu_ms_per_request']:.2f}x the floor)")  # fmt: skip
    print()
    print("targets (issue 7; one worker on one core):")
    for line in target_lines(results):
        print("  " + line)


def target_lines(results: list[dict]) -> list[str]:
    """Each target, the figure measured for it, and met or by how much it is missed."""
    by_name = {r["name"]: r for r in results}
    cpu = {name: r["cpu_ms_per_request"] for name, r in by_name.items()}
    small = max(cpu[f"4.7 KB, non-streaming, c={c}"] for c in (16, 64))
    big = max(cpu[f"49 KB, non-streaming, c={c}"] for c in (1, 16))
    # A chunk's cost beyond the request that carries it (back-to-back chunks).
    chunk = (cpu["stream 50 chunks, c=16"] - cpu["4.7 KB, non-streaming, c=16"]) / 50
    added = by_name["4.7 KB, non-streaming, c=1"]
    hold = results[-1]
    rows = [
        ("CPU per 4.7 KB request (c=16/64, worst)", small, 1.0, "ms"),
        ("CPU per 49 KB request (c=1/16, worst)", big, 3.0, "ms"),
        ("CPU per streamed chunk (back to back)", chunk, 0.02, "ms"),
        ("added p50 latency at c=1", added["gateway_p50_ms"] - added["direct_p50_ms"], 1.5, "ms"),
        ("hold: completion vs direct", hold["gateway_wall_s"] / hold["direct_wall_s"], 1.1, "x"),
        ("hold: time to first byte p99", hold["ttfb_p99_ms"], 200, "ms"),
        ("hold: worker RSS peak", hold["rss_mb_peak"], 150, "MB"),
    ]
    lines = []
    for label, value, limit, unit in rows:
        verdict = "met" if value <= limit else f"missed by {100 * (value / limit - 1):.1f} %"
        lines.append(f"{label:42} {value:9.3f} {unit:2} (target <= {limit:g} {unit}): {verdict}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
