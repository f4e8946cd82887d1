"""GET /v1/models: what can be asked for, in the caller's dialect."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..gateway import current_gateway

bp = Blueprint("models", __name__)

# Models have no creation time we can know; a fixed epoch keeps answers stable.
_CREATED = 1735689600  # 2025-01-01T00:00:00Z
_CREATED_ISO = "2025-01-01T00:00:00Z"


@bp.get("/v1/models")
def list_models():
    gateway = current_gateway()
    ids: list[str] = []
    # Route names first, then each backend's configured model, then what the
    # backends themselves report serving.
    backends = gateway.backends
    candidates = gateway.router.model_names() + [b.model for b in backends.all]
    for backend in backends.all:
        candidates += list(backends.caps(backend).models)
    for model_id in candidates:
        if model_id not in ids:
            ids.append(model_id)
    if request.headers.get("anthropic-version"):
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": _CREATED_ISO} for m in ids
        ]
        return jsonify(
            {
                "data": data,
                "has_more": False,
                "first_id": ids[0] if ids else None,
                "last_id": ids[-1] if ids else None,
            }
        )
    data = [{"id": m, "object": "model", "created": _CREATED, "owned_by": "toktoken"} for m in ids]
    return jsonify({"object": "list", "data": data})
