"""GET /stats: token usage from the ledger (auth required)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, g, jsonify, request

from ..errors import InvalidRequest
from ..gateway import current_gateway
from ..telemetry.store import GROUPS

bp = Blueprint("stats", __name__)

_EPOCH, _YEAR_9999 = 0.0, 253402300799.0  # what a timestamp can be shown as


@bp.get("/stats")
def stats():
    """Totals, and with ``group_by`` (model, backend, key, route, status,
    session, replica, hour, day) one row per group, for ``since`` <= time < ``until`` (unix seconds
    or ISO 8601; default: everything). Records are written about once a
    second (TELEMETRY_FLUSH_INTERVAL), so the last second may be missing.

    An admin key sees every key's requests and each key's use against its
    limits; any other key, only its own."""
    gateway = current_gateway()
    client = g.client
    scope = None if client.admin else client.name
    keys = [
        {"name": k.name, "admin": k.admin, "models": list(k.models) or None,
         **gateway.access.use(k)}
        for k in (gateway.settings.keys if client.admin else (client,))
    ]  # fmt: skip
    if gateway.recorder is None:
        return jsonify(
            {
                "telemetry": False,
                "message": "telemetry is disabled: set TELEMETRY_ENABLED=true to record usage",
                "keys": keys,
            }
        )
    since = _time_param("since")
    until = _time_param("until")
    group_by = request.args.get("group_by")
    if group_by is not None and group_by not in GROUPS:
        raise InvalidRequest(f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
    result = gateway.recorder.store.stats(since, until, group_by, key_name=scope)
    if group_by in ("hour", "day"):
        for row in result.get("groups", []):
            row["key"] = _iso(row["key"])
    return jsonify(
        {
            "telemetry": True,
            "since": _iso(since),
            "until": _iso(until),
            "group_by": group_by,
            "scope": scope or "all keys",
            **result,
            "keys": keys,
        }
    )


def _time_param(name: str) -> float | None:
    raw = request.args.get(name)
    if not raw:
        return None
    refused = InvalidRequest(f"{name} must be unix seconds or an ISO 8601 time", param=name)
    try:
        seconds = float(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise refused from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    if not _EPOCH <= seconds <= _YEAR_9999:  # NaN and infinities too
        raise refused
    return seconds


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
