"""The shipped deployment files, tested as far as this machine allows:
real nginx in front of real gunicorn instances, the systemd unit, the
Dockerfile's steps replayed in a clean virtualenv, Kubernetes manifests
validated against the Kubernetes schemas."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .conftest import KEY, ROOT, free_port, wait_for_http
from .fake_backend import Pause, Sse, chunk

DEPLOY = ROOT / "deploy"


def need(binary: str) -> str:
    path = shutil.which(binary) or (
        f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
    )
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{binary} is missing in CI: .ci/run should have installed it")
    pytest.skip(f"{binary} is not installed")


# nginx -------------------------------------------------------------------------


class Nginx:
    """The shipped site, with only its listen port and upstream servers
    changed, inside a minimal nginx.conf, run in the foreground."""

    def __init__(self, tmp: Path, upstream_ports: list[int]):
        site = (DEPLOY / "nginx" / "toktoken.conf").read_text()
        self.port = free_port()
        servers = "".join(
            f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n" for p in upstream_ports
        )
        site, n = re.subn(r"    server 127\.0\.0\.1:3456[^\n]*\n", servers, site)
        assert n == 1, "the shipped upstream block changed shape"
        site, n = re.subn(r"listen 80;", f"listen 127.0.0.1:{self.port};", site)
        assert n == 1
        (tmp / "logs").mkdir(parents=True, exist_ok=True)
        (tmp / "toktoken.conf").write_text(site)
        # As root, nginx's workers would drop to "nobody", who cannot write
        # the body buffers into pytest's private tmp directory.
        user = "user root;\n" if os.geteuid() == 0 else ""
        (tmp / "nginx.conf").write_text(
            f"{user}pid {tmp}/nginx.pid;\nerror_log {tmp}/logs/error.log warn;\nworker_processes 1;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n  access_log {tmp}/logs/access.log;\n  client_body_temp_path {tmp}/body;\n"
            f"  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fcgi;\n"
            f"  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
            f"  include {tmp}/toktoken.conf;\n}}\n"
        )
        binary = need("nginx")
        check = subprocess.run([binary, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                               capture_output=True, text=True)  # fmt: skip
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                                      "-g", "daemon off;"], stderr=subprocess.PIPE)  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"
        if not wait_for_http(self.url + "/health", 15, self.proc):
            raise RuntimeError("nginx did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def nginx_factory(tmp_path):
    started = []

    def start(ports):
        n = Nginx(tmp_path / f"nginx{len(started)}", ports)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def test_stream_through_nginx_arrives_event_by_event(gateway, backend, nginx_factory):
    nginx = nginx_factory([gateway.port])
    backend.handler = lambda req: Sse([chunk({"content": "one "}), Pause(0.7), chunk({"content": "two "}),
                                       Pause(0.7), chunk({"content": "three"}), chunk({}, "stop")])  # fmt: skip
    r = requests.post(nginx.url + "/v1/messages", stream=True, timeout=30,
                      headers={"x-api-key": KEY},
                      json={"model": "m", "max_tokens": 10, "stream": True,
                            "messages": [{"role": "user", "content": "count"}]})  # fmt: skip
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    arrivals = []
    for piece in r.iter_content(chunk_size=None):
        for frame in piece.split(b"\n\n"):
            if b"text_delta" in frame:
                arrivals.append(
                    (time.monotonic(), json.loads(frame.split(b"data: ", 1)[1])["delta"]["text"])
                )
    assert [text for _, text in arrivals] == ["one ", "two ", "three"]
    # each delta arrived on its own, ~0.7 s apart: nginx did not buffer them
    assert arrivals[1][0] - arrivals[0][0] > 0.4 and arrivals[2][0] - arrivals[1][0] > 0.4


def test_client_disconnect_at_nginx_reaches_the_backend(gateway, backend, nginx_factory):
    nginx = nginx_factory([gateway.port])
    items = [chunk({"content": "tick"}) if i % 2 == 0 else Pause(0.1) for i in range(300)]
    backend.handler = lambda req: Sse(items + [chunk({}, "stop")])
    r = requests.post(nginx.url + "/v1/messages", stream=True, timeout=30, headers={"x-api-key": KEY},
                      json={"model": "m", "max_tokens": 10, "stream": True,
                            "messages": [{"role": "user", "content": "go"}]})  # fmt: skip
    it = r.iter_content(chunk_size=None)
    next(it), next(it)
    r.close()
    assert backend.wait_for_disconnect(5), "the disconnect never reached the backend"


def test_two_gunicorn_instances_share_the_load(gateway_factory, backend, nginx_factory):
    a = gateway_factory(VLLM_MODEL="instance-a")
    b = gateway_factory(VLLM_MODEL="instance-b")
    nginx = nginx_factory([a.port, b.port])
    for _ in range(12):
        r = requests.post(nginx.url + "/v1/messages", headers={"x-api-key": KEY}, timeout=30,
                          json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        assert r.status_code == 200
    served = [req.body["model"] for req in backend.chat_requests]
    assert served.count("instance-a") >= 3 and served.count("instance-b") >= 3


def test_large_body_passes_nginx(gateway, backend, nginx_factory):
    nginx = nginx_factory([gateway.port])
    big = "x" * (5 * 1024 * 1024)
    r = requests.post(nginx.url + "/v1/messages", headers={"x-api-key": KEY}, timeout=60,
                      json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": big}]})  # fmt: skip
    assert r.status_code == 200, r.text[:300]
    assert backend.chat_requests[-1].body["messages"][-1]["content"] == big  # all of it, unchanged


# systemd -----------------------------------------------------------------------------


def _unit() -> str:
    return (DEPLOY / "systemd" / "toktoken.service").read_text()


def _rendered_unit(tmp_path: Path) -> Path:
    """The unit with /opt/toktoken pointing at this checkout and its venv."""
    venv_python = Path(sys.executable)
    text = _unit().replace("/opt/toktoken/.venv/bin/python", str(venv_python))
    text = text.replace("/opt/toktoken", str(ROOT))
    text = text.replace(
        "/etc/toktoken/toktoken.env", str(DEPLOY / "systemd" / "toktoken.env.example")
    )
    path = tmp_path / "toktoken.service"
    path.write_text(text)
    return path


def test_systemd_unit_verifies(tmp_path):
    analyze = need("systemd-analyze")
    proc = subprocess.run(
        [analyze, "verify", str(_rendered_unit(tmp_path))], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_systemd_unit_has_the_promised_settings():
    unit = _unit()
    for line in ["EnvironmentFile=/etc/toktoken/toktoken.env", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "PrivateTmp=yes", "ExecReload=/bin/kill -HUP $MAINPID"]:  # fmt: skip
        assert line in unit.splitlines(), line


def _env_file(path: Path) -> dict:
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def test_systemd_execstart_serves_reloads_and_stops(tmp_path, backend):
    unit = _rendered_unit(tmp_path).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    env = {"PATH": os.environ["PATH"], **_env_file(DEPLOY / "systemd" / "toktoken.env.example")}
    port = free_port()
    env.update(PORT=str(port), VLLM_URL=backend.url, API_KEY=KEY, WORKERS="2")
    workdir = re.search(r"^WorkingDirectory=(.+)$", unit, re.M).group(1)
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        shlex.split(exec_start), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_http(url + "/health", 30, proc), (tmp_path / "serve.log").read_text()
        # A client that keeps its connection idle, as every SDK and Claude Code do:
        # neither the reload nor the stop waits for it.
        idle = requests.Session()
        r = idle.post(url + "/v1/messages", headers={"x-api-key": KEY},
                      json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        assert r.status_code == 200
        proc.send_signal(signal.SIGHUP)  # ExecReload
        time.sleep(1.5)
        assert requests.get(url + "/health", timeout=5).status_code == 200
        assert "Worker graceful timeout" not in (tmp_path / "serve.log").read_text()
        r = idle.post(url + "/v1/messages", headers={"x-api-key": KEY},
                      json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        assert r.status_code == 200  # the client's next request reaches a new worker
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # KillSignal
        assert proc.wait(20) == 0
        assert time.monotonic() - stopped < 3, "the stop waited for an idle client"
    finally:
        if proc.poll() is None:
            proc.kill()


# Docker ---------------------------------------------------------------------------------


def test_dockerfile_steps_replayed_in_a_clean_virtualenv(tmp_path, backend):
    """No Docker engine here: replay the Dockerfile's COPY, RUN pip install,
    CMD and HEALTHCHECK in a fresh venv and a fresh /app-like directory."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    app = tmp_path / "app"
    app.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        "PATH": f"{venv}/bin:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
    }
    for line in lines:
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value
        elif line.startswith("COPY "):
            *sources, dest = line[5:].split()
            target = app / dest.removeprefix("/app").lstrip("/")
            for source in sources:
                src = ROOT / source
                to = target if len(sources) == 1 and not dest.endswith("/") else target / src.name
                if src.is_dir():
                    shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    to.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, to)
        elif line.startswith("RUN pip "):
            proc = subprocess.run(line[4:], shell=True, cwd=app, env=env, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-2000:]
    cmd = json.loads(re.search(r"^CMD (\[.+\])$", "\n".join(lines), re.M).group(1))
    health = re.search(r"^HEALTHCHECK .* CMD (.+)$", "\n".join(lines), re.M).group(1)
    port = free_port()
    run_env = dict(env, PORT=str(port), HOST="127.0.0.1", VLLM_URL=backend.url, API_KEY=KEY)
    proc = subprocess.Popen(
        cmd, cwd=app, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            check = subprocess.run(health, shell=True, cwd=app, env=run_env, capture_output=True)
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, "HEALTHCHECK never passed"
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            time.sleep(0.2)
        r = requests.post(f"http://127.0.0.1:{port}/v1/messages", headers={"x-api-key": KEY, "Connection": "close"},
                          json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_dockerfile_runs_as_non_root_with_healthcheck_and_volume():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert (
        re.search(r"^USER toktoken$", text, re.M)
        and "HEALTHCHECK" in text
        and "VOLUME /data" in text
    )


# Kubernetes -----------------------------------------------------------------------------


def test_kubernetes_manifests_validate_against_the_schemas():
    manifests = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
    assert {m.stem for m in manifests} >= {
        "deployment",
        "service",
        "configmap",
        "secret",
        "hpa",
        "pdb",
    }
    validate = Path(sys.executable).parent / "kubernetes-validate"
    proc = subprocess.run([str(validate), "--strict", "--quiet", *map(str, manifests)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kubernetes_validation_catches_a_broken_manifest(tmp_path):
    broken = (
        (DEPLOY / "kubernetes" / "deployment.yaml")
        .read_text()
        .replace("containerPort:", "containerPorts:")
    )
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    validate = Path(sys.executable).parent / "kubernetes-validate"
    proc = subprocess.run(
        [str(validate), "--strict", "--quiet", str(path)], capture_output=True, text=True
    )
    assert proc.returncode != 0


def test_kubernetes_probes_and_termination():
    import yaml

    deployment = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    config = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())["data"]
    assert pod["terminationGracePeriodSeconds"] > int(config["GRACEFUL_TIMEOUT"])


def test_kubernetes_termination_replayed(tmp_path, backend):
    """What the kubelet does, in order: the preStop sleep (the Service stops
    routing here; requests still arrive and are served), then SIGTERM with a
    stream in flight and idle keep-alive clients: the stream completes and the
    process exits right after, far inside terminationGracePeriodSeconds."""
    import yaml

    from .conftest import GatewayProcess
    from .fake_backend import Pause, Sse, chunk, usage_chunk

    pod = yaml.safe_load((DEPLOY / "kubernetes" / "deployment.yaml").read_text())["spec"][
        "template"
    ]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    config = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())["data"]
    env = {k: v for k, v in config.items() if k not in ("HOST", "PORT")}
    gw = GatewayProcess({**env, "VLLM_URL": backend.url, "API_KEY": KEY}, tmp_path / "gw.log")
    try:
        idle = requests.Session()
        assert idle.get(gw.url + "/health/ready", timeout=5).status_code == 200
        started = time.monotonic()
        while time.monotonic() - started < pre_stop:  # preStop: still serving
            assert requests.get(gw.url + "/health/ready", timeout=5).status_code == 200
            time.sleep(0.5)
        backend.handler = lambda req: Sse([chunk({"content": "a"}), Pause(1.0), chunk({"content": "b"}),
                                           chunk({}, "stop"), usage_chunk(5, 2)])  # fmt: skip
        r = requests.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, stream=True, timeout=30,
                          json={"model": "m", "max_tokens": 5, "stream": True,
                                "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
        parts = r.iter_content(chunk_size=None)
        received = [next(parts)]
        gw.proc.send_signal(signal.SIGTERM)
        received += list(parts)
        assert b"event: message_stop" in b"".join(received)
        assert gw.proc.wait(pod["terminationGracePeriodSeconds"]) == 0
        assert time.monotonic() - started < pre_stop + 5
    finally:
        gw.stop()
