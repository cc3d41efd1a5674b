"""API keys: how one is made and the only form in which one is kept (its SHA-256)."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "sk-gw-"


def new_key() -> str:
    """A new API key, shown once to whoever asked for it and never stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The only form in which an API key is ever kept."""
    return hashlib.sha256(key.encode()).hexdigest()
