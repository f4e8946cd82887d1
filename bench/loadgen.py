"""Load generator: raw HTTP/1.1 over keep-alive sockets, one greenlet per
connection, so the client costs little and its timings are precise.

    python bench/loadgen.py '{"port": 3456, "path": "/v1/messages", "body_file": "...",
                              "headers": {...}, "concurrency": 16, "requests": 1000}'

Prints JSON: per-request time to first byte and to last byte (seconds), and
the wall time of the whole run.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402


def build_request(port: int, path: str, body: bytes, headers: dict) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in headers.items()]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def one(sock, rfile, request: bytes) -> tuple[float, float]:
    started = time.perf_counter()
    sock.sendall(request)
    status = rfile.readline()
    first = time.perf_counter()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"bad status {status!r}")
    length, chunked = None, False
    while True:
        line = rfile.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int(rfile.readline().split(b";")[0], 16)
            rfile.read(size + 2)
            if size == 0:
                break
    elif length is not None:
        rfile.read(length)
    return first - started, time.perf_counter() - started


def worker(port: int, request: bytes, count: int, results: list) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    rfile = sock.makefile("rb")
    for _ in range(count):
        results.append(one(sock, rfile, request))
    sock.close()


def main(spec: dict) -> dict:
    body = open(spec["body_file"], "rb").read()
    request = build_request(spec["port"], spec["path"], body, spec.get("headers", {}))
    concurrency, total = spec["concurrency"], spec["requests"]
    per = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    results: list = []
    started = time.perf_counter()
    gevent.joinall(
        [gevent.spawn(worker, spec["port"], request, n, results) for n in per if n],
        raise_error=True,
    )
    return {
        "wall": time.perf_counter() - started,
        "ttfb": [r[0] for r in results],
        "total": [r[1] for r in results],
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
