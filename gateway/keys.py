"""API keys: how one is made and the only form in which one is kept (its SHA-256)."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-gw-"
MAX_KEY_CHARS = 512


def new_key() -> str:
    """A new API key, shown once to whoever asked for it and never stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The only form in which an API key is ever kept."""
    return hashlib.sha256(key.encode()).hexdigest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other form."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or len(token) > MAX_KEY_CHARS or not token.isprintable() \
            or " " in token:
        return None
    return token
