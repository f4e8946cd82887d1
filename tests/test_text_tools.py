"""Tool calls the backend left in the text (convert/text_tools.py).

The machine alone first, on golden replies in every dialect fed in every way
a stream can cut them; then both routes over real HTTP with the SDKs, the
configuration flag, and telemetry. Claude Code itself is in test_claude_code.py.
"""

from __future__ import annotations

import json
import re

import anthropic
import openai
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from toktoken.config.model import TEXT_TOOL_DIALECTS
from toktoken.convert.text_tools import DIALECTS, MARKERS, ToolCall, ToolCallRescuer

from .conftest import KEY
from .fake_backend import Sse, chunk, completion, usage_chunk

BASH = {
    "type": "object",
    "properties": {
        "command": {"type": "string"},
        "timeout": {"type": "integer"},
        "run_in_background": {"type": "boolean"},
    },
    "required": ["command"],
}
READ = {
    "type": "object",
    "properties": {"file_path": {"type": "string"}, "limit": {"type": ["integer", "null"]}},
}
TOOLS = {"Bash": BASH, "Read": READ}
LS = {"command": "ls -la"}

# dialect -> (reply text, [(tool, input)], the text around the calls)
GOLDEN = {
    "hermes": (
        'Let me look.\n<tool_call>\n{"name": "Bash", "arguments": {"command": "ls -la"}}\n'
        "</tool_call>",
        [("Bash", LS)],
        "Let me look.\n",
    ),
    "hermes-two": (
        '<tool_call>\n{"name": "Bash", "arguments": {"command": "ls -la"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "Read", "arguments": "{\\"file_path\\": \\"/a b.py\\"}"}\n'
        "</tool_call>\n",
        [("Bash", LS), ("Read", {"file_path": "/a b.py"})],
        "",
    ),
    "qwen3_coder": (
        "I'll list the files.\n\n<tool_call>\n<function=Bash>\n<parameter=command>\nls -la\n"
        "</parameter>\n<parameter=timeout>\n3000\n</parameter>\n<parameter=run_in_background>\n"
        "false\n</parameter>\n</function>\n</tool_call>",
        [("Bash", {"command": "ls -la", "timeout": 3000, "run_in_background": False})],
        "I'll list the files.\n\n",
    ),
    "qwen3_coder-multiline": (
        "<tool_call>\n<function=Read>\n<parameter=file_path>\n/src/a <b>.py\n</parameter>\n"
        "<parameter=limit>\nnull\n</parameter>\n</function>\n</tool_call>",
        [("Read", {"file_path": "/src/a <b>.py", "limit": None})],
        "",
    ),
    "glm45": (
        "Checking.<tool_call>Bash\n<arg_key>command</arg_key>\n<arg_value>ls -la</arg_value>\n"
        "<arg_key>timeout</arg_key>\n<arg_value>3000</arg_value>\n</tool_call>",
        [("Bash", {"command": "ls -la", "timeout": 3000})],
        "Checking.",
    ),
    "mistral": (
        '[TOOL_CALLS][{"name": "Bash", "arguments": {"command": "ls -la"}}, '
        '{"name": "Read", "arguments": {"file_path": "x"}}]',
        [("Bash", LS), ("Read", {"file_path": "x"})],
        "",
    ),
    "mistral-v11": ('[TOOL_CALLS]Bash[ARGS]{"command": "ls -la"}', [("Bash", LS)], ""),
    "llama3_json": ('{"name": "Bash", "parameters": {"command": "ls -la"}}', [("Bash", LS)], ""),
    "llama3_json-python-tag": (
        'Sure. <|python_tag|>{"name": "Bash", "parameters": {"command": "ls -la"}}',
        [("Bash", LS)],
        "Sure. ",
    ),
    "deepseek": (
        "Let me check.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>Bash\n"
        '```json\n{"command": "ls -la"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        [("Bash", LS)],
        "Let me check.",
    ),
    "deepseek-v3.1": (
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>Bash<｜tool▁sep｜>"
        '{"command": "ls -la"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>Read<｜tool▁sep｜>'
        '{"file_path": "x"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
        [("Bash", LS), ("Read", {"file_path": "x"})],
        "",
    ),
}

