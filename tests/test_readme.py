"""The README's commands, run as written, so the README cannot drift.

Every fenced ``bash`` and ``python`` block of README.md runs, in order, in one
shell (exports carry from block to block, as in a reader's terminal), against
the fake backend, unless the line before it says why not::

    <!-- not run by tests/test_readme.py: why -->

Only three things differ from a reader's machine: the backend URL of the
examples (``http://gpu-box:8000``) is the fake backend's, the gateway's port
(``3456``) is a free one, and ``make run`` (which serves until Ctrl-C) runs
in the background until its ``/health`` answers. A block fails the test when
it exits non-zero or prints an API error.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from .conftest import ROOT, free_port
from .fake_backend import FakeBackend

FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.M | re.S)
SKIP = re.compile(r"<!-- not run by tests/test_readme\.py: (.+) -->")
EXAMPLE_BACKEND = "http://gpu-box:8000"


def blocks(text: str) -> list[tuple[str, str, str | None]]:
    """(language, code, why it is not run or None) for each shell/Python block."""
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) not in ("bash", "python"):
            continue
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1]  # the line before the fence
        skip = SKIP.fullmatch(before)
        out.append((m.group(1), m.group(2), skip.group(1) if skip else None))
    return out


def test_every_block_is_run_or_says_why_not():
    found = blocks((ROOT / "README.md").read_text())
    assert len(found) >= 6
    run = [code for _, code, why in found if why is None]
    assert any("make run" in code for code in run) and any("curl" in code for code in run)


def _script(port: int, backend_url: str, tmp: Path) -> str:
    lines = ["set -euo pipefail"]
    for n, (language, code, why) in enumerate(blocks((ROOT / "README.md").read_text())):
        if why is not None:
            continue
        code = code.replace(EXAMPLE_BACKEND, backend_url).replace("3456", str(port))
        lines.append(f"echo '>>> README block {n}' >&2")
        if language == "python":
            path = tmp / f"block{n}.py"
            path.write_text(code)
            lines.append(f".venv/bin/python {path}")
            continue
        for line in code.splitlines():
            command = line.split("#", 1)[0].rstrip()
            if command.endswith("make run"):
                # Serves until Ctrl-C: in the background, until it answers.
                lines += [
                    f"{command} > {tmp}/serve.log 2>&1 &",
                    f"for i in $(seq 300); do curl -sf -o /dev/null 127.0.0.1:{port}/health && break;"
                    f" sleep 0.2; done",
                    f"curl -sf -o /dev/null 127.0.0.1:{port}/health || "
                    f"{{ cat {tmp}/serve.log >&2; exit 1; }}",
                ]
            else:
                lines.append(line)
    return "\n".join(lines) + "\n"


def test_readme_commands_work_as_written(tmp_path):
    # A vLLM as it comes: serving one model, under its Hugging Face id.
    backend = FakeBackend()
    backend.served = ["Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8"]
    port = free_port()
    script = tmp_path / "readme.sh"
    script.write_text(_script(port, backend.url, tmp_path))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "API_KEY", "TOKTOKEN"))
    }
    env.update(HOST="127.0.0.1", PORT=str(port), TELEMETRY_DB=str(tmp_path / "usage.db"))
    proc = subprocess.Popen(
        ["bash", str(script)], cwd=ROOT, env=env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        backend.close()
        # The script's session holds the backgrounded `make run`: stop it all.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    where = err.strip().splitlines()[-1:] if err.strip() else []
    assert proc.returncode == 0, f"{where}\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    assert '"type":"error"' not in out.replace(" ", ""), out[-3000:]
    # The blocks did reach the gateway and, through it, the backend: the
    # curl request, and the Python example's answer (the stream is in deltas).
    assert out.count("Hello from the fake backend.") >= 2, out[-3000:]
    assert len(backend.chat_requests) >= 3
    assert {r.body["model"] for r in backend.chat_requests} == {backend.served[0]}
    assert "reachable in" in out and "ANTHROPIC_BASE_URL" in out  # make check, make claude-env
    assert "requests will use 'Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8'" in out
