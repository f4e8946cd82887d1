"""The floor `make bench` compares the gateway with: the least a relay on the
same stack can do — Flask, gunicorn + gevent, one requests.Session — with no
validation, conversion, routing, logging, metrics or usage records.

    VLLM_URL=http://127.0.0.1:PORT gunicorn -k gevent -w 1 --chdir bench bare_relay:app

POST /v1/chat/completions forwards the body to the backend and returns its
answer (non-streaming only)."""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, request

app = Flask(__name__)
_session = requests.Session()
_URL = os.environ["VLLM_URL"] + "/v1/chat/completions"


@app.post("/v1/chat/completions")
def relay() -> Response:
    upstream = _session.post(
        _URL, data=request.get_data(), headers={"Content-Type": "application/json"}
    )
    return Response(upstream.content, status=upstream.status_code, mimetype="application/json")
