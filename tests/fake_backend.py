"""A scripted OpenAI-compatible backend: a real HTTP server on 127.0.0.1.

Tests set ``backend.handler`` to a function ``(Recorded) -> reply`` and read
``backend.requests`` to assert on what the gateway sent upstream. Replies:

- ``Json(body, status=200)``                       a JSON answer
- ``Sse([chunk | Pause(s) | raw_bytes, ...], done=True, cut=False)``
      chunked SSE; dicts become ``data: {...}`` events; ``done`` appends
      ``data: [DONE]``; ``cut`` drops the connection without ending the body
- ``Text(body, status, content_type)``             anything else

While streaming or pausing, the server notices when the gateway hangs up and
records it in ``backend.disconnects`` (this is how tests prove that a client's
disconnect reaches the backend).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: dict | None

    @property
    def stream(self) -> bool:
        return bool(self.body and self.body.get("stream"))


@dataclass
class Json:
    body: object
    status: int = 200
    headers: dict = field(default_factory=dict)


@dataclass
class Text:
    body: str
    status: int = 200
    content_type: str = "text/plain"


@dataclass
class Pause:
    seconds: float


@dataclass
class Sse:
    items: list
    done: bool = True
    cut: bool = False


# Chunk builders in OpenAI's shape ------------------------------------------


def chunk(delta: dict | None = None, finish_reason=None, **extra) -> dict:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish_reason}
    choice.update(extra.pop("choice_extra", {}))
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fake-model",
        "choices": [choice],
        **extra,
    }


def usage_chunk(prompt: int, completion: int, cached: int | None = None) -> dict:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion,
             "total_tokens": prompt + completion}  # fmt: skip
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
            "model": "fake-model", "choices": [], "usage": usage}  # fmt: skip


def text_stream(text_pieces: list[str], finish="stop", usage=(10, None)) -> Sse:
    items = [chunk({"role": "assistant", "content": ""})]
    items += [chunk({"content": p}) for p in text_pieces]
    items.append(chunk({}, finish_reason=finish))
    if usage:
        prompt, completion = usage
        items.append(
            usage_chunk(prompt, completion if completion is not None else len(text_pieces))
        )
    return Sse(items)


def completion(content="Hello!", *, tool_calls=None, finish="stop", usage=(12, 3), **message_extra):
    message = {"role": "assistant", "content": content, **message_extra}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": usage[0] + usage[1]}  # fmt: skip
    return Json(body)


def default_handler(req: Recorded):
    if req.path.endswith("/models"):
        return Json({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
    if not req.path.startswith("/v1/chat/completions"):
        return Json({"detail": "Not Found"}, 404)
    if req.stream:
        return text_stream(["Hello", " from", " the", " fake", " backend."])
    return completion("Hello from the fake backend.")


# The server ------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog (5) resets bursts of connections


class FakeBackend:
    def __init__(self, port: int = 0) -> None:
        self.handler = default_handler
        # What GET /v1/models lists while the default handler answers: more
        # than one model, so a gateway configured with another name is told
        # (a warning) but keeps its name; ``serve`` adds the names tests
        # configure (for the whole session: gateways are shared and re-probe).
        self.served = ["fake-model", "fake-model-2"]
        self.requests: list[Recorded] = []
        self.disconnects: list[float] = []
        self._lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.server = _Server(("127.0.0.1", port), _make_handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.handler = default_handler
        with self._lock:
            self.requests.clear()
            self.disconnects.clear()

    def serve(self, *models: str) -> None:
        """List ``models`` too in GET /v1/models from now on."""
        self.served += [m for m in models if m not in self.served]

    def record(self, req: Recorded) -> None:
        with self._lock:
            self.requests.append(req)

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1/chat/completions")]

    def wait_for_disconnect(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.disconnects:
                return True
            time.sleep(0.02)
        return bool(self.disconnects)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def kill(self) -> None:
        """Die as a crashed server does: no more connections accepted, and
        every open one (the gateway's pooled keep-alive ones too) reset."""
        self.close()
        with self._lock:
            open_now = list(self.connections)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _make_handler(backend: FakeBackend):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def setup(self):
            super().setup()
            with backend._lock:
                backend.connections.add(self.connection)

        def finish(self):
            with backend._lock:
                backend.connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            req = Recorded(self.command, self.path, dict(self.headers), body)
            if not self.path.endswith("/models"):
                backend.record(req)
            if backend.handler is default_handler and self.path.endswith("/models"):
                listed = [{"id": m, "object": "model"} for m in backend.served]
                reply = Json({"object": "list", "data": listed})
            else:
                reply = backend.handler(req)
            if isinstance(reply, Json):
                self._send(reply.status, json.dumps(reply.body).encode(), "application/json",
                           reply.headers)  # fmt: skip
            elif isinstance(reply, Text):
                self._send(reply.status, reply.body.encode(), reply.content_type)
            elif isinstance(reply, Sse):
                self._stream(reply)
            else:
                raise TypeError(f"unknown reply {reply!r}")

        do_GET = do_POST = _handle

        def _send(self, status, data, content_type, headers=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _peer_gone(self) -> bool:
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _stream(self, reply: Sse):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            items = list(reply.items) + (["data: [DONE]\n\n"] if reply.done else [])
            try:
                for item in items:
                    if isinstance(item, Pause):
                        end = time.monotonic() + item.seconds
                        while time.monotonic() < end:
                            if self._peer_gone():
                                raise ConnectionResetError("peer gone during pause")
                            time.sleep(0.02)
                        continue
                    if isinstance(item, dict):
                        data = f"data: {json.dumps(item)}\n\n".encode()
                    elif isinstance(item, str):
                        data = item.encode()
                    else:
                        data = item
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                if reply.cut:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, OSError):
                backend.disconnects.append(time.monotonic())
                self.close_connection = True

    return Handler
