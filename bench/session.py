"""The session scenario of `make bench`: a Claude Code conversation that grows
turn after turn (its captured system prompt and tools, a Bash round trip and
a token-budget reminder per turn), through the gateway to the fake backend.

Per turn it reports the gateway's CPU per request — which may grow with the
history only as much as reading it costs, so the figure per KB of request
should stay flat — and the share of the upstream prompt that repeats the
previous turn, as the gateway measured it (its request log line's
prefix_reuse): what a backend's prefix cache could reuse.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.claude_sessions import claude_code_session  # noqa: E402

REQUESTS_PER_TURN = 60


def session_bodies(turns: int) -> list[dict]:
    """All the capture's tools, ~2.5 KB of tool output per turn, 20-chunk streams."""
    output = "\n".join(f"-rw-r--r-- 1 dev dev {i * 37} file_{i}.py" for i in range(60))
    return claude_code_session(
        turns, output=output, stream=True, metadata={"user_id": "bench:20:0"}
    )


def run(bench, *, key: str, cpu_seconds, turns: int = 20) -> list[dict]:
    """One pass through the session (the reuse per turn), then each turn's
    request REQUESTS_PER_TURN times (the CPU per request). ``bench`` is
    bench/run.py's Bench."""
    bodies = session_bodies(turns)
    log = bench.tmp / "gateway.log"
    offset = log.stat().st_size
    session = {"x-api-key": key, "X-Claude-Code-Session-Id": "bench-session"}
    for body in bodies:
        bench.load(bench.gateway_port, "/v1/messages", body, 1, 1, session)
    lines = log.read_bytes()[offset:].decode(errors="replace").splitlines()
    reuse = [None] + [
        float(m.group(1)) if (m := re.search(r"prefix_reuse=([\d.]+)", x)) else None
        for x in lines
        if "toktoken.request" in x
    ][1:turns]
    rows = []
    for turn, body in enumerate(bodies):
        headers = {"x-api-key": key, "X-Claude-Code-Session-Id": f"bench-turn-{turn}"}
        bench.load(bench.gateway_port, "/v1/messages", body, 1, 5, headers)  # warm up
        cpu0 = cpu_seconds(bench.worker)
        bench.load(bench.gateway_port, "/v1/messages", body, 4, REQUESTS_PER_TURN, headers)
        cpu_ms = 1000 * (cpu_seconds(bench.worker) - cpu0) / REQUESTS_PER_TURN
        size_kb = len(json.dumps(body)) / 1024
        rows.append({"turn": turn + 1, "kb": size_kb, "cpu_ms": cpu_ms, "cpu_us_per_kb": 1000 * cpu_ms / size_kb,
                     "prefix_reuse": reuse[turn] if turn < len(reuse) else None})  # fmt: skip
    return rows


def report(rows: list[dict]) -> None:
    print()
    print("session: a growing Claude Code conversation, 20-chunk streams; CPU/req over "
          f"{REQUESTS_PER_TURN} requests per turn; reuse = the gateway's prefix measure")  # fmt: skip
    print(f"{'turn':>4} {'request':>9} {'CPU/req':>9} {'CPU/KB':>9} {'reuse':>7}")
    for r in rows:
        reuse = "" if r["prefix_reuse"] is None else f"{100 * r['prefix_reuse']:6.1f}%"
        print(
            f"{r['turn']:>4} {r['kb']:7.1f}KB {r['cpu_ms']:7.3f}ms {r['cpu_us_per_kb']:7.1f}us {reuse:>7}"
        )
