"""One path for every API request: route, prepare, send, read the answer.

``prepare()`` chooses the backend (routing.py), converts the client's request
into the backend's dialect, applies the backend's quirks, fits max_tokens into
its window (counting the prompt only when it might not fit) and serialises the
body once. ``complete()`` and ``open()`` send it — for a JSON answer or a
stream — and own the single refit: when the backend says the prompt fits but
max_tokens does not, its window is learned, max_tokens shrunk, the body sent
once more. The answer comes back as the client's body and its Usage, or as
an (UpstreamStream, StreamMachine) pair for the relay.

Both routes and the four dialect pairs take this path:

| client    | backend          | request              | reply                 | stream machine          |
|-----------|------------------|----------------------|-----------------------|-------------------------|
| Anthropic | OpenAI-style     | to_openai_request    | to_anthropic_message  | StreamTranslator        |
| Anthropic | Anthropic-native | as sent, its model   | as sent, the client's model | AnthropicPassthrough |
| OpenAI    | OpenAI-style     | for_openai_backend   | as sent, the client's model | OpenAIPassthrough  |
| OpenAI    | Anthropic-native | to_anthropic_request | to_openai_completion  | AnthropicToOpenAIStream |

This module and api/ are the only ones that join convert/ (pure) and
backends/ (I/O).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import jsonio
from .backends import (
    CHAT_PATH,
    MESSAGES_PATH,
    BackendClient,
    Backends,
    Capabilities,
    UpstreamStream,
)
from .config import Settings
from .convert import (
    AnthropicPassthrough,
    AnthropicToOpenAIStream,
    MalformedResponse,
    OpenAIPassthrough,
    StreamMachine,
    StreamTranslator,
    ToolCallRescuer,
    Usage,
    apply_quirks,
    completion_as_chunks,
    for_openai_backend,
    for_openai_client,
    to_anthropic_message,
    to_anthropic_request,
    to_openai_completion,
    to_openai_request,
)
from .errors import ApiError, PromptTooLong
from .routing import Router, anthropic_has_images, openai_has_images
from .tokens import (
    TokenCounter,
    estimate_prompt_tokens,
    fit_max_tokens,
    needs_count,
    refit_after_overflow,
)

ANTHROPIC = "anthropic"
OPENAI = "openai"
# Headers an Anthropic-native backend gets from an Anthropic client (never its key).
_FORWARDED = ("anthropic-version", "anthropic-beta")


@dataclass
class Prepared:
    """One request, ready to send to its backend."""

    dialect: str  # the client's: ANTHROPIC or OPENAI
    req: dict  # the client's request, validated
    backend: BackendClient
    stream: bool
    path: str
    body: dict
    data: bytes  # ``body`` serialised, sent as is
    headers: dict
    input_estimate: int = 0  # prompt tokens, counted or estimated (Anthropic route)
    window: int | None = None  # the backend's context less the margin, when known
    rescuer: ToolCallRescuer | None = None  # tool calls left in the text, when enabled

    @property
    def model(self) -> str:
        """The model name the client asked for (and gets back)."""
        return self.req["model"]

    @property
    def native(self) -> bool:
        return self.backend.settings.anthropic_native


class Pipeline:
    def __init__(self, settings: Settings, backends: Backends, router: Router):
        self.margin = settings.context_margin
        self.backends = backends
        self.router = router
        self.counter = TokenCounter()

    # Preparing --------------------------------------------------------------

    def route(self, dialect: str, req: dict) -> BackendClient:
        images = anthropic_has_images(req) if dialect == ANTHROPIC else openai_has_images(req)
        return self.router.choose(req["model"], has_images=images)

    def prepare(self, dialect: str, req: dict, headers: Mapping[str, str]) -> Prepared:
        backend = self.route(dialect, req)
        stream = bool(req.get("stream"))
        if backend.settings.anthropic_native:
            if dialect == ANTHROPIC:
                body = dict(req, model=backend.model)
                forwarded = {h: headers[h] for h in _FORWARDED if h in headers}
            else:
                body, forwarded = to_anthropic_request(req, backend.model, stream=stream), {}
            return Prepared(
                dialect, req, backend, stream, MESSAGES_PATH, body, jsonio.dumps(body), forwarded
            )
        caps = self.backends.caps(backend)
        if dialect == ANTHROPIC:
            body = to_openai_request(req, backend.model, stream=stream, kind=caps.kind)
        else:
            body = for_openai_backend(req, backend.model, stream=stream)
        apply_quirks(body, backend.settings.quirks)
        data = jsonio.dumps(body)
        prompt = None
        if isinstance(body.get("max_tokens"), int):
            prompt = self._fit(backend, caps, body, len(data))
            if prompt is not None:
                data = jsonio.dumps(body)  # max_tokens may have changed
        estimate = prompt.tokens if prompt else estimate_prompt_tokens(data)
        window = caps.context - self.margin if caps.context else None
        rescuer = _rescuer(body, backend.settings.text_tool_calls)
        return Prepared(
            dialect, req, backend, stream, CHAT_PATH, body, data, {}, estimate, window, rescuer
        )

    def _fit(self, backend: BackendClient, caps: Capabilities, body: dict, body_bytes: int):
        """Make ``body["max_tokens"]`` fit the backend's context window.
        Returns the prompt count when one was needed (exact or estimated)."""
        if not needs_count(body["max_tokens"], body_bytes, caps.context, self.margin):
            return None
        prompt = self.counter.count(backend, caps, body)
        body["max_tokens"] = fit_max_tokens(body["max_tokens"], prompt, caps.context, self.margin)
        return prompt

    def count_tokens(self, req: dict) -> int:
        """An Anthropic count_tokens request: the prompt as the backend will
        see it (system, messages, tools, tool calls and results)."""
        backend = self.route(ANTHROPIC, req)
        caps = self.backends.caps(backend)
        body = to_openai_request(
            dict(req, max_tokens=req.get("max_tokens") or 1), backend.model, kind=caps.kind
        )
        apply_quirks(body, backend.settings.quirks)
        try:
            return self.counter.count(backend, caps, body).tokens
        except PromptTooLong as exc:
            self._learn(backend, exc)
            raise

    # Sending ------------------------------------------------------------------

    def complete(self, prepared: Prepared) -> tuple[dict, Usage]:
        """Send for a JSON answer; the client's body and its usage."""
        answer = self._send(prepared, prepared.backend.post)
        return _REPLIES[prepared.dialect, prepared.native](answer, prepared)

    def open(self, prepared: Prepared) -> tuple[UpstreamStream, StreamMachine]:
        """Send for a stream; errors before the first byte raise here."""
        # An OpenAI-style server that ignores stream: true answers with one
        # completion: it is replayed as one chunk.
        json_as_events = None if prepared.native else completion_as_chunks

        def open_stream(path: str, data: bytes, headers: dict) -> UpstreamStream:
            return prepared.backend.open_stream(path, data, headers, json_as_events=json_as_events)

        upstream = self._send(prepared, open_stream)
        return upstream, _MACHINES[prepared.dialect, prepared.native](prepared)

    def _send(self, prepared: Prepared, call):
        """POST the prepared body with ``call``; if the backend says only
        max_tokens was too large for its window, refit and try once more."""
        try:
            return call(prepared.path, prepared.data, prepared.headers)
        except PromptTooLong as exc:
            self._learn(prepared.backend, exc)
            room = None
            if isinstance(prepared.body.get("max_tokens"), int):
                room = refit_after_overflow(prepared.body["max_tokens"], exc, self.margin)
            if room is None:
                raise
            prepared.body["max_tokens"] = room
            prepared.data = jsonio.dumps(prepared.body)
            return call(prepared.path, prepared.data, prepared.headers)

    def _learn(self, backend: BackendClient, exc: PromptTooLong) -> None:
        if exc.context:
            self.backends.learn_context(backend, exc.context)


