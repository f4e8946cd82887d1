"""Thinking, both ways.

Requests: Anthropic's ``thinking`` (enabled with a budget, adaptive, disabled)
and ``output_config.effort`` become what each backend kind understands:

| kind     | on / off                                                   | effort                      |
|----------|------------------------------------------------------------|-----------------------------|
| vllm     | ``chat_template_kwargs.enable_thinking`` (Qwen3, GLM; SGLang too) and ``.thinking`` (DeepSeek V3.1) | ``reasoning_effort`` |
| llamacpp | ``chat_template_kwargs.enable_thinking`` / ``.thinking`` (llama-server --jinja) | —          |
| ollama   | ``think``, and ``reasoning_effort: "none"`` to turn it off (its /v1 endpoint) | ``reasoning_effort`` |
| openai   | —                                                          | ``reasoning_effort`` (explicit ``enabled`` only) |

Replies: ``reasoning_content`` / ``reasoning`` fields are handled by the
converters; models whose server does not split reasoning out put it in the
content as ``<think>…</think>``: ThinkTagSplitter separates it, streaming
included (tags split across chunks).
"""

from __future__ import annotations

_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}


def thinking_fields(kind: str, thinking, effort) -> dict:
    """Top-level fields to merge into the OpenAI request body."""
    mode = None
    explicit = isinstance(thinking, dict) and thinking.get("type") == "enabled"
    if isinstance(thinking, dict):
        kind_of = thinking.get("type")
        if kind_of in ("enabled", "adaptive"):
            mode = True
        elif kind_of == "disabled":
            mode = False
    level = _EFFORTS.get(effort) if isinstance(effort, str) else None
    if level is None and isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, int):
            level = "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if mode is None and level is None:
        return {}
    if mode is False:
        level = None
    out: dict = {}
    if kind in ("vllm", "llamacpp"):
        if mode is not None:
            out["chat_template_kwargs"] = {"enable_thinking": mode, "thinking": mode}
        if kind == "vllm" and level:
            out["reasoning_effort"] = level
    elif kind == "ollama":
        if mode is False:
            out.update(think=False, reasoning_effort="none")
        elif mode or level:
            out["think"] = True
            if level:
                out["reasoning_effort"] = level
    elif kind == "openai" and level and explicit:
        # Generic servers (and OpenAI's non-reasoning models) may reject the
        # field: send it only when thinking was explicitly enabled, not for
        # "adaptive" (which Claude Code sends on every request).
        out["reasoning_effort"] = level
    return out


def replays_reasoning(kind: str) -> bool:
    """Kinds whose chat templates accept ``reasoning_content`` on assistant
    messages; for the others, thinking from history is dropped."""
    return kind in ("vllm", "llamacpp")


OPEN, CLOSE = "<think>", "</think>"


class ThinkTagSplitter:
    """Splits ``<think>…</think>`` at the start of a reply from the text.

    ``feed(text)`` returns ``[(kind, text), ...]`` with kind "thinking" or
    "text"; ``flush()`` returns what was held back at the end. Only a tag at
    the very start of the content (after whitespace) opens thinking, so a
    reply that merely mentions "<think>" later is left alone. Text that might
    be the beginning of a tag is held until the next chunk decides.
    """

    def __init__(self) -> None:
        self.state = "detect"  # detect -> thinking -> after -> text
        self._held = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        if self.state == "text":
            return [("text", text)] if text else []
        self._held += text
        out: list[tuple[str, str]] = []
        while True:
            held = self._held
            if self.state == "detect":
                stripped = held.lstrip()
                if stripped.startswith(OPEN):
                    self.state, self._held = "thinking", stripped[len(OPEN) :]
                    continue
                if OPEN.startswith(stripped):
                    return out  # maybe the tag is still arriving
                self.state, self._held = "text", ""
                out.append(("text", held))
                return out
            if self.state == "thinking":
                end = held.find(CLOSE)
                if end >= 0:
                    if held[:end]:
                        out.append(("thinking", held[:end]))
                    self.state, self._held = "after", held[end + len(CLOSE) :]
                    continue
                keep = _partial_suffix(held, CLOSE)
                if held[: len(held) - keep]:
                    out.append(("thinking", held[: len(held) - keep]))
                self._held = held[len(held) - keep :]
                return out
            if self.state == "after":
                stripped = held.lstrip()
                if not stripped:
                    self._held = ""
                    return out  # whitespace between </think> and the answer
                self.state, self._held = "text", ""
                out.append(("text", stripped))
                return out

    def flush(self) -> list[tuple[str, str]]:
        held, self._held = self._held, ""
        if not held:
            return []
        if self.state == "thinking":
            return [("thinking", held)]
        if self.state == "detect":
            self.state = "text"
            return [("text", held)] if held.strip() else []
        return []


def split_think_tags(content: str) -> tuple[str, str]:
    """Non-streaming: (thinking, text) of a complete reply."""
    stripped = content.lstrip()
    if stripped and stripped[0] != "<":
        return "", content  # no tag can open thinking (the splitter's answer, without it)
    splitter = ThinkTagSplitter()
    parts = splitter.feed(content) + splitter.flush()
    thinking = "".join(t for k, t in parts if k == "thinking")
    text = "".join(t for k, t in parts if k == "text")
    return thinking, text


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0
