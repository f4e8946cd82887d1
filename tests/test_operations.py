"""An operator's first day: the configured model against what the backend
serves, /health that follows what requests see, and backups of the usage
ledger while the gateway writes it (docs/deployment.md, "Operating it")."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import requests

from toktoken.backends.registry import served_model

from .conftest import KEY, ROOT, GatewayProcess, free_port
from .fake_backend import FakeBackend, Json, default_handler

HEADERS = {"x-api-key": KEY, "Connection": "close"}
HELLO = {"model": "local", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


def _cli(*args: str, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "VISION_", "TELEMETRY"))
    }
    return subprocess.run([sys.executable, "-m", "toktoken", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**clean, **env}, input=stdin, timeout=60)  # fmt: skip


# The configured model against the backend's list ---------------------------------


def test_served_model_rules():
    hf = "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"
    assert served_model("qwen3-coder-30b-fp8", (hf,)) == (hf, None)  # the only one: used
    assert served_model(hf, (hf, "other")) == (hf, None)
    assert served_model("qwen3", ("qwen3:latest", "llama3:8b")) == ("qwen3", None)  # Ollama
    assert served_model("x", ()) == ("x", None)  # a server that lists nothing
    use, problem = served_model("qwen3-coder", ("a", "b"))
    assert use == "qwen3-coder" and problem == "model 'qwen3-coder' is not served (it serves: a, b)"


def test_the_only_served_model_is_used_and_the_log_says_so(tmp_path):
    fake = FakeBackend()
    fake.served = ["Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"]  # vLLM without --served-model-name
    env = {"VLLM_URL": fake.url, "VLLM_MODEL": "qwen3-coder-30b-fp8"}
    gw = GatewayProcess({**env, "API_KEY": KEY}, tmp_path / "gw.log")
    try:
        r = requests.post(gw.url + "/v1/messages", headers=HEADERS, json=HELLO, timeout=30)
        assert r.status_code == 200 and r.json()["model"] == "local"  # the client's name in replies
        assert fake.chat_requests[-1].body["model"] == "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"
        said = "serves one model, 'Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8', not the configured 'qwen3-coder-30b-fp8'"
        assert said in gw.log()
        health = requests.get(gw.url + "/health", headers=HEADERS, timeout=10).json()
        assert health["status"] == "ok"
        assert health["backends"][0]["model"] == "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"
        out = _cli("check", env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert (
            "serves only 'Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8', not the configured" in out.stdout
        )
    finally:
        gw.stop()
        fake.close()


def test_a_llama_server_with_one_model_keeps_the_configured_name(tmp_path):
    """llama.cpp's server answers any model name with the one it loaded (it
    lists the file path): the operator's name stays, nothing is said."""
    fake = FakeBackend()

    def llama(req):
        if req.path.endswith("/models"):
            entry = {
                "id": "/models/qwen3-coder-q4_k_m.gguf",
                "object": "model",
                "owned_by": "llamacpp",
            }
            return Json({"object": "list", "data": [entry]})
        return default_handler(req)

    fake.handler = llama
    gw = GatewayProcess({"VLLM_URL": fake.url, "VLLM_MODEL": "qwen3-coder", "API_KEY": KEY},
                        tmp_path / "gw.log")  # fmt: skip
    try:
        r = requests.post(gw.url + "/v1/messages", headers=HEADERS, json=HELLO, timeout=30)
        assert r.status_code == 200 and fake.chat_requests[-1].body["model"] == "qwen3-coder"
        health = requests.get(gw.url + "/health", headers=HEADERS, timeout=10).json()
        assert health["status"] == "ok" and "problem" not in health["backends"][0]
        assert "serves one model" not in gw.log()
    finally:
        gw.stop()
        fake.close()


