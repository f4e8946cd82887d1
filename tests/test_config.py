"""Configuration: defaults, validation with one clear line, `check`, warnings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from toktoken.config import ConfigError, Settings

from .conftest import ROOT, free_port


def test_defaults_match_the_documented_table():
    s = Settings.from_env({})
    assert (s.port, s.host, s.api_keys) == (3456, "0.0.0.0", ("sk-anthropic-router",))
    assert s.backend.url == "http://localhost:8000" and s.backend.model == "qwen3-coder-30b-fp8"
    assert s.backend.api_key is None and s.vision is None
    assert (s.telemetry_enabled, s.log_level) == (False, "info")


def test_vision_settings():
    s = Settings.from_env({"VISION_URL": "http://gpu2:9000/v1", "VISION_API_KEY": "k",
                           "VISION_ANTHROPIC_NATIVE": "true"})  # fmt: skip
    assert s.vision.url == "http://gpu2:9000" and s.vision.model == "gpt-4-vision"
    assert s.vision.anthropic_native is True and s.vision.api_key == "k"


@pytest.mark.parametrize(
    "env, variable",
    [({"PORT": "abc"}, "PORT"), ({"PORT": "70000"}, "PORT"), ({"VLLM_URL": "localhost:8000"}, "VLLM_URL"),
     ({"VLLM_URL": "ftp://x"}, "VLLM_URL"), ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
     ({"TELEMETRY_ENABLED": "maybe"}, "TELEMETRY_ENABLED"), ({"VISION_URL": "nope"}, "VISION_URL"),
     ({"VISION_ANTHROPIC_NATIVE": "2"}, "VISION_ANTHROPIC_NATIVE"), ({"API_KEY": "a,,b"}, "API_KEY"),
     ({"STREAM_PING_INTERVAL": "0"}, "STREAM_PING_INTERVAL")],
)  # fmt: skip
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert variable in str(info.value) and "\n" not in str(info.value)


def _run(args, env, timeout=20):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "VISION_"))}
    full.update(env)
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


@pytest.mark.parametrize("args", [["-m", "toktoken", "serve"],
                                  ["-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]])  # fmt: skip
def test_bad_value_stops_startup_with_one_line(args):
    proc = _run(args, {"PORT": "abc"})
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "PORT" in line]
    assert lines == [
        "toktoken: invalid configuration: PORT must be an integer from 1 to 65535 (got 'abc')"
    ]
    assert "Traceback" not in proc.stderr


def test_check_prints_masked_config_and_probes(backend):
    proc = _run(["-m", "toktoken", "check"],
                {"VLLM_URL": backend.url, "VLLM_MODEL": "fake-model", "VLLM_API_KEY": "supersecretupstream",
                 "API_KEY": "clientsecret99"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "supersecretupstream" not in proc.stdout and "clientsecret99" not in proc.stdout
    assert backend.url in proc.stdout and "reachable" in proc.stdout and "fake-model" in proc.stdout


def test_check_fails_when_default_backend_is_down():
    proc = _run(["-m", "toktoken", "check"], {"VLLM_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 1 and "NOT reachable" in proc.stdout


def test_default_key_on_public_host_warns(backend, tmp_path):
    port = free_port()
    env = {"HOST": "0.0.0.0", "PORT": str(port), "VLLM_URL": backend.url}
    env.pop("API_KEY", None)
    full = {
        k: v for k, v in os.environ.items() if k not in ("API_KEY",) and not k.startswith("VLLM_")
    }
    full.update(env)
    proc = subprocess.Popen([sys.executable, "-c",
                             "import logging; from toktoken import create_app; create_app()"],
                            cwd=ROOT, env=full, stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, err = proc.communicate(timeout=20)
    assert "API_KEY is the public default" in err
    full["HOST"] = "127.0.0.1"
    proc = subprocess.run([sys.executable, "-c", "from toktoken import create_app; create_app()"],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=20)  # fmt: skip
    assert "public default" not in proc.stderr
