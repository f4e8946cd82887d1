"""Every error the gateway can return, with its status and wire shapes.

Views raise these; one error handler turns them into responses. Nothing else
in the code base builds error JSON.

Retry policy (``x-should-retry``): clients retry on their own, and Claude Code
retries 401/429/5xx ten times over about three minutes unless told not to
(../shared/CLIENTS.md). We say "retry" only where waiting can help: a busy
backend (429, 529). Everything else — bad input, a wrong key, a backend that
refuses the request, is down or timed out — fails at once with a clear
message, so a user is not left looking at a spinner for minutes.
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    type = "api_error"
    # OpenAI's name for the same class of error, for the OpenAI route.
    openai_type = "api_error"
    retryable = False
    # Set by backends/failures.py on a backend's failures: what it says of the
    # replica's health ("connection refused", "503", ...; None: nothing), and
    # whether the request may go to another replica (nothing was relayed and
    # the replica did not take the request on: refused, reset before the
    # status line, 502/503), and whether the replica could not be reached at
    # all (refused, no route, a connect timeout): /health says so at once.
    replica_fault: str | None = None
    failover: bool = False
    unreachable: bool = False

    def __init__(self, message: str, *, status: int | None = None, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if status is not None:
            self.status = status

    def anthropic_body(self, request_id: str | None = None) -> dict:
        body = {"type": "error", "error": {"type": self.type, "message": self.message}}
        if request_id:
            body["request_id"] = request_id
        return body

    def openai_body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.type,
            }
        }

    @property
    def openai_status(self) -> int:
        """OpenAI has no 529: capacity problems are 503 there."""
        return 503 if self.status == 529 else self.status

    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "true" if self.retryable else "false"}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    openai_type = "invalid_request_error"


class PromptTooLong(InvalidRequest):
    """The prompt does not fit the backend's context window. Each dialect gets
    its own wording, because clients parse it: Anthropic's
    ``prompt is too long: N tokens > M maximum`` (Claude Code compacts the
    conversation on it, reading both numbers: never change it), and on the
    OpenAI route OpenAI's ``context_length_exceeded`` (the openai SDK's users,
    LangChain, Open WebUI and Continue recognise overflow by that code)."""

    def __init__(self, prompt_tokens: int | None, context: int | None):
        self.prompt_tokens = prompt_tokens
        self.context = context
        if prompt_tokens is not None and context is not None:
            message = f"prompt is too long: {prompt_tokens} tokens > {context} maximum"
        elif context is not None:
            message = f"prompt is too long: it does not fit the context of {context} tokens"
        else:
            message = "prompt is too long for the backend's context window"
        super().__init__(message, param="messages")

    def openai_body(self) -> dict:
        if self.context is not None and self.prompt_tokens is not None:
            message = (
                f"This model's maximum context length is {self.context} tokens. However, "
                f"your messages resulted in {self.prompt_tokens} tokens. Please reduce "
                "the length of the messages."
            )
        elif self.context is not None:
            message = (
                f"This model's maximum context length is {self.context} tokens. Please "
                "reduce the length of the messages."
            )
        else:
            message = "This model's maximum context length was exceeded. Please reduce the length of the messages."
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    openai_type = "invalid_request_error"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    openai_type = "invalid_request_error"


class MethodNotAllowed(InvalidRequest):
    status = 405


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"
    openai_type = "invalid_request_error"


class RequestTooLarge(GatewayError):
    status = 413
    type = "request_too_large"
    openai_type = "invalid_request_error"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    openai_type = "rate_limit_error"
    retryable = True

    def __init__(self, message: str, *, retry_after: int | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after  # seconds until it would pass, when known

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        if self.retry_after is not None:
            headers["retry-after"] = str(self.retry_after)
        return headers


class ApiError(GatewayError):
    """Something failed inside the gateway or the backend answered nonsense."""


class BackendUnavailable(GatewayError):
    """The backend could not be reached (refused, DNS, reset) or failed with a 5xx."""

    status = 502


class BackendTimeout(GatewayError):
    status = 504


class Overloaded(GatewayError):
    """The backend says it is at capacity (HTTP 503): worth a later retry."""

    status = 529
    type = "overloaded_error"
    openai_type = "server_error"
    retryable = True


# An error a backend reports inside a 200 stream names its Anthropic type
# (an Anthropic-native backend), or only says what happened (vLLM, OpenAI).
_KNOWN = (InvalidRequest, AuthenticationFailed, NotFound, RequestTooLarge, RateLimited, Overloaded)
_BY_TYPE = {cls.type: cls for cls in _KNOWN}


def stream_error(err) -> GatewayError:
    """The GatewayError for an error object a backend sent mid-stream
    (``{"error": {...}}`` in either dialect, or a bare string). Capacity
    problems (vLLM's "server overloaded", a 503/529 code, no KV-cache room)
    become overloaded_error, which clients retry later; a known Anthropic
    type keeps its class; anything else is api_error."""
    if isinstance(err, dict):
        message = str(err.get("message") or err)
        code, kind = err.get("code"), str(err.get("type") or "")
    else:
        message, code, kind = str(err), None, ""
    text = f"{kind} {message}".lower()
    if code in (503, 529, "503", "529") or any(w in text for w in ("overload", "capacity")):
        return Overloaded(f"the backend is overloaded: {message}")
    if kind in _BY_TYPE:
        return _BY_TYPE[kind](f"the backend failed mid-stream: {message}")
    return ApiError(f"the backend failed mid-stream: {message}")


def error_for_status(status: int, message: str) -> GatewayError:
    """An error of the class that owns ``status`` (for answers the HTTP
    server itself gives, e.g. gunicorn's 414 and 431)."""
    for cls in (
        InvalidRequest,
        AuthenticationFailed,
        PermissionDenied,
        NotFound,
        RequestTooLarge,
        RateLimited,
        Overloaded,
        BackendUnavailable,
        BackendTimeout,
    ):
        if cls.status == status:
            return cls(message)
    return (InvalidRequest if 400 <= status < 500 else ApiError)(message, status=status)
