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
    ids: list[str] = []
    for backend in current_gateway().backends:
        for model_id in [backend.model] + (backend.probe(timeout=2.0).models or []):
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