CALL = '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}}</tool_call>'
# Text that only looks like a call: it stays text, exactly.
NOT_CALLS = {
    "code-block": f"The format is:\n```xml\n{CALL}\n```\nThat is all.",
    "code-span": f"Wrap it as `{CALL}` and the server parses it.",
    "unknown-tool": '<tool_call>{"name": "rm_everything", "arguments": {}}</tool_call>',
    "broken-json": '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}</tool_call> ok',
    "never-closes": '<tool_call>{"name": "Bash", "arguments": {"command": "ls"}} and then prose',
    "arguments-not-object": '<tool_call>{"name": "Bash", "arguments": [1, 2]}</tool_call>',
    "qwen-stray-text": "<tool_call><function=Bash>hello<parameter=command>ls</parameter>"
    "</function></tool_call>",
    "qwen-unknown": "<tool_call><function=Write><parameter=path>x</parameter></function></tool_call>",
    "glm-prose": "<tool_call>this is just a sentence about tags</tool_call>",
    "mistral-unknown": '[TOOL_CALLS][{"name": "nope", "arguments": {}}]',
    "mistral-prose": "[TOOL_CALLS] are how Mistral marks calls.",
    "json-reply": '{"name": "Alice", "age": 3}',
    "json-then-prose": '{"name": "Bash", "parameters": {"command": "ls"}} is what I would send.',
    "json-not-a-call": '{"result": [1, 2, 3], "ok": true}',
    "deepseek-broken": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>Bash\n"
    "no fence<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "partial-marker-at-end": "Compare a < b and use <tool_c",
    "html": "<div><tool>x</tool></div> <tool_call > [TOOL] [TOOL_CALL] <|python",
    "empty-markup": "<tool_call></tool_call>",
}


def run(rescuer: ToolCallRescuer, pieces: list[str]) -> list:
    """Feed the pieces and finish: adjacent text merged, calls as (name, input)."""
    out: list = []
    for piece in pieces:
        out += rescuer.feed(piece)
    out += rescuer.finish()
    merged: list = []
    for item in out:
        if isinstance(item, ToolCall):
            merged.append((item.name, item.arguments))
        elif merged and isinstance(merged[-1], str):
            merged[-1] += item
        else:
            merged.append(item)
    return merged


def expected(case: str) -> list:
    _, calls, before = GOLDEN[case]
    return ([before] if before else []) + list(calls)


def split(text: str, cuts) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def test_the_config_and_the_converter_know_the_same_dialects():
    assert TEXT_TOOL_DIALECTS == DIALECTS
    assert {d for dialects in MARKERS.values() for d in dialects} == set(DIALECTS)


@pytest.mark.parametrize("case", GOLDEN)
def test_golden_reply_in_one_piece(case):
    assert run(ToolCallRescuer(TOOLS), [GOLDEN[case][0]]) == expected(case)


@pytest.mark.parametrize("case", GOLDEN)
def test_golden_reply_cut_at_every_boundary(case):
    """Two pieces cut at every character boundary, and one character at a time."""
    text = GOLDEN[case][0]
    for i in range(len(text) + 1):
        assert run(ToolCallRescuer(TOOLS), [text[:i], text[i:]]) == expected(case), i
    assert run(ToolCallRescuer(TOOLS), list(text)) == expected(case)


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(sorted(GOLDEN)), cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_golden_reply_cut_anywhere(case, cuts):
    text = GOLDEN[case][0]
    assert run(ToolCallRescuer(TOOLS), split(text, cuts)) == expected(case)


@pytest.mark.parametrize("case", NOT_CALLS)
def test_what_only_looks_like_a_call_stays_text_exactly(case):
    text = NOT_CALLS[case]
    assert run(ToolCallRescuer(TOOLS), [text]) == [text]
    for i in range(len(text) + 1):
        assert run(ToolCallRescuer(TOOLS), [text[:i], text[i:]]) == [text], i
    assert run(ToolCallRescuer(TOOLS), list(text)) == [text]


