"""Toktoken: Anthropic Messages API in front of OpenAI-compatible model servers."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import NullSession, SessionInterface
from werkzeug.exceptions import HTTPException

from . import jsonio
from .auth import identified, identify, presented_key
from .config import Settings
from .convert.common import random_id
from .errors import (
    ApiError,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
)
from .gateway import Gateway
from .logs import setup_logging
from .telemetry import RequestRecord, key_fingerprint

# Endpoints that produce a usage record.
USAGE_ENDPOINTS = {"messages.create_message", "chat.chat_completions"}

__all__ = ["create_app", "Settings"]

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app. Nothing happens at import time; settings come from
    the environment unless given (tests pass their own)."""
    settings = settings or Settings.from_env()
    setup_logging(settings.logging_level, settings.log_format)
    if settings.uses_default_key_publicly():
        log.warning(
            "API_KEY is the public default and HOST=%s is not loopback: anyone who can reach "
            "this port can use your backends. Set API_KEY to a secret.",
            settings.host,
        )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json = FastJSONProvider(app)
    app.session_interface = NoSessions()
    gateway = app.extensions["toktoken"] = Gateway(settings)

    from .api import chat, dashboard, messages, models, ops, stats

    app.register_blueprint(ops.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(chat.bp)
    app.register_blueprint(stats.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(models.bp)

    @app.before_request
    def open_record():
        """One usage record and one log line per API request, however it ends
        (a wrong key included)."""
        g.request_id = request_id = random_id("req_")
        req = request._get_current_object()  # one context lookup, not one per attribute
        if req.endpoint in USAGE_ENDPOINTS:
            g.record = RequestRecord(request_id, req.path, recorder=gateway.recorder)
            g.record.key_fp = key_fingerprint(presented_key(req.headers))

    @app.before_request
    def authenticate():
        endpoint = request.endpoint
        if endpoint is None:
            return None  # unknown route: 404 below, no need to leak that a key is wrong
        if endpoint in ops.PUBLIC_ENDPOINTS or endpoint.startswith("dashboard."):
            g.client = identified(request.headers, settings.keys)  # says more to a key holder
            return None  # the dashboard authenticates browsers itself
        g.client = identify(request.headers, settings.keys)
        record = getattr(g, "record", None)
        if record is not None:
            record.key_name = g.client.name
        return None

    @app.after_request
    def tag(response):
        response.headers["request-id"] = getattr(g, "request_id", "")
        return response

    @app.errorhandler(GatewayError)
    def gateway_error(exc: GatewayError):
        return _error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 404:
            err = NotFound(f"{request.method} {request.path} does not exist on this gateway")
        elif exc.code == 413:
            err = RequestTooLarge(
                f"request body exceeds the limit of {settings.max_request_bytes} bytes"
            )
        elif exc.code == 405:
            err = MethodNotAllowed(f"method {request.method} is not allowed on {request.path}")
        else:
            err = InvalidRequest(exc.description or exc.name, status=exc.code or 400)
        return _error_response(err)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, RecursionError):
            # Only a client's nesting recurses this deep (jsonio.MAX_DEPTH levels
            # parse; the standard library's serialiser fails before that).
            return _error_response(InvalidRequest("the request is nested too deeply to handle"))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(ApiError("internal gateway error; see the gateway log"))

    return app


class NoSessions(SessionInterface):
    """The gateway keeps no Flask sessions (the dashboard signs its own
    cookie): one shared, read-only null session instead of a new one per
    request."""

    _null = NullSession()

    def open_session(self, app, request):
        return self._null

    def save_session(self, app, session, response) -> None:
        return None


class FastJSONProvider(DefaultJSONProvider):
    """jsonify() through orjson (see jsonio.py); keys keep their order."""

    sort_keys = False

    def dumps(self, obj, **kwargs) -> str:
        return jsonio.dumps(obj).decode()

    def loads(self, s, **kwargs):
        return jsonio.loads(s)

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(jsonio.dumps(obj), mimetype=self.mimetype)


def _error_response(err: GatewayError):
    request_id = getattr(g, "request_id", None)
    status = err.status
    if request.path.startswith("/v1/chat/"):
        body = err.openai_body()
        status = err.openai_status
    else:
        body = err.anthropic_body(request_id)
    if err.status >= 500 or err.status in (401, 403):
        log.warning(
            "%s %s -> %s %s: %s", request.method, request.path, err.status, err.type, err.message
        )
    record = getattr(g, "record", None)
    if record is not None:
        record.finish(status=status, error_type=err.type)
    response = jsonify(body)
    response.status_code = status
    response.headers.update(err.headers())
    return response
