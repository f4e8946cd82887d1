"""One path for every API request: route, prepare, send, read the answer.

``prepare()`` chooses the backend (routing.py) and the replica of it
(backends/replicas.py: the session's, else the least busy), converts the client's request
into the backend's dialect, applies the backend's quirks, fits max_tokens into
its window (counting the prompt only when it might not fit) and serialises the
body once. ``complete()`` and ``open()`` send it — for a JSON answer or a
stream — and own the single refit: when the backend says the prompt fits but
max_tokens does not, its window is learned, max_tokens shrunk, the body sent
once more. They also own the failover: a replica that fails before any byte
went to the client (refused, reset, 502/503) is replaced, once, by another
healthy replica. The answer comes back as the client's body and its Usage, or
as an (UpstreamStream, StreamMachine) pair for the relay.

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

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from . import jsonio
from .backends import (
    CHAT_PATH,
    MESSAGES_PATH,
    BackendClient,
    Backends,
    Capabilities,
    Replica,
    ReplicaSet,
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
from .errors import ApiError, GatewayError, PromptTooLong
from .routing import Router, anthropic_has_images, openai_has_images
from .sessions import session_id
from .telemetry.metrics import FAILOVERS
from .tokens import (
    TokenCounter,
    estimate_prompt_tokens,
    fit_max_tokens,
    needs_count,
    refit_after_overflow,
)

log = logging.getLogger(__name__)

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
    group: ReplicaSet | None = None  # the backend; ``backend`` is the replica's client
    replica: Replica | None = None
    session: str | None = None  # the client's session identity (sessions.py)
    failover_from: str | None = None  # the replica that failed first, if one did

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
        self.session_header = settings.forward_session_header
        self.backends = backends
        self.router = router
        self.counter = TokenCounter()

    # Preparing --------------------------------------------------------------

    def route(self, dialect: str, req: dict) -> ReplicaSet:
        images = anthropic_has_images(req) if dialect == ANTHROPIC else openai_has_images(req)
        return self.router.choose(req["model"], has_images=images)

    def prepare(self, dialect: str, req: dict, headers: Mapping[str, str]) -> Prepared:
        """The request for its backend, on the replica that will serve it
        (counted in flight from here: ``complete``/``open`` end it)."""
        group = self.route(dialect, req)
        session = session_id(headers, req)
        replica = group.choose(session)
        group.begin(replica)
        try:
            prepared = self._prepare(dialect, req, headers, group, replica.client)
        except BaseException:
            group.end(replica, answered=False)
            raise
        prepared.group, prepared.replica, prepared.session = group, replica, session
        if self.session_header and session:
            prepared.headers[self.session_header] = session
        return prepared

    def _prepare(self, dialect, req, headers, group: ReplicaSet, backend: BackendClient):
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
        caps = self.backends.caps(group)
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

    def count_tokens(self, req: dict, headers: Mapping[str, str]) -> int:
        """An Anthropic count_tokens request: the prompt as the backend will
        see it (system, messages, tools, tool calls and results), counted on
        the replica the session's messages go to."""
        group = self.route(ANTHROPIC, req)
        replica = group.choose(session_id(headers, req))
        caps = self.backends.caps(group)
        body = to_openai_request(
            dict(req, max_tokens=req.get("max_tokens") or 1), group.model, kind=caps.kind
        )
        apply_quirks(body, group.settings.quirks)
        group.begin(replica)
        try:
            return self.counter.count(replica.client, caps, body).tokens
        except PromptTooLong as exc:
            self._learn(replica.client, exc)
            raise
        finally:
            # Counts come from a cache or fall back to an estimate: they say
            # nothing of the replica's reachability.
            group.end(replica, answered=False)

    # Sending ------------------------------------------------------------------

    def complete(self, prepared: Prepared) -> tuple[dict, Usage]:
        """Send for a JSON answer; the client's body and its usage."""
        answer = self._send(prepared, stream=False)
        return _REPLIES[prepared.dialect, prepared.native](answer, prepared)

    def open(self, prepared: Prepared) -> tuple[UpstreamStream, StreamMachine]:
        """Send for a stream; errors before the first byte raise here."""
        upstream = self._send(prepared, stream=True)
        return upstream, _MACHINES[prepared.dialect, prepared.native](prepared)

    def _send(self, prepared: Prepared, *, stream: bool):
        """Send on the prepared replica; if it fails before answering in a way
        another replica can mend, send once more on another healthy one."""
        started = time.monotonic()
        try:
            return self._on_replica(prepared, stream)
        except GatewayError as exc:
            group, failed = prepared.group, prepared.replica
            if not exc.failover or group is None or len(group.replicas) == 1:
                raise
            # Within the request's budget: a retry must still have a connect
            # timeout's worth of the read timeout left.
            client = prepared.backend
            if time.monotonic() - started + client.connect_timeout > client.read_timeout:
                raise
            other = group.choose(prepared.session, exclude=(failed,), admitted_only=True)
            if other is None:
                raise
            log.warning(
                "backend %s replica %s failed before answering (%s): failover to %s",
                group.name,
                failed.url,
                exc.replica_fault,
                other.url,
            )
            FAILOVERS.labels(group.name).inc()
            prepared.failover_from = failed.url
            prepared.replica, prepared.backend = other, other.client
            group.begin(other)
            return self._on_replica(prepared, stream)

    def _on_replica(self, prepared: Prepared, stream: bool):
        """One replica's attempt, and its bookkeeping: in flight until the
        answer is read (a stream: until it is closed), and what it says of
        the replica's health."""
        group, replica = prepared.group, prepared.replica
        try:
            if stream:
                # An OpenAI-style server that ignores stream: true answers
                # with one completion: it is replayed as one chunk.
                json_as_events = None if prepared.native else completion_as_chunks

                def call(path: str, data: bytes, headers: dict) -> UpstreamStream:
                    return prepared.backend.open_stream(
                        path, data, headers, json_as_events=json_as_events
                    )

            else:
                call = prepared.backend.post
            result = self._refit_once(prepared, call)
        except GatewayError as exc:
            if group is not None:
                group.end(replica, exc)
            raise
        except BaseException:
            if group is not None:
                group.end(replica, answered=False)
            raise
        if group is None:
            return result
        if stream:
            result.on_close = lambda error: group.end(replica, error)
        else:
            group.end(replica)
        return result

    def _refit_once(self, prepared: Prepared, call):
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