@settings(max_examples=200, deadline=None)
@given(
    case=st.sampled_from(sorted(NOT_CALLS)),
    prose=st.text(alphabet="ab <>[]{}|`\n_", max_size=30),
    cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_text_around_lookalikes_stays_text(case, prose, cuts):
    text = prose + NOT_CALLS[case] + prose
    if "```" in text or "`" in prose:
        return  # an unbalanced fence from the random prose changes what is code
    out = run(ToolCallRescuer(TOOLS), split(text, cuts))
    assert out == [text]


@settings(max_examples=200, deadline=None)
@given(prose=st.text(max_size=200), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_any_text_without_a_call_comes_out_unchanged(prose, cuts):
    out = run(ToolCallRescuer(TOOLS), split(prose, cuts))
    assert "".join(x for x in out if isinstance(x, str)) == prose
    assert all(isinstance(x, str) for x in out) or re.search(r"Bash|Read", prose)


def test_text_is_relayed_as_it_arrives_and_only_a_possible_marker_is_held():
    r = ToolCallRescuer(TOOLS)
    assert r.feed("Hello, ") == ["Hello, "]
    assert r.feed("world <tool") == ["world "]  # "<tool" may open <tool_call>
    assert r.feed("s> are here") == ["<tools> are here"]
    assert r.feed(" [TOOL_") == [" "]
    assert r.feed("CALLS]") == []  # a marker: held until its markup is decided
    assert r.feed("Bash[ARGS]") == []
    # A call found waits for the reply's end (a structured call would still win).
    assert r.feed('{"command": "ls"}') == []
    assert r.feed("\n\nDone.") == []
    assert r.finish() == [ToolCall("Bash", {"command": "ls"}, "mistral"), "Done."]
    assert r.rescued == 1 and r.dialects == ["mistral"]


def test_a_structured_call_after_a_found_one_gives_the_text_back_as_it_came():
    r = ToolCallRescuer(TOOLS)
    assert r.feed("Shown: " + CALL[:20]) == ["Shown: "]
    assert r.feed(CALL[20:] + "\n\n and ") == []
    assert r.disable() == [CALL + "\n\n and "]
    assert r.feed("more") == ["more"] and r.finish() == [] and r.rescued == 0


def test_a_pinned_dialect_recognises_only_itself():
    qwen = GOLDEN["qwen3_coder"][0]
    hermes = GOLDEN["hermes"][0]
    assert run(ToolCallRescuer(TOOLS, dialect="hermes"), [qwen]) == [qwen]
    assert run(ToolCallRescuer(TOOLS, dialect="hermes"), [hermes]) == expected("hermes")
    assert run(ToolCallRescuer(TOOLS, dialect="qwen3_coder"), [qwen]) == expected("qwen3_coder")
    mistral = GOLDEN["mistral"][0]
    assert run(ToolCallRescuer(TOOLS, dialect="deepseek"), [mistral]) == [mistral]
    whole = GOLDEN["llama3_json"][0]
    assert run(ToolCallRescuer(TOOLS, dialect="hermes"), [whole]) == [whole]


def test_disable_gives_back_what_was_held_as_text():
    r = ToolCallRescuer(TOOLS)
    assert r.feed('See <tool_call>{"name": ') == ["See "]
    assert r.disable() == ['<tool_call>{"name": ']
    assert r.feed(CALL) == [CALL] and r.finish() == [] and r.rescued == 0


def test_markup_that_never_closes_is_given_back_past_the_limit(monkeypatch):
    import toktoken.convert.text_tools as text_tools

    monkeypatch.setattr(text_tools, "MAX_MARKUP", 100)
    r = ToolCallRescuer(TOOLS)
    out = r.feed("<tool_call>{") + r.feed("x" * 50) + r.feed("y" * 60) + r.feed(" tail")
    assert "".join(out) == "<tool_call>{" + "x" * 50 + "y" * 60 + " tail"


def test_values_typed_by_the_schema():
    markup = (
        "<tool_call><function=Bash><parameter=command>echo 3</parameter>"
        "<parameter=timeout>not a number</parameter><parameter=extra>7</parameter>"
        "</function></tool_call>"
    )
    [(name, args)] = run(ToolCallRescuer(TOOLS), [markup])
    # a value that does not fit its type stays text; an undeclared one is text
    assert args == {"command": "echo 3", "timeout": "not a number", "extra": "7"}
    tools = {"f": {"properties": {"n": {"type": "number"}, "o": {"type": "object"},
                                  "a": {"type": "array"}, "b": {"type": "boolean"}}}}  # fmt: skip
    markup = (
        "<tool_call><function=f><parameter=n>2.5</parameter><parameter=o>"
        '{"k": 1}</parameter><parameter=a>[1, "x"]</parameter><parameter=b>True</parameter>'
        "</function></tool_call>"
    )
    [(_, args)] = run(ToolCallRescuer(tools), [markup])
    assert args == {"n": 2.5, "o": {"k": 1}, "a": [1, "x"], "b": True}


# Over HTTP, both routes ------------------------------------------------------------

ANTHROPIC_TOOLS = [
    {"name": "Bash", "description": "Run a command", "input_schema": BASH},
    {"name": "Read", "description": "Read a file", "input_schema": READ},
]
OPENAI_TOOLS = [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
                for t in ANTHROPIC_TOOLS]  # fmt: skip


def streamed(text: str, size: int = 3, finish: str = "stop") -> Sse:
    items = [chunk({"role": "assistant", "content": ""})]
    items += [chunk({"content": text[i : i + size]}) for i in range(0, len(text), size)]
    return Sse(items + [chunk({}, finish), usage_chunk(50, 20)])


def messages(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=0)


def chat(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)


ASK = [{"role": "user", "content": "list the files"}]


@pytest.mark.parametrize("case", ["qwen3_coder", "hermes-two", "deepseek", "mistral-v11"])
def test_anthropic_stream_turns_text_calls_into_tool_use(gateway, backend, case):
    text, calls, before = GOLDEN[case]
    backend.handler = lambda req: streamed(text)
    with messages(gateway).messages.stream(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    blocks = [b for b in final.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in blocks] == calls
    assert all(b.id.startswith("toolu_") for b in blocks) and len({b.id for b in blocks}) == len(
        blocks
    )
    texts = "".join(b.text for b in final.content if b.type == "text")
    assert texts == before
    assert any(e.type == "input_json" for e in events)  # input_json_delta events were sent


def test_anthropic_text_before_a_call_streams_before_the_call_completes(gateway, backend):
    """The prose is relayed as it arrives, not held until the reply ends."""
    text = GOLDEN["qwen3_coder"][0]
    prose, markup = text.split("<tool_call>", 1)
    from .fake_backend import Pause

    items = [chunk({"role": "assistant", "content": ""}), chunk({"content": prose})]
    items += [Pause(1.5), chunk({"content": "<tool_call>" + markup}), chunk({}, "stop")]
    backend.handler = lambda req: Sse(items)
    body = {"model": "m", "max_tokens": 100, "messages": ASK, "tools": ANTHROPIC_TOOLS,
            "stream": True}  # fmt: skip
    r = requests.post(gateway.url + "/v1/messages", json=body, stream=True, timeout=30,
                      headers={"x-api-key": KEY})  # fmt: skip
    seen = ""
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("data: ") and "text_delta" in line:
            seen += json.loads(line[6:])["delta"]["text"]
            if seen == prose:
                break
    assert backend.requests and seen == prose  # arrived during the pause
    r.close()


@pytest.mark.parametrize("case", ["glm45", "llama3_json", "mistral"])
def test_anthropic_non_streaming(gateway, backend, case):
    text, calls, before = GOLDEN[case]
    backend.handler = lambda req: completion(text)
    message = messages(gateway).messages.create(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    )
    assert message.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in message.content if b.type == "tool_use"] == calls
    assert "".join(b.text for b in message.content if b.type == "text") == before


@pytest.mark.parametrize("case", ["qwen3_coder", "mistral", "deepseek-v3.1"])
def test_openai_stream_gets_tool_calls_deltas(gateway, backend, case):
    text, calls, before = GOLDEN[case]
    backend.handler = lambda req: streamed(text, size=2)
    chunks = list(
        chat(gateway).chat.completions.create(
            model="m", messages=ASK, tools=OPENAI_TOOLS, stream=True
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    got = [(t.index, t.id, t.function.name, json.loads(t.function.arguments))
           for d in deltas for t in d.tool_calls or []]  # fmt: skip
    assert [(name, args) for _, _, name, args in got] == calls
    assert [i for i, *_ in got] == list(range(len(calls)))
    assert all(call_id.startswith("call_") for _, call_id, *_ in got)
    assert "".join(d.content or "" for d in deltas) == before
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_openai_non_streaming(gateway, backend):
    text, calls, before = GOLDEN["qwen3_coder"]
    backend.handler = lambda req: completion(text)
    r = chat(gateway).chat.completions.create(model="m", messages=ASK, tools=OPENAI_TOOLS)
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert message.content == before
    assert [
        (t.function.name, json.loads(t.function.arguments)) for t in message.tool_calls
    ] == calls


def test_without_declared_tools_nothing_is_rescued(gateway, backend):
    text = GOLDEN["hermes"][0]
    backend.handler = lambda req: streamed(text)
    with messages(gateway).messages.stream(model="m", max_tokens=100, messages=ASK) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and [b.text for b in final.content] == [text]
    backend.handler = lambda req: completion(text)
    r = chat(gateway).chat.completions.create(model="m", messages=ASK)
    assert r.choices[0].message.content == text and not r.choices[0].message.tool_calls


def test_structured_tool_calls_win_and_the_text_stays_text(gateway, backend):
    """The server parsed a call itself: markup in the text is then not a call."""
    text = "Shown: " + CALL
    call = {"index": 0, "id": "call_x", "type": "function",
            "function": {"name": "Read", "arguments": '{"file_path": "y"}'}}  # fmt: skip
    items = [chunk({"role": "assistant", "content": ""})]
    items += [chunk({"content": text[i : i + 5]}) for i in range(0, len(text), 5)]
    items += [chunk({"tool_calls": [call]}), chunk({}, "tool_calls"), usage_chunk(5, 5)]
    backend.handler = lambda req: Sse(items)
    with messages(gateway).messages.stream(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == text and final.content[1].input == {"file_path": "y"}
    backend.handler = lambda req: completion(text, tool_calls=[call], finish="tool_calls")
    r = chat(gateway).chat.completions.create(model="m", messages=ASK, tools=OPENAI_TOOLS)
    assert r.choices[0].message.content == text and len(r.choices[0].message.tool_calls) == 1


def test_a_lookalike_streams_back_byte_for_byte(gateway, backend):
    text = NOT_CALLS["code-block"] + NOT_CALLS["never-closes"]
    backend.handler = lambda req: streamed(text, size=4)
    with messages(gateway).messages.stream(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "end_turn" and [b.text for b in final.content] == [text]
    chunks = chat(gateway).chat.completions.create(
        model="m", messages=ASK, tools=OPENAI_TOOLS, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


@pytest.mark.parametrize(
    ("setting", "rescued"),
    [("false", {}), ("off", {}), ("hermes", {"hermes"}), ("qwen3_coder", {"qwen3_coder"})],
)
def test_the_backend_setting_turns_the_rescue_off_or_pins_a_dialect(app_factory, backend, setting,
                                                                     rescued):  # fmt: skip
    client = app_factory(VLLM_TEXT_TOOL_CALLS=setting) if setting != "false" else None
    if client is None:  # TOML's boolean; the environment spells it "off"
        with pytest.raises(Exception, match="VLLM_TEXT_TOOL_CALLS"):
            app_factory(VLLM_TEXT_TOOL_CALLS="false")
        return
    for case in ("hermes", "qwen3_coder"):
        text = GOLDEN[case][0]
        backend.handler = lambda req, text=text: completion(text)
        body = {"model": "m", "max_tokens": 50, "messages": ASK, "tools": ANTHROPIC_TOOLS}
        r = client.post("/v1/messages", json=body, headers={"x-api-key": KEY})
        content = r.get_json()["content"]
        if case in rescued:
            assert content[-1]["type"] == "tool_use"
        else:
            assert content == [{"type": "text", "text": text}]


def test_a_toml_backend_takes_true_false_or_a_dialect(tmp_path):
    from toktoken.config import ConfigError, Settings

    def load(value: str):
        path = tmp_path / "toktoken.toml"
        path.write_text(f'[backends.local]\nurl = "http://127.0.0.1:9"\nmodel = "m"\n'
                        f"text_tool_calls = {value}\n")  # fmt: skip
        return Settings.from_env({"TOKTOKEN_CONFIG": str(path)}).backends[0].text_tool_calls

    assert load("false") == "off" and load("true") == "auto" and load('"glm45"') == "glm45"
    with pytest.raises(ConfigError, match="text_tool_calls"):
        load('"xml"')


def test_rescued_calls_are_counted_per_backend_and_dialect(gateway_factory, backend, tmp_path):
    gw = gateway_factory(TELEMETRY_ENABLED="true", TELEMETRY_DB=str(tmp_path / "u.db"),
                         TELEMETRY_FLUSH_INTERVAL="0.2")  # fmt: skip
    text = GOLDEN["hermes-two"][0]
    backend.handler = lambda req: streamed(text)
    with messages(gw).messages.stream(
        model="m", max_tokens=100, messages=ASK, tools=ANTHROPIC_TOOLS
    ) as stream:
        stream.get_final_message()
    backend.handler = lambda req: completion(GOLDEN["glm45"][0])
    chat(gw).chat.completions.create(model="m", messages=ASK, tools=OPENAI_TOOLS)
    metrics = requests.get(gw.url + "/metrics", timeout=10).text
    assert re.search(
        r'toktoken_text_tool_calls_total\{backend="default",dialect="hermes"\} 2', metrics
    )
    assert re.search(
        r'toktoken_text_tool_calls_total\{backend="default",dialect="glm45"\} 1', metrics
    )
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = requests.get(gw.url + "/stats", headers={"x-api-key": KEY}, timeout=10).json()
        if stats["totals"]["text_tool_calls"] == 3:
            break
        time.sleep(0.2)
    assert stats["totals"]["text_tool_calls"] == 3
    page = requests.get(gw.url + "/dashboard", headers={"x-api-key": KEY}, timeout=10).text
    assert "Tool calls in the text" in page and "<b>default</b>: 3" in page