def test_a_model_the_backend_does_not_serve_is_named_at_start_in_check_and_health(tmp_path):
    fake = FakeBackend()
    fake.served = ["Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", "Qwen/Qwen3-4B"]
    gw = GatewayProcess({"VLLM_URL": fake.url, "VLLM_MODEL": "qwen3-coder", "API_KEY": KEY},
                        tmp_path / "gw.log")  # fmt: skip
    try:
        served = "it serves: Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8, Qwen/Qwen3-4B"
        deadline = time.monotonic() + 10
        while served not in gw.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"model 'qwen3-coder' is not served ({served})" in gw.log()
        health = requests.get(gw.url + "/health", headers=HEADERS, timeout=10).json()
        assert health["status"] == "degraded" and served in health["backends"][0]["problem"]
        public = requests.get(gw.url + "/health", timeout=10).json()
        assert public["status"] == "degraded" and "problem" not in public["backends"][0]
        page = requests.get(gw.url + "/dashboard", headers=HEADERS, timeout=10).text
        assert "wrong model" in page and "Qwen/Qwen3-4B" in page
        out = _cli("check", env={"VLLM_URL": fake.url, "VLLM_MODEL": "qwen3-coder"})
        assert (
            out.returncode == 1
            and f"PROBLEM: model 'qwen3-coder' is not served ({served})" in out.stdout
        )
    finally:
        gw.stop()
        fake.close()


# /health follows what requests see -------------------------------------------------


def test_health_follows_request_outcomes_between_probes(tmp_path):
    port = free_port()
    fake = FakeBackend(port)
    gw = GatewayProcess({"VLLM_URL": fake.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY,
                         "HEALTH_INTERVAL": "300"}, tmp_path / "gw.log")  # fmt: skip
    try:
        assert requests.get(gw.url + "/health/ready", timeout=10).status_code == 200
        fake.kill()
        r = requests.post(gw.url + "/v1/messages", headers=HEADERS, json=HELLO, timeout=30)
        assert r.status_code == 502 and "unreachable" in r.json()["error"]["message"]
        # At once, not at the next probe (300 s away):
        ready = requests.get(gw.url + "/health/ready", timeout=10)
        assert ready.status_code == 503 and ready.json()["ready"] is False
        health = requests.get(gw.url + "/health", headers=HEADERS, timeout=10).json()
        assert health["status"] == "degraded" and health["backends"][0]["up"] is False
        assert "a request: connection refused" in health["backends"][0]["detail"]
        fake = FakeBackend(port)  # back, on the same port
        r = requests.post(gw.url + "/v1/messages", headers=HEADERS, json=HELLO, timeout=30)
        assert r.status_code == 200
        assert requests.get(gw.url + "/health/ready", timeout=10).status_code == 200
        assert requests.get(gw.url + "/health", timeout=10).json()["status"] == "ok"
        assert "is NOT reachable (connection refused)" in gw.log()
        assert "is reachable again (a request was answered)" in gw.log()
    finally:
        gw.stop()
        fake.close()


# Backing up the ledger while it is written -----------------------------------------


def _records(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM usage").fetchone()[0]


def test_backup_while_the_gateway_writes_then_restore(backend, tmp_path):
    ledger = tmp_path / "usage.db"
    env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY,
           "TELEMETRY_ENABLED": "true", "TELEMETRY_DB": str(ledger), "TELEMETRY_FLUSH_INTERVAL": "0.1"}  # fmt: skip
    gw = GatewayProcess(env, tmp_path / "gw.log")
    stop = threading.Event()
    sent = []

    def traffic():
        while not stop.is_set():
            r = requests.post(gw.url + "/v1/messages", headers=HEADERS, json=HELLO, timeout=30)
            sent.append(r.status_code)

    writers = [threading.Thread(target=traffic) for _ in range(4)]
    try:
        for w in writers:
            w.start()
        while len(sent) < 40:
            time.sleep(0.05)
        backups = []
        for n in range(3):  # while the writers keep writing
            target = tmp_path / f"backup{n}.db"
            out = _cli("backup", str(target), env={"TELEMETRY_DB": str(ledger)})
            assert out.returncode == 0, out.stderr
            copied = int(out.stdout.split()[2])
            assert (
                out.stdout.strip() == f"backed up {copied} usage records from {ledger} to {target}"
            )
            backups.append((target, copied))
        stop.set()
        for w in writers:
            w.join(30)
        assert set(sent) == {200}
        counts = [c for _, c in backups]
        assert counts == sorted(counts) and counts[0] > 0
        for target, copied in backups:
            with sqlite3.connect(target) as db:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one file
            assert _records(target) == copied
        assert not list(tmp_path.glob(".*.partial"))
    finally:
        stop.set()
        gw.stop()
    assert _records(ledger) == len(sent)  # every request is in the ledger

    # Restore: the last backup becomes the ledger of a new gateway.
    target, copied = backups[-1]
    restored = tmp_path / "restored.db"
    restored.write_bytes(target.read_bytes())
    gw = GatewayProcess({**env, "TELEMETRY_DB": str(restored)}, tmp_path / "gw2.log")
    try:
        stats = requests.get(gw.url + "/stats", headers=HEADERS, timeout=10).json()
        assert stats["totals"]["requests"] == copied
    finally:
        gw.stop()