# Replies (non-streaming): (backend's answer, prepared) -> (client's body, usage)


def _anthropic_from_openai(completion, prepared: Prepared) -> tuple[dict, Usage]:
    try:
        message = to_anthropic_message(
            completion,
            prepared.model,
            input_tokens_estimate=prepared.input_estimate,
            window=prepared.window,
            rescuer=prepared.rescuer,
        )
    except MalformedResponse as exc:
        raise ApiError(
            f"backend {prepared.backend.url} returned an invalid completion: {exc}"
        ) from None
    reported = Usage.from_openai(completion.get("usage"), completion.get("timings"))
    return message, reported or Usage.from_anthropic(message["usage"], exact=False)


def _anthropic_from_anthropic(message, prepared: Prepared) -> tuple[dict, Usage]:
    _check_message(message, prepared)
    message["model"] = prepared.model
    return message, Usage.from_anthropic(message.get("usage"))


def _openai_from_openai(completion, prepared: Prepared) -> tuple[dict, Usage]:
    if not isinstance(completion, dict) or not completion.get("choices"):
        raise ApiError(f"backend {prepared.backend.url} returned an invalid completion")
    usage = Usage.from_openai(completion.get("usage"), completion.get("timings"))
    return for_openai_client(completion, prepared.model, prepared.rescuer), usage or Usage()


def _openai_from_anthropic(message, prepared: Prepared) -> tuple[dict, Usage]:
    _check_message(message, prepared)
    return to_openai_completion(message, prepared.model), Usage.from_anthropic(message.get("usage"))


def _check_message(message, prepared: Prepared) -> None:
    if not isinstance(message, dict) or message.get("type") != "message":
        raise ApiError(f"backend {prepared.backend.url} returned something that is not a message")


# (client dialect, backend is Anthropic-native) -> reply / stream machine
_REPLIES = {
    (ANTHROPIC, False): _anthropic_from_openai,
    (ANTHROPIC, True): _anthropic_from_anthropic,
    (OPENAI, False): _openai_from_openai,
    (OPENAI, True): _openai_from_anthropic,
}


def _include_usage(prepared: Prepared) -> bool:
    return bool((prepared.req.get("stream_options") or {}).get("include_usage"))


_MACHINES = {
    (ANTHROPIC, False): lambda p: StreamTranslator(
        p.model,
        input_tokens=p.input_estimate,
        max_tokens=p.body["max_tokens"],
        window=p.window,
        rescuer=p.rescuer,
    ),
    (ANTHROPIC, True): lambda p: AnthropicPassthrough(p.model),
    (OPENAI, False): lambda p: OpenAIPassthrough(
        p.model, include_usage=_include_usage(p), rescuer=p.rescuer
    ),
    (OPENAI, True): lambda p: AnthropicToOpenAIStream(p.model, include_usage=_include_usage(p)),
}


def _rescuer(body: dict, mode: str) -> ToolCallRescuer | None:
    """For a request that declares tools, unless the backend's configuration
    turns the rescue off (``text_tool_calls``): the declared names and their
    schemas, in the OpenAI body the backend gets."""
    if mode == "off" or not body.get("tools"):
        return None
    tools = {}
    for tool in body["tools"]:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            params = function.get("parameters")
            tools[function["name"]] = params if isinstance(params, dict) else None
    return ToolCallRescuer(tools, dialect=None if mode == "auto" else mode) if tools else None
