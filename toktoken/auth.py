"""API key check: ``x-api-key`` or ``Authorization: Bearer``, constant time."""

from __future__ import annotations

import hmac

from .errors import AuthenticationFailed


def presented_key(headers) -> str | None:
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def check_key(headers, allowed: tuple[str, ...]) -> str:
    """Return the accepted key or raise AuthenticationFailed.

    Every allowed key is compared (no early exit) so timing reveals neither
    which key matched nor how much of one did.
    """
    key = presented_key(headers)
    if key is None:
        raise AuthenticationFailed(
            "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>"
        )
    given = key.encode()
    match = False
    for candidate in allowed:
        match |= hmac.compare_digest(given, candidate.encode())
    if not match:
        raise AuthenticationFailed("invalid API key")
    return key


def has_valid_key(headers, allowed: tuple[str, ...]) -> bool:
    """For endpoints that answer everyone but say more to a key holder."""
    try:
        check_key(headers, allowed)
    except AuthenticationFailed:
        return False
    return True
