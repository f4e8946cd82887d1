"""A fast fake OpenAI backend for benchmarks: asyncio, canned bytes, no JSON
parsing. The request's ``"user"`` field says what to send back:
``"user": "bench:CHUNKS:DELAY_MS"`` -> a stream of CHUNKS chunks DELAY_MS
apart (or one JSON completion for a non-streaming request).

    python bench/fake_backend.py PORT
"""

from __future__ import annotations

import asyncio
import json
import re
import sys

_USER = re.compile(rb'"user":\s*"bench:(\d+):(\d+)"')
_STREAM = re.compile(rb'"stream":\s*true')

COMPLETION = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark backend."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 8, "total_tokens": 1208},
}).encode()  # fmt: skip
CHUNK = b"data: " + json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench",
    "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}).encode() + b"\n\n"  # fmt: skip
LAST = (
    b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                            "model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode()
    + b"\n\ndata: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
                                  "model": "bench", "choices": [],
                                  "usage": {"prompt_tokens": 1200, "completion_tokens": 50, "total_tokens": 1250}}).encode()
    + b"\n\ndata: [DONE]\n\n"
)  # fmt: skip
MODELS = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]}).encode()


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if head.startswith(b"GET"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(MODELS), MODELS))  # fmt: skip
                continue
            match = _USER.search(body)
            chunks, delay = (int(match.group(1)), int(match.group(2))) if match else (50, 0)
            if not _STREAM.search(body):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(COMPLETION), COMPLETION))  # fmt: skip
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(chunks):
                writer.write(_chunked(CHUNK))
                if delay:
                    await writer.drain()
                    await asyncio.sleep(delay / 1000)
            writer.write(_chunked(LAST) + b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048, limit=1 << 20)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
