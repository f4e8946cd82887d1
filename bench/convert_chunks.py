"""The per-chunk cost of the stream machines, in process (no HTTP, no noise
from sockets): what a feature inside convert/ adds to every chunk.

Each case is a 50-chunk reply fed to a fresh StreamTranslator; the cases are
timed in interleaved rounds and the best round of each is compared, so a
busy machine slows all of them alike. Reported as ratios against the plain
text reply without declared tools (no tool-call rescue), measured beside it.

    python bench/convert_chunks.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from toktoken.convert import StreamTranslator, ToolCallRescuer  # noqa: E402

TOOLS = {"Bash": {"type": "object", "properties": {"command": {"type": "string"}}}}
WORDS = "tok "
CODE = "if (a < b && c[i] > 0) { x = y[<0>]; } "  # every chunk takes the slow path
CALL = '<tool_call>{"name": "Bash", "arguments": {"command": "ls -la"}}</tool_call>'


def chunk(text: str | None = None, finish=None) -> dict:
    delta = {} if text is None else {"content": text}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def reply(pieces: list[str]) -> list[dict]:
    return [chunk("")] + [chunk(p) for p in pieces] + [chunk(None, "stop")]


CASES = {
    "plain text, no tools declared (baseline)": (reply([WORDS] * 50), False),
    "plain text, tools declared (rescue on)": (reply([WORDS] * 50), True),
    "code with < and [, no tools declared": (reply([CODE[i % 7 :] for i in range(50)]), False),
    "code with < and [, rescue on": (reply([CODE[i % 7 :] for i in range(50)]), True),
    "a hermes call at the end, rescue on": (
        reply([WORDS] * 40 + [CALL[i : i + 8] for i in range(0, len(CALL), 8)]),
        True,
    ),
}


def run_once(chunks: list[dict], rescue: bool) -> None:
    machine = StreamTranslator(
        "m", input_tokens=10, rescuer=ToolCallRescuer(TOOLS) if rescue else None
    )
    machine.start()
    for c in chunks:
        machine.feed(c)
    machine.finish()


def measure(rounds: int = 7, repeat: int = 300) -> dict[str, float]:
    best = {name: float("inf") for name in CASES}
    for _ in range(rounds):
        for name, (chunks, rescue) in CASES.items():
            started = time.process_time()
            for _ in range(repeat):
                run_once(chunks, rescue)
            per_chunk = (time.process_time() - started) / repeat / len(chunks)
            best[name] = min(best[name], per_chunk)
    return best


def report(best: dict[str, float]) -> None:
    base = best["plain text, no tools declared (baseline)"]
    print("stream machine per chunk (in process, best of 7 interleaved rounds)")
    for name, seconds in best.items():
        print(f"  {name:<45} {seconds * 1e6:7.2f} us   {seconds / base:5.2f}x")


if __name__ == "__main__":
    report(measure())
