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


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (openssl)."""
    cert, key = tmp / "tls.pem", tmp / "tls.key"
    subprocess.run([need("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)  # fmt: skip
    return cert, key


class Nginx:
    """The shipped site, with only its listen addresses, certificate paths and
    upstream servers changed (and ``edit`` applied, if given), inside a
    minimal nginx.conf, run in the foreground. ``url`` is its HTTPS side,
    ``http_url`` the plain one (which only redirects)."""

    def __init__(self, tmp: Path, upstream_ports: list[int], edit=None):
        site = (DEPLOY / "nginx" / "toktoken.conf").read_text()
        tmp.mkdir(parents=True, exist_ok=True)
        self.port, self.http_port = free_port(), free_port()
        servers = "".join(
            f"    server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n" for p in upstream_ports
        )
        cert, key = self_signed(tmp)
        for pattern, replacement in [
            (r"    server 127\.0\.0\.1:3456[^\n]*\n", servers),
            (r"listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;"),
            (r"listen 80;", f"listen 127.0.0.1:{self.http_port};"),
            (r"ssl_certificate     \S+;", f"ssl_certificate     {cert};"),
            (r"ssl_certificate_key \S+;", f"ssl_certificate_key {key};"),
        ]:
            site, n = re.subn(pattern, replacement, site)
            assert n == 1, f"the shipped site changed shape: {pattern}"
        # This machine may have no IPv6: the [::] listeners go.
        site, n = re.subn(r"\n\s*listen \[::\]:\d+[^\n]*;", "", site)
        assert n == 2
        if edit:
            site = edit(site)
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
        self.url = f"https://127.0.0.1:{self.port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        # Clients trust the test certificate as users trust an internal CA:
        # REQUESTS_CA_BUNDLE (requests), NODE_EXTRA_CA_CERTS (Claude Code).
        self.ca = cert
        os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
        if not wait_for_http(self.url + "/health", 15, self.proc):
            raise RuntimeError("nginx did not start")

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def nginx_factory(tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # restored afterwards
    started = []

    def start(ports, edit=None):
        n = Nginx(tmp_path / f"nginx{len(started)}", ports, edit)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def test_plain_http_redirects_to_https(gateway, nginx_factory):
    nginx = nginx_factory([gateway.port])
    r = requests.post(nginx.http_url + "/v1/messages?beta=true", allow_redirects=False, timeout=10,
                      headers={"x-api-key": KEY}, json={})  # fmt: skip
    assert r.status_code == 301
    assert r.headers["location"] == "https://127.0.0.1/v1/messages?beta=true"
    assert requests.get(nginx.url + "/health", timeout=10).json()["status"] == "ok"  # verified TLS


def test_metrics_and_dashboard_only_for_the_allowed_networks(gateway, backend, nginx_factory):
    inside = nginx_factory([gateway.port])  # the shipped allow lists include 127.0.0.1
    assert requests.get(inside.url + "/metrics", timeout=10).status_code == 200
    assert requests.get(inside.url + "/dashboard", timeout=10).status_code == 200
    # The same site, seen from a network that is not on the lists.
    outside = nginx_factory([gateway.port], edit=lambda s: s.replace("allow 127.0.0.1;\n", ""))
    for path in ["/metrics", "/dashboard", "/dashboard/login"]:
        assert requests.get(outside.url + path, timeout=10).status_code == 403, path
    r = requests.post(outside.url + "/v1/messages", headers={"x-api-key": KEY}, timeout=30,
                      json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert r.status_code == 200  # the API itself is for everyone with a key


def test_clients_through_nginx_over_tls_with_an_internal_ca(
    gateway, nginx_factory, tmp_path, monkeypatch
):
    """What docs/deployment.md tells users of an internal CA: the SDKs trust
    it through SSL_CERT_FILE, Claude Code through NODE_EXTRA_CA_CERTS."""
    from types import SimpleNamespace

    import anthropic

    from .claude_cli import run_claude

    nginx = nginx_factory([gateway.port])
    monkeypatch.setenv("SSL_CERT_FILE", str(nginx.ca))
    sdk = anthropic.Anthropic(base_url=nginx.url, api_key=KEY, max_retries=0)
    msg = sdk.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].text == "Hello from the fake backend."
    result = run_claude(SimpleNamespace(url=nginx.url), "Say hello", tmp_path, tmp_path / "home",
                        env={"NODE_EXTRA_CA_CERTS": str(nginx.ca)})  # fmt: skip
    assert result["_exit"] == 0 and result["result"] == "Hello from the fake backend.", result


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
    backend.serve("instance-a", "instance-b")
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


def _execstart(tmp_path: Path, env_file: Path, port: int, log_name: str) -> subprocess.Popen:
    """The unit's ExecStart as systemd starts it: the EnvironmentFile read now."""
    unit = _rendered_unit(tmp_path).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", unit, re.M).group(1)
    workdir = re.search(r"^WorkingDirectory=(.+)$", unit, re.M).group(1)
    env = {"PATH": os.environ["PATH"], **_env_file(env_file), "PORT": str(port)}
    log = open(tmp_path / log_name, "wb")
    return subprocess.Popen(
        shlex.split(exec_start), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def test_systemd_reload_keeps_the_environment_and_restart_reads_it(tmp_path, backend):
    """docs/deployment.md, Upgrading: a reload (SIGHUP) does not see a changed
    environment file; a restart does."""
    env_file = tmp_path / "toktoken.env"
    template = (DEPLOY / "systemd" / "toktoken.env.example").read_text()
    template = re.sub(r"^VLLM_URL=.*$", f"VLLM_URL={backend.url}", template, flags=re.M)
    env_file.write_text(template.replace("change-me-to-a-long-random-secret", "old-key"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def status(key: str) -> int:
        return requests.post(url + "/v1/messages", headers={"x-api-key": key, "Connection": "close"},
                             timeout=30, json={"model": "m", "max_tokens": 5,
                                               "messages": [{"role": "user", "content": "x"}]}).status_code  # fmt: skip

    proc = _execstart(tmp_path, env_file, port, "first.log")
    try:
        assert wait_for_http(url + "/health", 30, proc), (tmp_path / "first.log").read_text()
        assert status("old-key") == 200
        env_file.write_text(template.replace("change-me-to-a-long-random-secret", "new-key"))
        proc.send_signal(signal.SIGHUP)  # systemctl reload
        time.sleep(2)
        assert (status("old-key"), status("new-key")) == (200, 401)  # the old environment
        proc.send_signal(signal.SIGTERM)  # systemctl restart: stop ...
        assert proc.wait(20) == 0
        proc = _execstart(tmp_path, env_file, port, "second.log")  # ... and start
        assert wait_for_http(url + "/health", 30, proc), (tmp_path / "second.log").read_text()
        assert (status("new-key"), status("old-key")) == (200, 401)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20)


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
        "ingress",
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


def test_kubernetes_pods_share_one_ledger_and_the_ingress_has_tls():
    """Several pods (replicas: 2, an HPA) must not each keep a SQLite ledger
    on an emptyDir: the ledger is the Secret's PostgreSQL URL, read by every pod."""
    import yaml

    kube = DEPLOY / "kubernetes"
    config = yaml.safe_load((kube / "configmap.yaml").read_text())["data"]
    secret = yaml.safe_load((kube / "secret.yaml").read_text())["stringData"]
    assert config["TELEMETRY_ENABLED"] == "true" and "TELEMETRY_DB" not in config
    assert secret["TELEMETRY_DB"].startswith("postgresql://")
    pod = yaml.safe_load((kube / "deployment.yaml").read_text())["spec"]["template"]["spec"]
    assert {"configMapRef": {"name": "toktoken"}} in pod["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "toktoken"}} in pod["containers"][0]["envFrom"]
    assert all(v.get("name") != "data" for v in pod["volumes"])
    ingress = yaml.safe_load((kube / "ingress.yaml").read_text())
    assert ingress["spec"]["tls"][0]["secretName"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    paths = {p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert "/v1" in paths and not {"/", "/metrics", "/dashboard"} & paths


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
    env["TELEMETRY_DB"] = str(tmp_path / "usage.db")  # the Secret's PostgreSQL, here a file
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
