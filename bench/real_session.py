"""`make bench-real`: a Claude Code session through the gateway to a real
llama-server (deploy/local-model/start_llama_server.sh; the first run builds
it, about 5 minutes), turn by turn: the prompt tokens the server evaluated
and those it reused from its cache (its own counts, as the client gets them:
input_tokens / cache_read_input_tokens), and the time to the first streamed
event of the answer. The first turn is cold; a cache-keeping session makes
every later one cheap. A control session with a changing first line in the
system prompt shows what a cache-busting client would cost.

    python bench/real_session.py [TURNS]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import free_port  # noqa: E402
from session import session_bodies  # noqa: E402

KEY = "bench-key"


def start_llama_server() -> tuple[str, int]:
    port = free_port()
    out = subprocess.run(["bash", str(ROOT / "deploy/local-model/start_llama_server.sh")],
                         env={**os.environ, "PORT": str(port), "LS_CTX": "32768"},
                         capture_output=True, text=True, check=True)  # fmt: skip
    return f"http://127.0.0.1:{port}", int(out.stdout.strip().splitlines()[-1])


def start_gateway(backend: str, tmp: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", API_KEY=KEY, VLLM_URL=backend,
               VLLM_MODEL="gemma-3-270m")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                            cwd=ROOT, env=env, stdout=open(tmp / "gateway.log", "wb"),
                            stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            requests.get(url + "/health", timeout=5)
            return url, proc
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("the gateway did not start")


def turn(gateway: str, body: dict, session: str) -> dict:
    """One streamed turn: time to the first event after message_start, and usage."""
    started = time.monotonic()
    first = None
    usage: dict = {}
    body = dict(body, max_tokens=8, metadata={})
    with requests.post(gateway + "/v1/messages", json=body, stream=True, timeout=600,
                       headers={"x-api-key": KEY, "X-Claude-Code-Session-Id": session}) as r:  # fmt: skip
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "message_start":
                usage.update(event["message"]["usage"])
            elif event["type"] == "content_block_start" and first is None:
                first = time.monotonic() - started
            elif event["type"] == "message_delta":
                usage.update(event.get("usage") or {})
    return {"ttft_s": first, "evaluated": usage.get("input_tokens"),
            "reused": usage.get("cache_read_input_tokens")}  # fmt: skip


def main() -> int:
    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    tmp = Path(tempfile.mkdtemp(prefix="toktoken-real-bench-"))
    backend, server_pid = start_llama_server()
    gateway, proc = start_gateway(backend, tmp)
    try:
        bodies = session_bodies(turns)
        busting = [dict(b, system=[{"type": "text", "text": f"Session turn {i + 1}."}, *b["system"]])
                   for i, b in enumerate(bodies)]  # fmt: skip
        for name, session in (("kept", bodies), ("control: a changing first line", busting)):
            print(f"\nsession ({name}): llama-server, Gemma 3 270M, 2 cores")
            print(f"{'turn':>4} {'evaluated':>10} {'reused':>8} {'reuse':>7} {'first event':>12}")
            previous = None
            for i, body in enumerate(session):
                t = turn(gateway, body, f"bench-{name}")
                prompt = t["evaluated"] + t["reused"]
                share = f"{100 * t['reused'] / previous:6.1f}%" if previous else ""
                print(
                    f"{i + 1:>4} {t['evaluated']:>10} {t['reused']:>8} {share:>7} {t['ttft_s']:10.2f} s"
                )
                previous = prompt
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        os.kill(server_pid, signal.SIGTERM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
