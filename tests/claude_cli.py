"""Running the real Claude Code CLI headless against a gateway (shared by the
test modules that drive it; see ../shared/CLIENTS.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import KEY

DEFAULT_BIN = Path.home() / ".cache" / "toktoken-npm" / "node_modules" / ".bin" / "claude"


def claude_bin() -> str:
    candidate = os.environ.get("CLAUDE_BIN") or str(DEFAULT_BIN)
    if Path(candidate).exists():
        return candidate
    found = shutil.which("claude")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("Claude Code CLI not found in CI: `make claude-code` should have installed it")
    pytest.skip("Claude Code CLI not installed (run `make claude-code`)")


def run_claude(
    gateway, prompt: str, workdir: Path, home: Path, *extra: str, env=None, timeout: float = 120
) -> dict:
    env = {
        **(env or {}),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.url,
        "ANTHROPIC_API_KEY": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }
    proc = subprocess.run(
        [claude_bin(), "-p", prompt, "--output-format", "json", *extra],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout.strip(), f"no output; stderr: {proc.stderr[-2000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["_exit"] = proc.returncode
    return _Result(result)


class _Result(dict):
    """Shows the whole result (not a truncated dict) when an assertion fails."""

    def __repr__(self) -> str:
        return json.dumps(self, indent=1)[:4000]
