"""Operations endpoints: liveness, readiness, HEAD /. No API key needed."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..gateway import current_gateway

bp = Blueprint("ops", __name__)

PUBLIC_ENDPOINTS = {"ops.root", "ops.health", "ops.ready", "ops.metrics"}


@bp.route("/", methods=["GET", "HEAD"])
def root():
    # Claude Code 2.1.197 sends HEAD / before its first request.
    return jsonify({"name": "toktoken", "endpoints": ["/v1/messages", "/v1/models", "/health"]})


@bp.get("/health")
def health():
    """The process is alive (200) and how each backend looks right now."""
    backends = current_gateway().backends
    probes = backends.health()
    status = "ok" if all(p.reachable for p in probes) else "degraded"
    entries = []
    for backend, probe in zip(backends.all, probes, strict=True):
        entry = probe.as_dict()
        if probe.reachable:
            entry["capabilities"] = backends.caps(backend).as_dict()
        entries.append(entry)
    return jsonify({"status": status, "backends": entries})


@bp.get("/health/ready")
def ready():
    """503 while the default backend cannot be reached: take us out of rotation."""
    probe = current_gateway().backends.health()[0]  # the default backend comes first
    body = {"ready": probe.reachable, "backend": probe.as_dict()}
    return jsonify(body), (200 if probe.reachable else 503)


@bp.get("/metrics")
def metrics():
    """Prometheus text format; aggregated over every gunicorn worker."""
    from ..telemetry.metrics import render

    body, content_type = render()
    return Response(body, content_type=content_type)
