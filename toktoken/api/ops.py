"""Operations endpoints: liveness, readiness, metrics, HEAD /. No API key
needed; /health and /health/ready give details (backend URLs, latencies,
capabilities, the ledger) only to a valid key."""

from __future__ import annotations

import os

from flask import Blueprint, Response, g, jsonify

from ..gateway import current_gateway

bp = Blueprint("ops", __name__)

PUBLIC_ENDPOINTS = {"ops.root", "ops.health", "ops.ready", "ops.metrics", "ops.openapi"}


@bp.route("/", methods=["GET", "HEAD"])
def root():
    # Claude Code 2.1.197 sends HEAD / before its first request.
    return jsonify(
        {
            "name": "toktoken",
            "endpoints": ["/v1/messages", "/v1/models", "/health"],
            "openapi": "/openapi.json",
        }
    )


@bp.get("/health")
def health():
    """The process is alive (200), and each backend up or down ("degraded":
    one is down, or does not serve its configured model). With a valid key:
    each backend's URL, latency, model (and what is wrong with it), capabilities, each of its replicas
    (up or ejected, requests in flight from this worker, last error), and
    this worker's usage ledger (state, last write, backlog, drops)."""
    gateway = current_gateway()
    backends = gateway.backends
    probes = backends.health()
    problems = backends.model_problems
    healthy = all(p.reachable for p in probes) and not problems
    status = "ok" if healthy else "degraded"
    if g.client is None:
        return jsonify({"status": status, "backends": [_up(p) for p in probes]})
    entries = []
    for backend, probe, replicas in zip(backends.all, probes, backends.replicas(), strict=True):
        entry = {**_up(probe), **probe.as_dict()}
        entry["model"] = backend.model
        if backend.name in problems:
            entry["problem"] = problems[backend.name]
        if probe.reachable:
            entry["capabilities"] = backends.caps(backend).as_dict()
        entry["replicas"] = replicas
        entries.append(entry)
    ledger = gateway.recorder.state() if gateway.recorder else {"state": "disabled"}
    return jsonify({"status": status, "backends": entries, "ledger": ledger, "worker": os.getpid()})


@bp.get("/health/ready")
def ready():
    """503 while the default backend cannot be reached: take us out of rotation.
    (The usage ledger never makes the gateway unready: requests are served.)"""
    gateway = current_gateway()
    probe = gateway.backends.health()[0]  # the default backend comes first
    detail = probe.as_dict() if g.client is not None else _up(probe)
    return jsonify({"ready": probe.reachable, "backend": detail}), (200 if probe.reachable else 503)


def _up(probe) -> dict:
    return {"name": probe.name, "up": probe.reachable}


@bp.get("/openapi.json")
def openapi():
    """The gateway's OpenAPI 3.1 document (toktoken/openapi/)."""
    from ..openapi import document

    return jsonify(document())


@bp.get("/metrics")
def metrics():
    """Prometheus text format; aggregated over every gunicorn worker."""
    from ..telemetry.metrics import render

    body, content_type = render()
    return Response(body, content_type=content_type)
