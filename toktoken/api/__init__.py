"""HTTP blueprints: parse, validate, hand the request to the pipeline, shape
the reply. One blueprint per area; each view a few lines.

May import: the pipeline (through the gateway), schemas, errors, relay,
telemetry. Never the backend client or convert/.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Response, g, jsonify, request
from marshmallow import ValidationError

from .. import jsonio
from ..errors import InvalidRequest
from ..gateway import current_gateway
from ..pipeline import ANTHROPIC, Prepared
from ..relay import client_gone_check, relay_anthropic, relay_openai
from ..schemas.anthropic import first_error
from ..telemetry.metrics import ACTIVE_STREAMS, TEXT_TOOL_CALLS

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def json_body() -> object:
    """The request body as JSON, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise InvalidRequest("the request body is empty: send a JSON object")
    try:
        return jsonio.loads_untrusted(raw)
    except jsonio.TooDeep as exc:
        raise InvalidRequest(f"the request body is refused: {exc}") from None
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


def serve(dialect: str, loader: Callable[[object], dict]) -> Response:
    """A model request: validated, let in by the caller's key (its models and
    limits, access.py), prepared, answered."""
    req = validated(loader)
    gateway = current_gateway()
    admission = gateway.access.admit(g.client, req["model"], stream=bool(req.get("stream")))
    try:
        prepared = gateway.pipeline.prepare(dialect, req, request.headers)
    except BaseException:
        admission.settle(None)
        raise
    return answer(prepared, admission)


def answer(prepared: Prepared, admission) -> Response:
    """Send a prepared request and answer the client: one JSON reply, or a
    stream relayed event by event. The request's record is finished once,
    however it ends (errors: app.py's handler), and its admission settled
    with the tokens the client was told of."""
    gateway = current_gateway()
    pipeline = gateway.pipeline
    record = g.record
    record.model, record.backend = prepared.model, prepared.backend.name
    record.backend_model, record.stream = prepared.backend.model, prepared.stream
    record.session_id = prepared.session
    record.prefix_reuse = gateway.prefixes.observe(record.session_id, prepared.body)
    admission.charge(prepared.input_estimate)  # input up front; the rest when it ends
    try:
        if not prepared.stream:
            body, usage = pipeline.complete(prepared)
        else:
            upstream, machine = pipeline.open(prepared)
    except BaseException:
        admission.settle(None)
        raise
    finally:  # which replica served it (or failed it), and whether one failed first
        record.replica, record.failover_from = prepared.backend.url, prepared.failover_from
    if not prepared.stream:
        _count_rescued(prepared, record)
        admission.settle(_tokens(usage))
        record.finish(status=200, usage=usage, first_token_at=time.monotonic())
        return jsonify(body)

    def done(outcome: str, first_output_at, error_type) -> None:
        if outcome == "client_gone":
            error_type = "client_disconnected"
        _count_rescued(prepared, record)
        usage = machine.usage()
        admission.settle(_tokens(usage))
        record.finish(
            status=200,
            usage=usage,
            outcome=outcome,
            error_type=error_type,
            first_token_at=first_output_at,
        )

    relay = relay_anthropic if prepared.dialect == ANTHROPIC else relay_openai
    relayed = relay(
        upstream,
        machine,
        ping_interval=gateway.settings.ping_interval,
        client_gone=client_gone_check(request.environ),
        on_done=done,
    )
    return Response(
        _counted(relayed, record.route),
        status=200,
        mimetype="text/event-stream",
        headers=STREAM_HEADERS,
    )


def _tokens(usage) -> int:
    """What a request costs against token limits: input (prefix-cache hits
    excluded) + output, as in the client's usage and in /stats."""
    return (usage.input_tokens or 0) + (usage.output_tokens or 0)


def _count_rescued(prepared: Prepared, record) -> None:
    """Tool calls rescued from the text: in the record and per dialect in
    /metrics, so an operator learns the backend's parser is off."""
    rescuer = prepared.rescuer
    if rescuer is not None and rescuer.rescued:
        record.text_tool_calls = rescuer.rescued
        for dialect in rescuer.dialects:
            TEXT_TOOL_CALLS.labels(prepared.backend.name, dialect).inc()


def _counted(stream, route: str):
    gauge = ACTIVE_STREAMS.labels(route)
    gauge.inc()
    try:
        yield from stream
    finally:
        stream.close()
        gauge.dec()
