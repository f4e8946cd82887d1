"""``python -m toktoken claude-env``: the lines that point Claude Code at this
gateway and tell it the local model's window.

Claude Code (2.1.332) reads no context window from a gateway: for a model name
it does not know it assumes 1M tokens, and values below 100k from any source
are ignored. Left alone it recovers *after* overflowing, on our 400
``prompt is too long: N tokens > M maximum`` (it compacts and retries). It
compacts *before* the window only with two settings, measured against a 40k
window (docs/claude-code.md):

- ``CLAUDE_CODE_AUTO_COMPACT_WINDOW`` — the window it plans with, raised to a
  100000 minimum;
- ``CLAUDE_AUTOCOMPACT_PCT_OVERRIDE`` — lowers its compaction threshold,
  which is about ``(window - 20000) * pct / 100`` tokens.

So for a window W below 128k we set the planning window to 100000 and choose
pct so that the threshold lands at about 75 % of W; for a larger W the real
window can be given as it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

PLANNING_MINIMUM = 100_000  # Claude Code raises CLAUDE_CODE_AUTO_COMPACT_WINDOW to this
RESERVED = 20_000  # what Claude Code keeps free below its planning window
TARGET = 0.75  # compact at about this share of the real window
LARGE_WINDOW = 128_000
CLAUDE_CODE_OWN = 20_000  # its system prompt and tools take 12-20k tokens


@dataclass(frozen=True)
class Setting:
    variable: str
    value: str
    why: str


def compaction(window: int) -> list[Setting]:
    """The compaction settings for a backend window of ``window`` tokens."""
    threshold = int(window * TARGET)
    if window >= LARGE_WINDOW:
        return [
            Setting(
                "CLAUDE_CODE_AUTO_COMPACT_WINDOW",
                str(window),
                f"plan with the model's real window ({window} tokens)",
            )
        ]
    pct = max(1, math.floor(100 * threshold / (PLANNING_MINIMUM - RESERVED)))
    at = (PLANNING_MINIMUM - RESERVED) * pct // 100
    return [
        Setting(
            "CLAUDE_CODE_AUTO_COMPACT_WINDOW",
            str(PLANNING_MINIMUM),
            f"Claude Code plans with at least {PLANNING_MINIMUM} tokens; the threshold below "
            "brings it down to the real window",
        ),
        Setting(
            "CLAUDE_AUTOCOMPACT_PCT_OVERRIDE",
            str(pct),
            f"compact at about ({PLANNING_MINIMUM} - {RESERVED}) x {pct} % = {at} tokens, "
            f"{round(100 * at / window)} % of the model's {window}-token window",
        ),
    ]


PLACEHOLDER_KEY = "REPLACE_WITH_YOUR_GATEWAY_KEY"


def lines(
    *,
    base_url: str,
    model: str,
    window: int | None,
    window_source: str | None,
    key: str | None = None,
) -> list[str]:
    """The shell lines to paste (``export``), each with a comment saying why."""
    out = [
        "# Point Claude Code at Toktoken (paste into the shell that runs `claude`).",
        "# The gateway's address, as this machine sees it; use its host name from elsewhere.",
        f"export ANTHROPIC_BASE_URL={base_url}",
        "# One of the gateway's API keys. AUTH_TOKEN, not ANTHROPIC_API_KEY: with an API key",
        "# interactive claude stops at 'Detected a custom API key' (default: No, logged out).",
        f"export ANTHROPIC_AUTH_TOKEN={key or PLACEHOLDER_KEY}",
        "unset ANTHROPIC_API_KEY",
        "# The model name Claude Code sends; the gateway routes it to a backend.",
        f"export ANTHROPIC_MODEL={model}",
        "# No calls to Anthropic's services (telemetry, update checks, ...).",
        "export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
    ]
    if window is None:
        out += [
            "# The backend's context window is unknown (not configured, not discovered): Claude",
            "# Code will compact only when the gateway answers 'prompt is too long'. Set",
            "# VLLM_CONTEXT (or context = N in the config file) to get compaction settings.",
        ]
        return out
    out.append(f"# The backend's context window: {window} tokens ({window_source}).")
    if window < CLAUDE_CODE_OWN * 2:
        out.append(
            f"# WARNING: Claude Code's own prompt and tools take 12-20k tokens; {window} leaves "
            "little for the conversation."
        )
    for setting in compaction(window):
        out += [f"# {setting.why}", f"export {setting.variable}={setting.value}"]
    return out


def mark_onboarded(home: Path) -> Path:
    """Interactive ``claude`` on a fresh HOME runs its onboarding, which needs
    Anthropic's servers ("Unable to connect to Anthropic services"): record it
    as done in ~/.claude.json, keeping whatever else the file holds."""
    path = home / ".claude.json"
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data["hasCompletedOnboarding"] = True
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