def test_backup_refuses_clearly(tmp_path):
    out = _cli("backup", str(tmp_path / "b.db"), env={"TELEMETRY_DB": "postgresql://u:p@db/x"})
    assert out.returncode == 2 and "pg_dump" in out.stderr and "u:p" not in out.stderr
    out = _cli("backup", str(tmp_path / "b.db"), env={"TELEMETRY_DB": str(tmp_path / "none.db")})
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "no usage ledger at" in out.stderr
    # A target that cannot be written: an error line, and nothing half-written left behind.
    ledger = tmp_path / "usage.db"
    with sqlite3.connect(ledger) as db:
        db.execute("CREATE TABLE usage (id INTEGER)")
    out = _cli("backup", str(tmp_path / "missing-dir" / "b.db"), env={"TELEMETRY_DB": str(ledger)})
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "missing-dir").exists()
    out = _cli("backup", env={"TELEMETRY_DB": str(ledger)})
    assert out.returncode == 2  # no PATH: the usage text


def test_workers_opening_a_new_ledger_at_once_all_start(tmp_path):
    """Every gunicorn worker opens the ledger when it boots: on a new file
    they race to switch it to WAL mode, and SQLite answers "database is
    locked" at once to a loser (seen in CI: the worker failed to boot, and
    took the master down). Eight processes, released at the same instant."""
    code = (
        "import sys, time\n"
        "from toktoken.telemetry import SQLiteStore\n"
        "go = float(sys.argv[2])\n"
        "while time.time() < go: pass\n"
        "SQLiteStore(sys.argv[1])\n"
    )
    for round_ in range(5):
        path, go = tmp_path / f"new{round_}.db", time.time() + 2
        procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(go)], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(8)]  # fmt: skip
        results = [(p.wait(60), p.stderr.read()) for p in procs]
        assert all(rc == 0 for rc, _ in results), [err for rc, err in results if rc][:1]


# make on a machine without the right Python ---------------------------------------------


def _fake_python(path, version_ok: bool, venv_ok: bool):
    """A stand-in for $(PYTHON): says its version, passes or fails the
    version check, can or cannot make a virtualenv."""
    path.write_text(
        "#!/bin/sh\n"
        '[ "$1" = --version ] && { echo "Python 3.10.12"; exit 0; }\n'
        f'[ "$1" = -c ] && exit {0 if version_ok else 1}\n'
        f'[ "$1" = -m ] && {{ echo "ensurepip is not available" >&2; exit {0 if venv_ok else 1}; }}\n'
        "exit 1\n"
    )
    path.chmod(0o755)
    return path


def test_make_says_in_one_line_what_python_is_missing(tmp_path):
    venv = tmp_path / "venv"
    for version_ok, expected in [
        (False, "toktoken needs Python 3.11 or newer; "),
        (
            True,
            "cannot create a virtualenv: install its venv module (Debian/Ubuntu: sudo apt install python3-venv)",
        ),
    ]:
        python = _fake_python(tmp_path / f"python-{version_ok}", version_ok, venv_ok=False)
        out = subprocess.run(["make", "-s", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={python}",
                              f"{venv}/.installed"], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode != 0 and expected in out.stderr, out.stderr
        assert not venv.exists()
    assert "Python 3.10.12" in subprocess.run(
        ["make", "-s", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={tmp_path}/python-False", f"{venv}/.installed"],
        capture_output=True, text=True, timeout=60,
    ).stderr  # fmt: skip
