"""GET /v1/models: what can be asked for, in the caller's dialect."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from ..gateway import current_gateway

bp = Blueprint("models", __name__)

# Models have no creation time we can know; a fixed epoch keeps answers stable.
_CREATED = 1735689600  # 2025-01-01T00:00:00Z
_CREATED_ISO = "2025-01-01T00:00:00Z"


@bp.get("/v1/models")
def list_models():
    gateway = current_gateway()
    backends = gateway.backends
    # Route names first, then each backend's configured model, then what the
    # backends themselves report serving; each with the backend that serves it.
    served = {}
    for name in gateway.router.model_names():
        served.setdefault(name, gateway.router.for_model(name))
    for backend in backends.all:
        served.setdefault(backend.model, backend)
    for backend in backends.all:
        for name in backends.caps(backend).models:
            served.setdefault(name, backend)
    client = g.client  # only the models this key may ask for
    served = {name: backend for name, backend in served.items() if client.may_use(name)}
    ids = list(served)
    if request.headers.get("anthropic-version"):
        margin = gateway.settings.context_margin
        data = []
        for model_id, backend in served.items():
            entry = {
                "type": "model",
                "id": model_id,
                "display_name": model_id,
                "created_at": _CREATED_ISO,
            }
            window = backends.caps(backend).context
            if window:  # what future clients read to size their compaction
                entry.update(max_input_tokens=window, max_tokens=max(1, window - margin))
            data.append(entry)
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
