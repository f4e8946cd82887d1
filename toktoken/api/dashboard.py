"""GET /dashboard: the usage dashboard, for browsers.

Browser-friendly auth that keeps the key out of URLs and logs: the key is
typed into a form and POSTed once; the answer sets a session cookie that
holds an HMAC-signed (key fingerprint, expiry) — never the key —
HttpOnly, SameSite=Strict, Secure behind HTTPS, valid 12 hours. The signing
secret is derived from the configured keys, so every worker and instance
agrees without extra configuration, and changing API_KEY ends all sessions.
Programs can also send the key in x-api-key / Authorization as on the API.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import Blueprint, Response, redirect, request

from ..auth import check_key
from ..errors import AuthenticationFailed
from ..gateway import current_gateway
from ..telemetry.dashboard import LOGIN_PAGE, collect, render
from ..telemetry.record import key_fingerprint

bp = Blueprint("dashboard", __name__)

COOKIE = "toktoken_dashboard"
SESSION_SECONDS = 12 * 3600


def _secret(keys: tuple[str, ...]) -> bytes:
    return hashlib.sha256(
        b"toktoken-dashboard-session\n" + "\n".join(sorted(keys)).encode()
    ).digest()


def _sign(keys, fingerprint: str, expires: int) -> str:
    payload = f"{fingerprint}.{expires}"
    mac = hmac.new(_secret(keys), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"


def _valid_session(keys, value: str | None) -> bool:
    try:
        fingerprint, expires, mac = (value or "").split(".")
        expires_at = int(expires)
    except ValueError:
        return False
    expected = hmac.new(
        _secret(keys), f"{fingerprint}.{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return (
        hmac.compare_digest(mac, expected)
        and expires_at > time.time()
        and any(hmac.compare_digest(fingerprint, key_fingerprint(k)) for k in keys)
    )


def _authorised(keys) -> bool:
    if _valid_session(keys, request.cookies.get(COOKIE)):
        return True
    try:
        check_key(request.headers, keys)
        return True
    except AuthenticationFailed:
        return False


def _html(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    )
    return response


@bp.get("/dashboard")
def dashboard():
    gateway = current_gateway()
    if not _authorised(gateway.settings.api_keys):
        return redirect("/dashboard/login", code=303)
    store = gateway.recorder.store if gateway.recorder else None
    if gateway.recorder:
        gateway.recorder.flush()  # show this worker's latest records too
    return _html(
        render(collect(store, gateway.backends.health(), replicas=gateway.backends.replicas()))
    )


@bp.get("/dashboard/login")
def login_form():
    return _html(LOGIN_PAGE.format(message=""))


@bp.post("/dashboard/login")
def login():
    keys = current_gateway().settings.api_keys
    key = request.form.get("key", "")
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys) or not key:
        message = '<p class="error">That key is not valid.</p>'
        return _html(LOGIN_PAGE.format(message=message), status=401)
    expires = int(time.time()) + SESSION_SECONDS
    response = redirect("/dashboard", code=303)
    response.set_cookie(
        COOKIE,
        _sign(keys, key_fingerprint(key), expires),
        max_age=SESSION_SECONDS,
        path="/dashboard",
        httponly=True,
        samesite="Strict",
        secure=request.headers.get("X-Forwarded-Proto") == "https",
    )
    return response


@bp.post("/dashboard/logout")
def logout():
    response = redirect("/dashboard/login", code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response
