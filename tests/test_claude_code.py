"""The real Claude Code CLI, headless, through the gateway to the fake backend.

Needs the pinned CLI (``make claude-code`` installs it outside the repo; the
path comes from CLAUDE_BIN). Skipped locally when it is missing; in CI
(CI=true) a missing CLI is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from .claude_cli import claude_bin, run_claude
from .conftest import KEY, ROOT
from .fake_backend import Json, Sse, chunk, usage_chunk

pytestmark = pytest.mark.claude_code


def last_upstream_role(req) -> str:
    return req.body["messages"][-1]["role"]


def tool_call_stream(
    call_id: str, command: str, *, thinking: str | None = None, usage=(900, 40)
) -> Sse:
    items = [chunk({"role": "assistant", "content": ""})]
    if thinking:
        items.append(chunk({"reasoning_content": thinking}))
    items.append(chunk({"content": "I'll run the command."}))
    args = json.dumps({"command": command, "description": "Write hi to out.txt"})
    items.append(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                        "function": {"name": "Bash", "arguments": ""}}]}))  # fmt: skip
    for i in range(0, len(args), 7):  # streamed in fragments, as vLLM does
        items.append(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 7]}}]})
        )
    items += [chunk({}, "tool_calls"), usage_chunk(*usage)]
    return Sse(items)


def answer(text: str) -> Sse:
    words = text.split(" ")
    pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    return Sse([chunk({"content": p}) for p in pieces] + [chunk({}, "stop"), usage_chunk(900, 9)])


def test_plain_answer_arrives_intact(gateway, backend, tmp_path):
    text = "The answer is 42, and it arrived through Toktoken intact."
    backend.handler = lambda req: answer(text)
    result = run_claude(gateway, "What is the answer?", tmp_path, tmp_path / "home")
    assert result["_exit"] == 0, result
    assert result["is_error"] is False
    assert result["result"] == text
    main = [r for r in backend.chat_requests if r.body.get("tools")]
    assert main and main[0].stream and main[0].body["model"] == "fake-model"


def _create_out_txt(gateway, backend, handler, work, tmp_path) -> list:
    """Claude Code asked to create out.txt, with ``handler`` as the model: the
    file is written and the answer arrives; the upstream requests that
    carried the tool result back."""
    backend.handler = handler
    result = run_claude(gateway, "create out.txt containing hi", work, tmp_path / "home",
                        "--allowedTools", "Bash")  # fmt: skip
    assert result["_exit"] == 0, result
    assert result["result"] == "Done: out.txt now contains hi."
    assert (work / "out.txt").read_text().strip() == "hi"
    return [
        r for r in backend.chat_requests if r.body.get("tools") and last_upstream_role(r) == "tool"
    ]


def _tool_loop(gateway, backend, tmp_path, *, thinking):
    work = tmp_path / "work"
    work.mkdir()

    def handler(req):
        if not req.body.get("tools"):
            return answer("ok")  # any side request (titles, summaries)
        if last_upstream_role(req) == "tool":
            return answer("Done: out.txt now contains hi.")
        return tool_call_stream("call_bash_1", "echo hi > out.txt", thinking=thinking)

    second = _create_out_txt(gateway, backend, handler, work, tmp_path)
    assert second, "Claude Code never sent the tool result back"
    messages = second[0].body["messages"]
    assistant = [m for m in messages if m["role"] == "assistant"][-1]
    assert assistant["tool_calls"][0]["id"] == "call_bash_1"
    assert assistant["tool_calls"][0]["function"]["name"] == "Bash"
    assert (
        json.loads(assistant["tool_calls"][0]["function"]["arguments"])["command"]
        == "echo hi > out.txt"
    )
    tool_msg = messages[-1]
    assert tool_msg["tool_call_id"] == "call_bash_1"
    return messages


def test_bash_tool_loop_runs_the_command_and_returns_the_result(gateway, backend, tmp_path):
    _tool_loop(gateway, backend, tmp_path, thinking=None)


def test_thinking_and_tool_turn_round_trips(gateway, backend, tmp_path):
    messages = _tool_loop(gateway, backend, tmp_path, thinking="The user wants a file; use Bash.")
    # the echoed thinking block was accepted and not replayed as text
    assert "The user wants a file" not in json.dumps(messages)


def test_a_tool_call_left_in_the_text_still_runs(gateway, backend, tmp_path):
    """A server without a tool-call parser: Qwen3-Coder's XML arrives as text,
    streamed in small pieces. The gateway turns it into a tool_use, Claude
    Code runs Bash, and the next turn carries a real tool call and its result."""
    work = tmp_path / "work"
    work.mkdir()
    xml = ("I'll create the file.\n<tool_call>\n<function=Bash>\n<parameter=command>\n"
           "echo hi > out.txt\n</parameter>\n<parameter=description>\nWrite hi to out.txt\n"
           "</parameter>\n<parameter=timeout>\n60000\n</parameter>\n</function>\n</tool_call>")  # fmt: skip

    def handler(req):
        if not req.body.get("tools"):
            return answer("ok")
        if last_upstream_role(req) == "tool":
            return answer("Done: out.txt now contains hi.")
        pieces = [xml[i : i + 4] for i in range(0, len(xml), 4)]
        return Sse(
            [chunk({"content": p}) for p in pieces] + [chunk({}, "stop"), usage_chunk(900, 60)]
        )

    second = _create_out_txt(gateway, backend, handler, work, tmp_path)
    assistant = [m for m in second[0].body["messages"] if m["role"] == "assistant"][-1]
    assert assistant["content"] == "I'll create the file.\n"
    [call] = assistant["tool_calls"]
    assert call["function"]["name"] == "Bash"
    args = json.loads(call["function"]["arguments"])
    assert args["command"] == "echo hi > out.txt" and args["timeout"] == 60000  # typed
    assert second[0].body["messages"][-1]["tool_call_id"] == call["id"]


# Sessions: the prefix cache and the context window ---------------------------------------


def _steps_handler(steps: int):
    """A model that runs ``steps`` Bash commands, one per turn, then answers."""

    def handler(req):
        if not (req.body or {}).get("tools"):
            return answer("ok")  # side requests
        done = sum(1 for m in req.body["messages"] if m["role"] == "tool")
        if done >= steps:
            return answer("All steps done.")
        return tool_call_stream(f"call_step_{done}", f"echo step{done} >> log.txt")

    return handler


@pytest.mark.parametrize(
    "model_args", [["--model", "sonnet"], []], ids=["claude-alias", "unknown-name"]
)
def test_countdown_reminders_keep_the_prefix_turn_after_turn(
    gateway, backend, tmp_path, model_args
):
    """CLAUDE_CODE_TOTAL_TOKENS_REMINDER=countdown: every tool result is
    followed by a system entry whose number changes. The upstream bodies of a
    4-turn tool loop must each begin with the previous one, byte for byte."""
    work = tmp_path / "work"
    work.mkdir()
    backend.handler = _steps_handler(3)
    env = {"CLAUDE_CODE_TOTAL_TOKENS_REMINDER": "countdown"}
    if not model_args:
        env["ANTHROPIC_MODEL"] = "my-local-coder"  # a name Claude Code does not know
    result = run_claude(gateway, "append three steps to log.txt", work, tmp_path / "home",
                        "--allowedTools", "Bash", *model_args, env=env)  # fmt: skip
    assert result["_exit"] == 0 and result["result"] == "All steps done.", result
    assert (work / "log.txt").read_text().split() == ["step0", "step1", "step2"]
    turns = [r.body for r in backend.chat_requests if r.body.get("tools")]
    assert len(turns) == 4
    for before, after in zip(turns, turns[1:], strict=False):
        old = [json.dumps(m, sort_keys=True) for m in before["messages"]]
        new = [json.dumps(m, sort_keys=True) for m in after["messages"]]
        assert new[: len(old)] == old, "a turn rewrote an earlier message"
        assert json.dumps(before["tools"]) == json.dumps(after["tools"])
    # the countdown arrived, and stayed out of the system message
    last = turns[-1]["messages"]
    countdown = [
        m for m in last if m["role"] == "user" and "tokens left</total_tokens>" in str(m["content"])
    ]
    assert len(countdown) >= 3
    assert all("<system-reminder>" in m["content"] for m in countdown)
    assert last[0]["role"] == "system" and last[0]["content"].count("tokens left") <= 1


WINDOW = 40_000


class WindowedBackend:
    """A vLLM-like backend with a 40k window: it reports max_model_len, counts
    tokens (characters / 4) on /tokenize and in every reply's usage, and plays
    a model that reads one big file per turn with Bash until it has read
    ``reads`` of them, then answers. Compaction requests (Claude Code's
    summary prompt: "Respond with TEXT ONLY ... summary") get a short summary."""

    def __init__(self, reads: int):
        self.reads = reads
        self.done = 0
        self.prompts: list[int] = []  # tokens of every main request that reached the backend
        self.summaries = 0

    @staticmethod
    def tokens(body: dict) -> int:
        return len(json.dumps(body.get("messages")) + json.dumps(body.get("tools") or [])) // 4

    def __call__(self, req):
        if req.path.endswith("/models"):
            return Json({"object": "list", "data": [{"id": "window-40k", "object": "model",
                                                     "max_model_len": WINDOW}]})  # fmt: skip
        if req.path == "/tokenize":
            return Json({"count": self.tokens(req.body), "max_model_len": WINDOW, "tokens": []})
        prompt = self.tokens(req.body)
        if prompt > WINDOW:  # what vLLM answers
            return Json({"object": "error", "type": "BadRequestError", "code": 400, "message":
                         f"This model's maximum context length is {WINDOW} tokens. However, your "
                         f"request has {prompt} input tokens."}, 400)  # fmt: skip
        last = str(req.body["messages"][-1].get("content"))
        if not req.body.get("tools") or "TEXT ONLY" in last and "summary" in last:  # compaction
            self.summaries += 1
            return answer_with_usage("Summary: the files part1 and part2 were read.", prompt)
        self.prompts.append(prompt)
        if self.done >= self.reads:
            return answer_with_usage("All files read.", prompt)
        self.done += 1
        return tool_call_stream(
            f"call_read_{self.done}", f"cat part{self.done}.txt", usage=(prompt, 40)
        )


def answer_with_usage(text: str, prompt: int) -> Sse:
    return Sse([chunk({"content": text}), chunk({}, "stop"), usage_chunk(prompt, 9)])


def _big_files(work, count: int) -> None:
    line = "The quick brown fox jumps over the lazy dog; " * 4 + "\n"
    for i in range(1, count + 1):
        (work / f"part{i}.txt").write_text(f"part {i}\n" + line * 110)  # ~20 KB: ~5k tokens


def _window_gateway(gateway_factory):
    return gateway_factory(VLLM_MODEL="window-40k", VLLM_KIND="vllm", TELEMETRY_ENABLED="false")


def test_a_session_past_the_window_compacts_reactively(gateway_factory, backend, tmp_path):
    """No settings: Claude Code overflows, gets the gateway's exact
    'prompt is too long: N tokens > M maximum', compacts, and finishes."""
    model = WindowedBackend(reads=8)
    backend.handler = model
    gw = _window_gateway(gateway_factory)
    work = tmp_path / "work"
    work.mkdir()
    _big_files(work, 8)
    before = gw.log().count("status=400")
    result = run_claude(gw, "read part1.txt to part8.txt, one per turn", work, tmp_path / "home",
                        "--allowedTools", "Bash", env={"ANTHROPIC_MODEL": "my-local-coder"}, timeout=300)  # fmt: skip
    assert result["_exit"] == 0 and result["result"] == "All files read.", result
    assert gw.log().count("status=400") > before, "the window was never reached"
    assert model.summaries >= 1 and max(model.prompts) <= WINDOW


def test_claude_env_settings_compact_before_the_window(gateway_factory, backend, tmp_path):
    """With claude-env's lines, Claude Code compacts before any request over
    the window reaches the gateway: no 400 at all."""
    model = WindowedBackend(reads=8)
    backend.handler = model
    gw = _window_gateway(gateway_factory)
    lines = subprocess.run(
        [sys.executable, "-m", "toktoken", "claude-env", "--url", gw.url, "--model", "my-local-coder"],
        cwd=ROOT, env={**os.environ, "VLLM_URL": backend.url, "VLLM_MODEL": "window-40k"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    settings = dict(re.findall(r"^export (\w+)=(\S+)$", lines, re.M))
    assert settings["CLAUDE_CODE_AUTO_COMPACT_WINDOW"] == "100000"
    env = {k: v for k, v in settings.items() if k.startswith(("CLAUDE_", "ANTHROPIC_MODEL"))}
    work = tmp_path / "work"
    work.mkdir()
    _big_files(work, 8)
    before = gw.log().count("status=400")
    result = run_claude(gw, "read part1.txt to part8.txt, one per turn", work, tmp_path / "home",
                        "--allowedTools", "Bash", env=env, timeout=300)  # fmt: skip
    assert result["_exit"] == 0 and result["result"] == "All files read.", result
    assert gw.log().count("status=400") == before, "a request over the window reached the gateway"
    assert model.summaries >= 1 and max(model.prompts) < WINDOW


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def test_interactive_claude_starts_offline_with_claude_env(gateway, backend, tmp_path):
    """Interactive claude (in tmux) on a fresh HOME with no internet: the lines
    and the onboarding mark from `claude-env --offline` get it to a prompt,
    and a typed question is answered through the gateway."""
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing in CI: .ci/run should install it")
        pytest.skip("tmux is not installed")
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    backend.handler = lambda req: answer("Hello from the fake model, interactively.")
    lines = subprocess.run(
        [sys.executable, "-m", "toktoken", "claude-env", "--offline", "--url", gateway.url,
         "--key", KEY, "--model", "local-coder"],
        cwd=ROOT, env={**os.environ, "HOME": str(home), "VLLM_URL": backend.url},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert json.loads((home / ".claude.json").read_text()) == {"hasCompletedOnboarding": True}
    (home / "env.sh").write_text(lines)
    session = f"toktoken-{os.getpid()}"
    script = (f"source {home}/env.sh; export DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 "
              f"DISABLE_ERROR_REPORTING=1; exec {claude_bin()}")  # fmt: skip
    command = (f"cd {work} && env -i PATH=/usr/local/bin:/usr/bin:/bin HOME={home} "
               f"TERM=xterm-256color bash --norc -c '{script}'")  # fmt: skip
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", command],
                   check=True)  # fmt: skip
    try:

        def wait_for(text: str, timeout: float = 30) -> str:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                screen = _tmux("capture-pane", "-p", "-t", session)
                if text in screen:
                    return screen
                time.sleep(0.3)
            raise AssertionError(f"never saw {text!r}; the screen:\n{screen}")

        wait_for("Enter to confirm")  # a new folder: trust it (the default is No)
        deadline = time.monotonic() + 10
        while "❯ Yes, I trust" not in _tmux("capture-pane", "-p", "-t", session):
            assert time.monotonic() < deadline, "the trust dialog did not take the key"
            _tmux("send-keys", "-t", session, "Down")
            time.sleep(0.5)
        _tmux("send-keys", "-t", session, "Enter")
        wait_for("local-coder")  # the prompt, with the model from claude-env
        _tmux("send-keys", "-t", session, "say hello", "Enter")
        wait_for("Hello from the fake model, interactively.")
        sent = [r for r in backend.chat_requests if r.body.get("tools")]
        assert sent and "say hello" in json.dumps(sent[-1].body["messages"])
    finally:
        _tmux("kill-session", "-t", session)
