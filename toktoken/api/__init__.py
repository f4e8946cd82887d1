"""HTTP blueprints: parse, authenticate, validate, call down, shape the reply."""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, request
from marshmallow import ValidationError

from .. import jsonio
from ..errors import InvalidRequest, PromptTooLong
from ..relay import client_gone_check
from ..schemas.anthropic import first_error
from ..telemetry.metrics import ACTIVE_STREAMS

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_body() -> object:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        return jsonio.loads(raw)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None


def validated(loader: Callable[[object], dict]) -> dict:
    """Parse and validate the body; a 400 naming the first bad field."""
    try:
        return loader(json_body())
    except ValidationError as exc:
        message = first_error(exc.messages)
        field = message.split(":", 1)[0] if ":" in message else None
        raise InvalidRequest(message, param=field) from None


def dumps(body: dict) -> bytes:
    return jsonio.dumps(body)


def send_fitted(gateway, call, path: str, body: dict, data: bytes | None = None):
    """POST ``body`` (already serialised as ``data``, if given) with ``call``;
    if the backend says only max_tokens was too large for its window, refit
    and try once more."""
    try:
        return call(path, data if data is not None else dumps(body))
    except PromptTooLong as exc:
        if not gateway.refit_after_overflow(body, exc):
            raise
        return call(path, dumps(body))


def event_stream(body) -> Response:
    return Response(body, status=200, mimetype="text/event-stream", headers=STREAM_HEADERS)


def streamed(relay_fn, gateway, upstream, machine, draft, usage) -> Response:
    """A streaming response relayed by ``relay_fn`` from ``machine``. When the
    stream ends, however it ends, the request's record is finished with
    ``usage()`` (a dict of input_tokens, output_tokens, cache_read_tokens,
    exact)."""

    def done(outcome: str, first_output_at, error_type) -> None:
        if outcome == "client_gone":
            error_type = "client_disconnected"
        draft.finish(status=200, outcome=outcome, error_type=error_type,
                     first_token_at=first_output_at, **usage())  # fmt: skip

    relayed = relay_fn(
        upstream,
        machine,
        ping_interval=gateway.settings.ping_interval,
        client_gone=client_gone_check(request.environ),
        on_done=done,
    )
    return event_stream(_counted(relayed, draft.route))


def _counted(stream, route: str):
    gauge = ACTIVE_STREAMS.labels(route)
    gauge.inc()
    try:
        yield from stream
    finally:
        stream.close()
        gauge.dec()
