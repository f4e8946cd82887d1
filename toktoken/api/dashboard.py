"""GET /dashboard: the usage dashboard, for browsers, for admin keys.

Browser-friendly auth that keeps the key out of URLs and logs: the key is
typed into a form and POSTed once; the answer sets a session cookie that
holds an HMAC-signed (key name, expiry) — never the key — HttpOnly,
SameSite=Strict, Secure behind HTTPS, valid 12 hours. The signing secret is
the configuration's (Settings.session_secret: made of the secret keys it
holds and DASHBOARD_SECRET), so every worker and instance agrees, and
changing the keys ends all sessions. Programs can also send the key in
x-api-key / Authorization as on the API. The dashboard shows every key's
use: only admin keys (API_KEY's, and ``admin = true``) may see it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import Blueprint, Response, g, redirect, request

from ..auth import match_key
from ..config import ClientKey
from ..gateway import current_gateway
from ..telemetry.dashboard import LOGIN_PAGE, collect, render

bp = Blueprint("dashboard", __name__)

COOKIE = "toktoken_dashboard"
SESSION_SECONDS = 12 * 3600


def _sign(secret: bytes, name: str, expires: int) -> str:
    payload = f"{name}.{expires}"
    mac = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{mac}"


def _session_key(settings, value: str | None) -> ClientKey | None:
    """The key a valid session cookie was issued to, if it still exists."""
    try:
        payload, mac = (value or "").rsplit(".", 1)
        name, expires = payload.rsplit(".", 1)
        expires_at = int(expires)
    except ValueError:
        return None
    expected = hmac.new(settings.session_secret, payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, expected) or expires_at <= time.time():
        return None
    return next((k for k in settings.keys if k.name == name), None)


def _viewer(settings) -> ClientKey | None:
    """Who is looking: the session cookie's key, else the request's key."""
    return _session_key(settings, request.cookies.get(COOKIE)) or g.get("client")


def _html(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"
    )
    return response


_NOT_ADMIN = (
    '<p class="error">That key is valid, but not an admin key: the dashboard shows every '
    "key's use. Your own is in GET /stats.</p>"
)


@bp.get("/dashboard")
def dashboard():
    gateway = current_gateway()
    viewer = _viewer(gateway.settings)
    if viewer is None:
        return redirect("/dashboard/login", code=303)
    if not viewer.admin:
        return _html(LOGIN_PAGE.format(message=_NOT_ADMIN), status=403)
    store = gateway.recorder.store if gateway.recorder else None
    if gateway.recorder:
        gateway.recorder.flush()  # show this worker's latest records too
    backends = gateway.backends
    data = collect(
        store, backends.health(), replicas=backends.replicas(), problems=backends.model_problems
    )
    return _html(render(data))


@bp.get("/dashboard/login")
def login_form():
    return _html(LOGIN_PAGE.format(message=""))


@bp.post("/dashboard/login")
def login():
    settings = current_gateway().settings
    client = match_key(request.form.get("key", ""), settings.keys)
    if client is None:
        message = '<p class="error">That key is not valid.</p>'
        return _html(LOGIN_PAGE.format(message=message), status=401)
    if not client.admin:
        return _html(LOGIN_PAGE.format(message=_NOT_ADMIN), status=403)
    expires = int(time.time()) + SESSION_SECONDS
    response = redirect("/dashboard", code=303)
    response.set_cookie(
        COOKIE,
        _sign(settings.session_secret, client.name, expires),
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
