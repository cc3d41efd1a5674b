"""Keeping secrets home: what an upstream's words, a URL or a config value may not carry out.

An upstream's error message reaches a tenant; it may quote a key (`sk-...`, `Bearer ...`),
a URL with its query, or the address of the upstream itself. A URL in /admin/routes or a
metric label keeps no credentials; a config value in an error keeps no password.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[redacted]"
_KEYS = re.compile(
    r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-]{6,}"  # OpenAI-style keys, this gateway's sk-gw-... included
    r"|\bBearer\s+[^\s,;\"']+"  # an Authorization value
    r"|\b(?:api[_-]?key|token|secret|password|passwd|authorization)\b\s*[=:]\s*[\"']?[^\s,;\"'&]+",
    re.IGNORECASE)
_PLACES = re.compile(
    r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+"  # a URL: its host, path and query say too much
    r"|\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b",  # an IPv4 address, with its port
    re.IGNORECASE)


def scrub_keys(text: str) -> str:
    """`text` without anything that looks like a key or a token."""
    return _KEYS.sub(REDACTED, text)


def scrub(text: str, hosts: tuple[str, ...] = ()) -> str:
    """`text` without anything that looks like a key, a token, a URL, an address, or one of `hosts`."""
    text = _PLACES.sub(REDACTED, _KEYS.sub(REDACTED, text))
    for host in hosts:
        if host:
            text = re.sub(rf"\b{re.escape(host)}(?::\d{{1,5}})?\b", REDACTED, text, flags=re.IGNORECASE)
    return text


def without_credentials(url: str) -> str:
    """A URL as it may be shown: no user or password, no query, no fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def masked(url: str) -> str:
    """A URL with its password (and any secret-looking query value) replaced, for errors and check-config."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if has_password else f"{REDACTED}@{host}"
    query = re.sub(r"((?:password|token|secret|key)[^=&]*=)[^&]*", rf"\1{REDACTED}", parts.query, flags=re.I)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
