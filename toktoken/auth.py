"""Who is calling: the key in ``x-api-key`` or ``Authorization: Bearer``,
matched by its SHA-256 against every configured key, in constant time.

Only digests are kept (config/model.py ClientKey): the presented key is
hashed once and compared with each key's digest, every one of them (no
early exit), so timing reveals neither which key matched nor how much of one
did. The key itself goes nowhere: logs, records and /stats see its name.
"""

from __future__ import annotations

import hmac

from .config import ClientKey, key_digest
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


def match_key(key: str | None, keys: tuple[ClientKey, ...]) -> ClientKey | None:
    if not key:
        return None
    digest = key_digest(key).encode()
    found = None
    for candidate in keys:
        if hmac.compare_digest(digest, candidate.sha256.encode()):
            found = candidate
    return found


def identify(headers, keys: tuple[ClientKey, ...]) -> ClientKey:
    """The caller's key, or AuthenticationFailed."""
    key = presented_key(headers)
    if key is None:
        raise AuthenticationFailed(
            "missing API key: send it in the x-api-key header or as Authorization: Bearer <key>"
        )
    client = match_key(key, keys)
    if client is None:
        raise AuthenticationFailed("invalid API key")
    return client


def identified(headers, keys: tuple[ClientKey, ...]) -> ClientKey | None:
    """For endpoints that answer everyone but say more to a key holder."""
    return match_key(presented_key(headers), keys)
